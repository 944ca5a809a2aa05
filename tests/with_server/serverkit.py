"""Helpers for tests against the real reference server: management calls, polling."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from typing import TYPE_CHECKING, Any, Literal

import httpx
import msgspec

if TYPE_CHECKING:
    from serverproc import Server


def call(server: Server, method: str, path: str, **kw: Any) -> httpx.Response:
    """One management API call with the test key."""
    with httpx.Client(base_url=server.base_url, headers=server.headers, timeout=30) as client:
        response = client.request(method, path, **kw)
    assert response.status_code < 300, response.text
    return response


def create_prompt(server: Server, name: str, *contents: str) -> None:
    """Create prompt ``name`` with versions "1", "2", ... holding ``contents``."""
    first, *rest = contents
    call(server, "POST", "/api/v2/prompts", json={"name": name, "content": first})
    for content in rest:
        call(server, "POST", f"/api/v2/prompts/{name}/versions", json={"content": content})


def create_experiment(server: Server, prompt: str, sticky_key: str = "user_id") -> dict[str, Any]:
    """A running 50/50 experiment between versions 1 and 2 of ``prompt``."""
    body = {"prompt": prompt, "sticky_key": sticky_key, "variants": [
        {"version": "1", "percentage": 50}, {"version": "2", "percentage": 50}]}  # fmt: skip
    return dict(call(server, "POST", "/api/v2/experiments", json=body).json())


def wait_stored(server: Server, count: int, timeout: float = 10) -> int:
    """Poll the server until it stores ``count`` records (or time runs out)."""
    deadline = time.monotonic() + timeout
    while True:
        stored = server.summary()["stored"]
        if stored >= count or time.monotonic() > deadline:
            return stored
        time.sleep(0.05)


def stored_records(
    server: Server, table: Literal["logs", "scores"] = "logs"
) -> list[dict[str, Any]]:
    """Every stored record (or score) as the server keeps it (read from the database itself).

    In the order stored on SQLite; by ts, then id, on PostgreSQL.
    """
    if "://" in server.database:
        import psycopg

        with psycopg.connect(server.database) as conn:
            query = f"SELECT record FROM {table} ORDER BY ts, id".encode()
            rows = conn.execute(query).fetchall()
    else:
        with contextlib.closing(sqlite3.connect(f"file:{server.db}?mode=ro", uri=True)) as conn:
            rows = conn.execute(f"SELECT record FROM {table} ORDER BY rowid").fetchall()
    return [msgspec.msgpack.decode(row[0]) for row in rows]


def stored_inputs_in_order(server: Server) -> list[str]:
    """The ``input`` of every stored record, in the order the server stored them."""
    return [record["input"] for record in stored_records(server)]
