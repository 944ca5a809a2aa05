"""Fixtures of the storage tests: every engine, on the PostgreSQL server of the session.

``store`` runs a test once per engine (SQLite, PostgreSQL) on a new empty
database; PostgreSQL-only tests ask for ``pg_url`` instead (tests/conftest.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from serverproc import HAVE_PSYCOPG

from banyan.server.store import Store, open_store

# Without the driver (the postgres extra) the PostgreSQL tests are left out,
# except under CI, where the import error fails the run.
if not HAVE_PSYCOPG and not os.environ.get("CI"):
    collect_ignore_glob = ["test_postgres_*.py"]


@dataclass(frozen=True)
class StoreTarget:
    """An empty database of one engine; ``await target.open()`` gives a Store on it."""

    engine: str
    location: str

    async def open(self, **options: Any) -> Store:
        """A store on this database (schema created), through open_store."""
        return await open_store(self.location, **options)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreTarget:
    """Each engine in turn: a new SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return StoreTarget("sqlite", str(tmp_path / "banyan.db"))
    if not HAVE_PSYCOPG and not os.environ.get("CI"):
        pytest.skip("psycopg (the postgres extra) is not installed")
    return StoreTarget("postgres", request.getfixturevalue("pg_url"))
