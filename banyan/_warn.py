"""Tell the user once, where they will see it whatever their logging setup: ``warnings``.

The ``banyan`` logger has a ``NullHandler``, so its warnings stay unseen in an
application without logging configured. A failure the user must act on (a
wrong key, a refused project, a failing ``before_send``, a certificate that is
not trusted) also goes through :func:`warn_once`, once per process and key.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import warnings

_seen: set[str] = set()
_lock = threading.Lock()


class BanyanWarning(RuntimeWarning):
    """A Banyan failure the user must act on (filter it with ``warnings``)."""


def warn_once(key: str, message: str) -> None:
    """Issue ``message`` as a :class:`BanyanWarning` the first time ``key`` is seen; never raises.

    Not logged as well: the caller's own warn-once on the ``banyan`` logger says it there.
    """
    with _lock:
        if key in _seen:
            return
        _seen.add(key)
    # An "error" filter turns it into an exception, which the sending thread must not raise.
    with contextlib.suppress(Exception):
        warnings.warn(message, BanyanWarning, stacklevel=3)


def forget() -> None:
    """Warn again about every key (tests)."""
    with _lock:
        _seen.clear()


def debug_handler() -> None:
    """``debug=True``: the ``banyan`` logger also writes to stderr, at DEBUG level (once)."""
    logger = logging.getLogger("banyan")
    if any(getattr(h, "_banyan_debug", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    handler._banyan_debug = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
