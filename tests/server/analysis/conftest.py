"""Fixtures of the analysis tests."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest

from banyan.server import _db


@pytest.fixture
def conn() -> Iterator[sqlite3.Connection]:
    """The server's schema in memory (its logs have a subject), plus one score column."""
    conn = _db.connect(":memory:")
    _db.create_schema(conn)
    conn.execute("ALTER TABLE logs ADD COLUMN accepted INTEGER")
    yield conn
    conn.close()
