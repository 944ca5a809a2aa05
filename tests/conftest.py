"""Fixtures shared by every test folder: the reference server as a real process."""

from __future__ import annotations

import gc
import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import settings
from serverproc import HAVE_PSYCOPG, Server, start_server

from banyan import _warn

if TYPE_CHECKING:
    from pgserver import PgServer

#: The storage engines `banyan serve` runs on; server tests run on each (docs/storage.md).
ENGINES = ("sqlite", "postgres")
#: Folders whose tests of the server run on every engine, unless marked sqlite_only.
BOTH_ENGINES = ("server", "with_server")
_databases = itertools.count()
_CLIENT_SIDE = "client behaviour with the server as a sink; measured, not worth a second run"
#: Server tests that stay on SQLite (node id prefix: why); a module may also say
#: ``pytestmark = pytest.mark.sqlite_only``.
SQLITE_ONLY = {
    # What these pin is the client's (spool, faults, wrappers, its prompt cache): the server
    # is only a sink there, and test_server_delivery pins that sink on PostgreSQL. They
    # cost 4.4 of the 11 minutes PostgreSQL added to these folders (docs/storage.md).
    "tests/with_server/test_spool_replay.py": _CLIENT_SIDE,
    "tests/with_server/test_wrappers.py": _CLIENT_SIDE,
    "tests/with_server/test_faults.py": _CLIENT_SIDE,
    "tests/with_server/test_redaction.py": _CLIENT_SIDE,
    "tests/with_server/test_prompts_backend_down.py": _CLIENT_SIDE,
    "tests/server/test_logging.py": "drops a table of the SQLite file under the running server",
    "tests/server/test_outcomes.py::test_usage_and_scores_are_stored_and_scores": (
        "reads the stored columns from the SQLite file (test_store_outcomes pins both engines)"
    ),
}

# CI must not fail on a draw no one can reproduce: fixed examples there, random ones locally.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(autouse=True, scope="session")
def _prompt_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep every client's on-disk prompt cache (and child processes') out of ~/.cache."""
    old = os.environ.get("BANYAN_CACHE_DIR")
    os.environ["BANYAN_CACHE_DIR"] = str(tmp_path_factory.mktemp("prompt-cache"))
    yield
    if old is None:
        os.environ.pop("BANYAN_CACHE_DIR", None)
    else:
        os.environ["BANYAN_CACHE_DIR"] = old


@pytest.fixture(autouse=True)
def _warnings_afresh() -> None:
    """Each test sees the once-per-process warnings (a wrong key, a certificate) anew."""
    _warn.forget()


@pytest.fixture(autouse=True)
def _spool_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """A spool root per test (children inherit it): no test replays another's records."""
    monkeypatch.setenv("BANYAN_SPOOL_DIR", str(tmp_path_factory.mktemp("spool")))


@pytest.fixture
def collect_garbage() -> Iterator[None]:
    """Collect garbage as the test ends: what it left unclosed warns in it, not in a later one."""
    yield
    gc.collect()


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker of tests that only make sense on a SQLite file."""
    config.addinivalue_line(
        "markers", "sqlite_only(reason): a server test that needs the SQLite file itself"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run each test of tests/server and tests/with_server that starts a server on each engine."""
    node = metafunc.definition
    if "engine" not in metafunc.fixturenames or node.get_closest_marker("sqlite_only"):
        return
    if any(node.nodeid.startswith(prefix) for prefix in SQLITE_ONLY):
        return
    folder = metafunc.definition.path.relative_to(Path(__file__).parent).parts[0]
    if folder in BOTH_ENGINES:
        metafunc.parametrize("engine", ENGINES, indirect=True, scope="session")


@pytest.fixture(scope="session")
def engine(request: pytest.FixtureRequest) -> str:
    """The storage engine of the test's server: SQLite unless parametrized."""
    return str(getattr(request, "param", "sqlite"))


def _running() -> Iterator[PgServer]:
    if not HAVE_PSYCOPG and not os.environ.get("CI"):
        pytest.skip("psycopg (the postgres extra) is not installed")
    from pgserver import start_or_skip

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


def database_options(request: pytest.FixtureRequest, engine: str) -> dict[str, Any]:
    """start_server's arguments for a new empty database of ``engine`` (SQLite: its default)."""
    if engine == "sqlite":
        return {}
    pg: PgServer = request.getfixturevalue("pg")
    return {"db": pg.create_database(f"s{os.getpid()}_{next(_databases)}")}


@pytest.fixture
def server(tmp_path: Path, engine: str, request: pytest.FixtureRequest) -> Iterator[Server]:
    """A fresh reference server (an empty database of ``engine``) for one test."""
    srv = start_server(tmp_path, **database_options(request, engine))
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def shared_server(
    tmp_path_factory: pytest.TempPathFactory, engine: str, request: pytest.FixtureRequest
) -> Iterator[Server]:
    """One reference server per engine for tests that only read or use unique names."""
    tmp = tmp_path_factory.mktemp("shared-server")
    srv = start_server(tmp, **database_options(request, engine))
    try:
        yield srv
    finally:
        srv.stop()
