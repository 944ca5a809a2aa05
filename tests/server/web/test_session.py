"""Signed links, project-bound session cookies and CSRF checks (no server, a fake clock)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

from banyan.server.web._session import (
    LINK_TTL,
    OPEN_PATH,
    SESSION_TTL,
    Signer,
    cookie_value,
    load_secret,
    session_cookie,
)

NOW = 1_800_000_000.0
SIGNER = Signer(b"s" * 32)
ORIGIN = "http://127.0.0.1:8765"


def _query(link: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(link).query))


def test_a_link_opens_its_project_and_experiment_until_it_expires() -> None:
    """A signed link verifies to its ids before its expiry and not at or after it."""
    link = SIGNER.link("http://127.0.0.1:8765/", "prj_a", "exp_1", NOW)
    assert urlsplit(link).path == OPEN_PATH
    query = _query(link)
    assert SIGNER.verify_link(query, NOW) == ("prj_a", "exp_1")
    assert SIGNER.verify_link(query, NOW + LINK_TTL - 1) == ("prj_a", "exp_1")
    assert SIGNER.verify_link(query, NOW + LINK_TTL) is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("project", "prj_b"),
        ("experiment", "exp_2"),
        ("expires", str(int(NOW) + 60)),
        ("sig", "0" * 64),
        ("sig", ""),
        ("sig", "\u00e9"),
    ],
)
def test_a_link_with_any_field_changed_is_rejected(field: str, value: str) -> None:
    """Changing the project, experiment, expiry or signature of a link invalidates it."""
    query = _query(SIGNER.link(ORIGIN, "prj_a", "exp_1", NOW))
    assert SIGNER.verify_link({**query, field: value}, NOW) is None


def test_a_link_signed_with_another_secret_is_rejected() -> None:
    """Only the server's own secret makes a valid link."""
    query = _query(Signer(b"t" * 32).link(ORIGIN, "prj_a", "exp_1", NOW))
    assert SIGNER.verify_link(query, NOW) is None


def test_a_link_expiring_too_far_ahead_is_rejected() -> None:
    """A link cannot outlive LINK_TTL, even one signed with the right secret."""
    query = _query(SIGNER.link(ORIGIN, "prj_a", "exp_1", NOW + 10 * LINK_TTL))
    assert SIGNER.verify_link(query, NOW) is None


def test_a_session_is_bound_to_one_project() -> None:
    """A session cookie of project A verifies for A and never for B."""
    value = SIGNER.new_session("prj_a", NOW)
    session = SIGNER.verify_session(value, "prj_a", NOW)
    assert session is not None
    assert session.project_id == "prj_a"
    assert SIGNER.verify_session(value, "prj_b", NOW) is None
    forged = value.replace("prj_a", "prj_b", 1)
    assert SIGNER.verify_session(forged, "prj_b", NOW) is None


def test_a_session_expires() -> None:
    """A session cookie is refused from SESSION_TTL seconds after it was made."""
    value = SIGNER.new_session("prj_a", NOW)
    assert SIGNER.verify_session(value, "prj_a", NOW + SESSION_TTL - 1) is not None
    assert SIGNER.verify_session(value, "prj_a", NOW + SESSION_TTL) is None


@pytest.mark.parametrize(
    "value",
    ["", "x", "prj_a.1.2", "prj_a.9999999999.n.\u00e9", "prj_a.notanumber.n.sig", "a.b.c.d.e"],
)
def test_malformed_session_values_are_refused(value: str) -> None:
    """Garbage in the cookie is no session (and raises nothing)."""
    assert SIGNER.verify_session(value, "prj_a", NOW) is None


def test_the_cookie_is_httponly_samesite_strict_and_scoped_to_its_project() -> None:
    """The Set-Cookie value keeps the session from scripts, other sites and other projects."""
    header = session_cookie("v", "prj_a", secure=False)
    attrs = [a.strip() for a in header.split(";")]
    assert attrs[0] == "banyan_session=v"
    assert {"HttpOnly", "SameSite=Strict", "Path=/ui/projects/prj_a"} <= set(attrs)
    assert "Secure" not in attrs
    assert "Secure" in session_cookie("v", "prj_a", secure=True)


def test_the_session_value_is_found_among_other_cookies() -> None:
    """cookie_value picks the session out of a Cookie header."""
    assert cookie_value("a=1; banyan_session=xyz; b=2") == "xyz"
    assert cookie_value("a=1") is None


def test_a_post_needs_the_sessions_token_and_the_servers_origin() -> None:
    """CSRF: a POST passes only with this session's token and the server's own Origin."""
    session = SIGNER.verify_session(SIGNER.new_session("prj_a", NOW), "prj_a", NOW)
    other = SIGNER.verify_session(SIGNER.new_session("prj_a", NOW), "prj_a", NOW)
    assert session is not None
    assert other is not None
    token = SIGNER.csrf_token(session)
    assert SIGNER.check_post(session, {"csrf": token}, ORIGIN, ORIGIN)
    assert not SIGNER.check_post(session, {"csrf": token}, "http://evil.example", ORIGIN)
    assert not SIGNER.check_post(session, {"csrf": token}, None, ORIGIN)
    assert not SIGNER.check_post(session, {}, ORIGIN, ORIGIN)
    assert not SIGNER.check_post(session, {"csrf": SIGNER.csrf_token(other)}, ORIGIN, ORIGIN)


def test_a_short_secret_is_refused() -> None:
    """A secret under 32 bytes is a configuration error."""
    with pytest.raises(ValueError, match="32 bytes"):
        Signer(b"short")


def test_the_secret_is_created_once_private_and_shared(tmp_path: Path) -> None:
    """Workers starting together all load one 32-byte secret, stored readable by the owner only."""
    path = tmp_path / "banyan.secret"
    with ThreadPoolExecutor(8) as pool:
        secrets = set(pool.map(lambda _: load_secret(path), range(32)))
    assert len(secrets) == 1
    assert len(secrets.pop()) == 32
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["banyan.secret"]
    assert load_secret(path) == load_secret(path)
