"""Helpers for the server tests: records, batch bodies, clients."""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
import msgspec
from serverproc import Server

from banyan._record import Record, encode
from banyan._wire import BATCH_PATH, MSGPACK, msgpack_array_header
from banyan.server import _db

_serial = itertools.count()


def unique(prefix: str) -> str:
    """A name no other test uses (for the shared server)."""
    return f"{prefix}-{os.getpid()}-{next(_serial)}"


def record(rid: str | None = None, **fields: Any) -> Record:
    """A valid record; ``fields`` override the defaults."""
    base: dict[str, Any] = {
        "id": rid or unique("rec"),
        "ts": time.time(),
        "input": "in",
        "output": "out",
    }
    return Record(**{**base, **fields})


def body(records: Iterable[Record | dict[str, Any] | Any]) -> bytes:
    """A MessagePack batch body, framed the way the client frames it."""
    items = [encode(r) if isinstance(r, Record) else msgspec.msgpack.encode(r) for r in records]
    return msgpack_array_header(len(items)) + b"".join(items)


def post_batch(
    server: Server, content: bytes, headers: dict[str, str] | None = None, key: str | None = None
) -> httpx.Response:
    """POST a batch body (MessagePack unless told otherwise)."""
    head = {"X-API-Key": key or server.api_key, "Content-Type": MSGPACK, **(headers or {})}
    with httpx.Client(base_url=server.base_url, timeout=60, verify=False) as client:
        return client.post(BATCH_PATH, content=content, headers=head)


def open_batch(server: Server, key: str, length: int = 1000) -> socket.socket:
    """A connection that sent batch headers announcing ``length`` bytes and one body byte."""
    head = (
        f"POST {BATCH_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {key}\r\n"
        f"Content-Type: {MSGPACK}\r\nContent-Length: {length}\r\n\r\n"
    )
    conn = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    conn.sendall(head.encode() + b"\xdd")
    return conn


def status_of(conn: socket.socket) -> int:
    """The status code of the response on ``conn`` (waits for it)."""
    line = conn.makefile("rb").readline()
    return int(line.split()[1])


def call(
    server: Server, method: str, path: str, key: str | None = None, **kw: Any
) -> httpx.Response:
    """One JSON API call with ``key`` (the server's test key by default)."""
    headers = {"X-API-Key": key or server.api_key, **kw.pop("headers", {})}
    with httpx.Client(base_url=server.base_url, timeout=30, verify=False) as client:
        return client.request(method, path, headers=headers, **kw)


def create_prompt(server: Server, name: str, *contents: str, key: str | None = None) -> None:
    """Create prompt ``name`` with one version per content ("1", "2", ...)."""
    first, *rest = contents or ("Hello {name}",)
    response = call(server, "POST", "/api/v2/prompts", key, json={"name": name, "content": first})
    assert response.status_code == 201, response.text
    for content in rest:
        response = call(
            server, "POST", f"/api/v2/prompts/{name}/versions", key, json={"content": content}
        )
        assert response.status_code == 201, response.text


def upgraded(
    path: Path, old: Callable[[Path], contextlib.closing[sqlite3.Connection]]
) -> contextlib.closing[sqlite3.Connection]:
    """A database made by ``old`` (with one log row), upgraded by the server; a connection."""
    with old(path) as conn:
        conn.execute("INSERT INTO logs (project_id, id, ts, record) VALUES ('p', 'r', 0, x'')")
    _db.Database(path).close()
    conn = _db.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == _db.SCHEMA_VERSION
    return contextlib.closing(conn)


def schema_5_database(path: Path) -> contextlib.closing[sqlite3.Connection]:
    """A new database at ``path`` made as schema version 5 had it (no ts in the subject index)."""
    _db.Database(path).close()
    conn = _db.connect(path)
    conn.execute("DROP INDEX logs_experiment_subjects")
    conn.execute(
        "CREATE INDEX logs_experiment_subjects ON logs (project_id, experiment_id,"
        " experiment_version_id, subject, duration_ms, input_tokens, output_tokens, cost)"
        " WHERE experiment_id IS NOT NULL"
    )
    conn.execute("PRAGMA user_version = 5")
    return contextlib.closing(conn)


def schema_4_database(path: Path) -> contextlib.closing[sqlite3.Connection]:
    """A new database at ``path`` made as schema version 4 had it (no usage, no scores)."""
    _db.Database(path).close()
    conn = _db.connect(path)
    conn.execute("DROP TABLE scores")
    conn.execute("DROP INDEX logs_experiment_subjects")
    for column in ("input_tokens", "output_tokens", "cost"):
        conn.execute(f"ALTER TABLE logs DROP COLUMN {column}")
    conn.execute(
        "CREATE INDEX logs_experiment_subjects ON logs (project_id, experiment_id,"
        " experiment_version_id, subject, duration_ms) WHERE experiment_id IS NOT NULL"
    )
    conn.execute("PRAGMA user_version = 4")
    return contextlib.closing(conn)


def schema_3_database(path: Path) -> contextlib.closing[sqlite3.Connection]:
    """A new database at ``path`` made as schema version 3 had it (logs without a subject)."""
    with schema_4_database(path):
        pass
    conn = _db.connect(path)
    conn.execute("DROP INDEX logs_experiment_subjects")
    conn.execute("DROP INDEX logs_experiment_latency")
    conn.execute("ALTER TABLE logs DROP COLUMN subject")
    conn.execute("PRAGMA user_version = 3")
    return contextlib.closing(conn)
