"""A WSGI app for the gunicorn tests: one banyan record per request.

Configured from ``BANYAN_*`` at import, so with ``--preload`` in the master
before any worker is forked; the master also logs one record of its own,
which only the master may send. ``BANYAN_TEST_MARKS``, when set, is a folder
where each worker notes which exit paths ran (atexit, worker_exit).
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import banyan

banyan.configure()
banyan.log_prompt(input="master-boot", output=str(os.getpid()))


def mark(event: str) -> None:
    """Note that ``event`` happened in this process (when marks are asked for)."""
    folder = os.environ.get("BANYAN_TEST_MARKS")
    if folder:
        Path(folder, f"{os.getpid()}.{event}").touch()


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Log the request's ``n`` query value as the record's input; answer the pid."""
    if not getattr(app, "marked", False):
        app.marked = True  # type: ignore[attr-defined]
        mark("served")
        atexit.register(mark, "atexit")
    request = environ.get("QUERY_STRING", "")
    ok = banyan.log_prompt(input=f"request {request}", output=str(os.getpid()))
    start_response("200 OK" if ok else "500 Not Logged", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]
