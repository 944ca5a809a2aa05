"""What `banyan serve` prints about itself: server errors, with their traceback."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from serverproc import Server, start_server

from .helpers import call, create_prompt


def _break_and_ask(server: Server) -> str:
    """Drop a table under the running server, have it answer 500, and return its output."""
    create_prompt(server, "p")
    with contextlib.closing(sqlite3.connect(server.db)) as conn:
        conn.execute("DROP TABLE prompt_versions")
    response = call(server, "GET", "/api/v2/prompts")
    assert response.status_code == 500, response.text
    # The handler writes (and flushes) the record before the response is sent.
    return server.log.read_text()


def test_a_500_is_logged_with_its_traceback(server: Server) -> None:
    """An unexpected error reaches stderr with its traceback: the request and the cause."""
    output = _break_and_ask(server)
    assert "Traceback" in output
    assert "unexpected error on GET /api/v2/prompts" in output
    assert "sqlite3.OperationalError" in output


def test_log_level_critical_keeps_errors_quiet(tmp_path: Path) -> None:
    """--log-level critical is honoured by the server's own logger too."""
    server = start_server(tmp_path, "--log-level", "critical")
    try:
        output = _break_and_ask(server)
    finally:
        server.stop()
    assert "Traceback" not in output
