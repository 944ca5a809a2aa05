"""Idempotency-Key on the 1.0.1 endpoint POST /api/logs/prompt-usage (#20)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import httpx
import pytest
from serverproc import Server, start_server

from banyan._wire import SINGLE_LOG_PATH
from banyan.server import _db

from .helpers import call, schema_3_database, unique

USAGE = {"input": "in", "output": "out", "model": "m"}


def _log(
    server: Server, key: str | None, usage: object = USAGE, api_key: str | None = None
) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key is not None else {}
    return call(server, "POST", SINGLE_LOG_PATH, api_key, json=usage, headers=headers)


def test_repeated_key_is_stored_once_and_answered_alike(shared_server: Server) -> None:
    """The same Idempotency-Key twice: one record stored, the same status and body twice."""
    key = unique("idem")
    before = shared_server.summary()["single"]
    first, again = _log(shared_server, key), _log(shared_server, key)
    assert first.status_code == 201
    assert (again.status_code, again.content) == (first.status_code, first.content)
    assert shared_server.summary()["single"] == before + 1
    assert shared_server.stored_ids().count(first.json()["id"]) == 1


def test_without_key_each_request_is_a_record(shared_server: Server) -> None:
    """No Idempotency-Key: two identical requests are two records (1.0.1's behaviour)."""
    first, again = _log(shared_server, None), _log(shared_server, None)
    assert first.json()["id"] != again.json()["id"]


def test_key_is_remembered_across_a_restart(server: Server, tmp_path: Path) -> None:
    """The key lives in the database: after a restart the retry is answered as the first time."""
    first = _log(server, "retry-after-restart")
    server.stop()
    again_server = start_server(tmp_path, db=server.database)
    try:
        again = _log(again_server, "retry-after-restart")
        assert (again.status_code, again.content) == (first.status_code, first.content)
        assert again_server.summary()["single"] == 1
    finally:
        again_server.stop()


def test_same_key_with_another_body_is_422(shared_server: Server) -> None:
    """Reusing a key for a different record is refused (422), and nothing more is stored."""
    key = unique("idem")
    assert _log(shared_server, key).status_code == 201
    before = shared_server.summary()["single"]
    other = _log(shared_server, key, {**USAGE, "output": "something else"})
    assert other.status_code == 422
    assert shared_server.summary()["single"] == before


def test_keys_are_per_project(shared_server: Server, project_b: str) -> None:
    """The same key in two projects names two different requests."""
    key = unique("idem")
    mine, theirs = _log(shared_server, key), _log(shared_server, key, api_key=project_b)
    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert mine.json()["id"] != theirs.json()["id"]


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9"])
def test_malformed_key_is_400(shared_server: Server, key: str) -> None:
    """An empty key, one over 255 characters or one outside printable ASCII: 400, nothing stored."""
    before = shared_server.summary()["single"]
    headers = {"Idempotency-Key": key.encode()}
    response = call(shared_server, "POST", SINGLE_LOG_PATH, json=USAGE, headers=headers)
    assert response.status_code == 400
    assert shared_server.summary()["single"] == before


def test_schema_2_database_gains_the_key_table(tmp_path: Path) -> None:
    """A database of schema version 2 is upgraded in place: it keeps its rows, gains the table."""
    path = tmp_path / "v2.db"
    with schema_3_database(path) as conn:
        conn.execute("DROP TABLE idempotency_keys")
        conn.execute("INSERT INTO projects VALUES ('prj_x', 'x', 0)")
        conn.execute("PRAGMA user_version = 2")
    _db.Database(path).close()
    with contextlib.closing(_db.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == _db.SCHEMA_VERSION
        assert conn.execute("SELECT count(*) FROM idempotency_keys").fetchone()[0] == 0
        assert conn.execute("SELECT name FROM projects").fetchall() == [("x",)]
