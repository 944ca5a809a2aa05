"""Failed requests, as the batch path (:mod:`banyan._delivery`) and the 1.0.1 path
(:mod:`banyan._fanout`) both judge them: which statuses are retried, giving up on
records (:class:`GiveUp`), and how a refusal or an error is counted and warned about.
"""

from __future__ import annotations

from banyan._exceptions import AuthenticationError, BanyanError, HTTPStatusError, TransportError
from banyan._record import Encoded
from banyan._stats import DropReason, Stats

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
_KEY_HINT = " (check the API key / BANYAN_API_KEY)"


class GiveUp(Exception):
    """Raised inside a send attempt loop: stop retrying this batch."""


def held(exc: HTTPStatusError, stats: Stats) -> GiveUp:
    """A refused API key, with a spool: warned loudly; the records stay spooled."""
    stats.error(str(exc))
    stats.warn_loudly(
        f"refused-{exc.status_code}",
        f"banyan: the server refused a batch of logs, {exc}{_KEY_HINT}; they are kept in the "
        "spool and sent by the first process whose key the server accepts",
    )
    return GiveUp(DropReason.UNAUTHORIZED, str(exc))


def note_error(error: BanyanError, stats: Stats) -> None:
    """Remember ``error`` for ``get_stats()``; a permanent one is also warned about loudly."""
    stats.error(str(error))
    if isinstance(error, TransportError) and error.permanent:
        stats.warn_loudly(
            "permanent",
            f"banyan: cannot reach the server, and retrying will not help: {error}; "
            "log records are kept in the spool (if any) until this is fixed",
        )


def refused(records: list[Encoded], exc: HTTPStatusError, stats: Stats) -> bool:
    """Count ``records`` the server refused for good (a final 4xx); False.

    A refused API key is warned about loudly: nothing will get through until it is fixed.
    """
    auth = isinstance(exc, AuthenticationError)
    stats.drop(DropReason.UNAUTHORIZED if auth else DropReason.CLIENT_ERROR, len(records), str(exc))
    hint = _KEY_HINT if auth else ""
    message = (
        f"banyan: the server refused a batch of logs, {exc}{hint}; they are dropped "
        "(further drops are counted in get_stats())"
    )
    if auth:
        stats.warn_loudly(f"refused-{exc.status_code}", message)
    else:
        stats.warn_once(f"refused-{exc.status_code}", "%s", message)
    return False
