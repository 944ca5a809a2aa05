"""Fixtures of the storage tests: a PostgreSQL server of the session, a database per test."""

from __future__ import annotations

import importlib.util
import itertools
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .pgserver import PgServer

# The driver comes with the postgres extra: without it these tests are left out,
# except under CI, where the import error fails the run.
if importlib.util.find_spec("psycopg") is None and not os.environ.get("CI"):
    collect_ignore_glob = ["test_*.py"]

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
