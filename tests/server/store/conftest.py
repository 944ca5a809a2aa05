"""Fixtures of the storage tests: every engine, a PostgreSQL server of the session.

``store`` runs a test once per engine (SQLite, PostgreSQL) on a new empty
database; PostgreSQL-only tests ask for ``pg_url`` instead.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from banyan.server.store import Store, open_store

if TYPE_CHECKING:
    from .pgserver import PgServer

# The driver comes with the postgres extra: without it the PostgreSQL tests are
# left out, except under CI, where the import error fails the run.
HAVE_PSYCOPG = importlib.util.find_spec("psycopg") is not None
if not HAVE_PSYCOPG and not os.environ.get("CI"):
    collect_ignore_glob = ["test_postgres_*.py"]

_databases = itertools.count()


def _started() -> PgServer:
    from .pgserver import PgServer

    server = PgServer()
    try:
        server.start()
    except BaseException:
        server.remove()
        raise
    return server


def start_or_skip() -> PgServer:
    """A running PostgreSQL server; skips the test without one, fails instead under CI."""
    from .pgserver import PgUnavailable

    try:
        return _started()
    except (PgUnavailable, OSError, KeyError) as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required under CI: {exc}")
        pytest.skip(f"no PostgreSQL here: {exc}")


def _running() -> Iterator[PgServer]:
    server = start_or_skip()
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture(scope="session")
def pg() -> Iterator[PgServer]:
    """One PostgreSQL server for the session, removed at its end whatever happens."""
    yield from _running()


@pytest.fixture
def pg_url(pg: PgServer) -> str:
    """The URL of a new empty database (password included) for one test."""
    return pg.create_database(f"t{os.getpid()}_{next(_databases)}")


@pytest.fixture
def own_pg() -> Iterator[PgServer]:
    """A PostgreSQL server of this test alone, which it may stop and start."""
    yield from _running()


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
