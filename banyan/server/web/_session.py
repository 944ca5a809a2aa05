"""Browser sessions without an API key: signed links, session cookies, CSRF tokens.

``banyan experiments open ID`` prints a link signed with the server's secret
(HMAC-SHA256 over the project id, the experiment id and an expiry). Opening it
sets a session cookie bound to that one project: HttpOnly (no script reads
it), SameSite=Strict (no other site's page sends it) and scoped to the
project's page path (a cookie of project A is not even sent to project B's
pages). The cookie is itself signed, so every worker checks it without shared
storage. A state-changing form carries a per-session CSRF token derived from
the cookie, and its POST must come from the server's own origin.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

#: How long a printed link can be opened, and how long the session it starts lasts.
LINK_TTL = 15 * 60
SESSION_TTL = 8 * 60 * 60
COOKIE = "banyan_session"
#: The prefix of every page; a session cookie's Path is its project's folder under it.
PAGES = "/ui"
OPEN_PATH = f"{PAGES}/open"

_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def project_path(project_id: str) -> str:
    """The folder of one project's pages, the Path of its session cookie."""
    return f"{PAGES}/projects/{project_id}"


def experiment_path(project_id: str, experiment_id: str) -> str:
    """The results page of one experiment."""
    return f"{project_path(project_id)}/experiments/{experiment_id}"


@dataclass(frozen=True)
class Session:
    """A verified session: the one project it may read, its expiry and its nonce."""

    project_id: str
    expires: int
    nonce: str


class Signer:
    """Signs and verifies links, session cookies and CSRF tokens with one server secret.

    Every worker of a server must share the secret (for example one random
    value stored in the database at bootstrap); changing it ends every session.
    """

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 32:
            raise ValueError("the secret must be at least 32 bytes")
        self._secret = secret

    def _mac(self, purpose: str, *parts: str) -> str:
        message = "\0".join((purpose, *parts)).encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def link(self, base_url: str, project_id: str, experiment_id: str, now: float) -> str:
        """A link that opens one experiment's page for ``LINK_TTL`` seconds from ``now``."""
        _check_ids(project_id, experiment_id)
        expires = str(int(now) + LINK_TTL)
        query = {
            "project": project_id,
            "experiment": experiment_id,
            "expires": expires,
            "sig": self._mac("link", project_id, experiment_id, expires),
        }
        return f"{base_url.rstrip('/')}{OPEN_PATH}?{urlencode(query)}"

    def verify_link(self, query: dict[str, str], now: float) -> tuple[str, str] | None:
        """``(project_id, experiment_id)`` of a valid, unexpired link's query, else None."""
        project, experiment = query.get("project", ""), query.get("experiment", "")
        expires, sig = query.get("expires", ""), query.get("sig", "")
        if not (_valid_ids(project, experiment) and expires.isdigit()):
            return None
        if int(expires) <= now or int(expires) > now + LINK_TTL:
            return None
        good = self._mac("link", project, experiment, expires)
        return (project, experiment) if _same(sig, good) else None

    def new_session(self, project_id: str, now: float) -> str:
        """A fresh session cookie value for one project, valid ``SESSION_TTL`` seconds."""
        _check_ids(project_id)
        expires, nonce = str(int(now) + SESSION_TTL), os.urandom(16).hex()
        return ".".join(
            (project_id, expires, nonce, self._mac("session", project_id, expires, nonce))
        )

    def verify_session(self, value: str, project_id: str, now: float) -> Session | None:
        """The session of a cookie value if it is genuine, unexpired and for ``project_id``."""
        parts = value.split(".")
        if len(parts) != 4:
            return None
        project, expires, nonce, sig = parts
        if project != project_id or not expires.isdigit() or int(expires) <= now:
            return None
        good = self._mac("session", project, expires, nonce)
        return Session(project, int(expires), nonce) if _same(sig, good) else None

    def csrf_token(self, session: Session) -> str:
        """The token a form of this session carries in its ``csrf`` field."""
        return self._mac("csrf", session.project_id, session.nonce)

    def check_post(
        self, session: Session, form: dict[str, str], origin: str | None, own_origin: str
    ) -> bool:
        """Whether a POST is this session's own: its CSRF token and its Origin header match."""
        if origin is None or not _same(origin, own_origin):
            return False
        return _same(form.get("csrf", ""), self.csrf_token(session))


def session_cookie(value: str, project_id: str, *, secure: bool) -> str:
    """The ``Set-Cookie`` header value that stores a session for its project's pages."""
    attrs = [
        f"{COOKIE}={value}",
        f"Path={project_path(project_id)}",
        f"Max-Age={SESSION_TTL}",
        "HttpOnly",
        "SameSite=Strict",
    ]
    return "; ".join([*attrs, "Secure"] if secure else attrs)


def cookie_value(header: str) -> str | None:
    """The session cookie's value in a ``Cookie`` request header, if any."""
    for pair in header.split(";"):
        name, _, value = pair.strip().partition("=")
        if name == COOKIE:
            return value
    return None


def load_secret(path: Path) -> bytes:
    """The signing secret kept in ``path``: 32 random bytes, created (mode 0600) on first use.

    Safe when several workers start at once: each writes a candidate to its own
    file and links it into place, which only the first can do; all read the winner.
    """
    if not path.exists():
        candidate = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}")
        fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(os.urandom(32).hex())
        try:
            os.link(candidate, path)
        except FileExistsError:
            pass
        finally:
            candidate.unlink()
    return bytes.fromhex(path.read_text().strip())


def _same(given: str, expected: str) -> bool:
    # As bytes: compare_digest refuses non-ASCII str, and a query can carry any text.
    return hmac.compare_digest(given.encode(), expected.encode())


def _valid_ids(*ids: str) -> bool:
    return all(_ID.fullmatch(i) for i in ids)


def _check_ids(*ids: str) -> None:
    if not _valid_ids(*ids):
        raise ValueError(f"not an id: {ids!r}")
