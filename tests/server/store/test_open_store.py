"""open_store: the engine chosen by the URL or path (or BANYAN_DATABASE_URL), SQLite's errors."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from banyan.server._auth import hash_key
from banyan.server.store import DATABASE_URL_ENV, Conflict, SchemaError, Store, open_store

from .conftest import StoreTarget
from .records import run


async def _engine_of(target: str | Path | None) -> str:
    store = await open_store(target)
    await store.close()
    return type(store).__name__


def test_a_path_opens_sqlite_and_a_postgres_url_opens_postgres(store: StoreTarget) -> None:
    """A file path (str or Path) gives SqliteStore; postgresql:// gives PostgresStore."""
    expected = {"sqlite": "SqliteStore", "postgres": "PostgresStore"}[store.engine]
    assert run(_engine_of(store.location)) == expected
    if store.engine == "sqlite":
        assert run(_engine_of(Path(store.location))) == expected
        assert Path(store.location).exists()


def test_environment_names_the_database_when_no_argument_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without an argument BANYAN_DATABASE_URL is used; an argument wins over it."""
    monkeypatch.setenv(DATABASE_URL_ENV, str(tmp_path / "env.db"))
    assert run(_engine_of(None)) == "SqliteStore"
    assert (tmp_path / "env.db").exists()
    assert run(_engine_of(tmp_path / "arg.db")) == "SqliteStore"
    assert (tmp_path / "arg.db").exists()


def test_other_url_schemes_are_refused(tmp_path: Path) -> None:
    """A URL of a database banyan has no engine for raises ValueError, opening nothing."""
    with pytest.raises(ValueError, match="mysql"):
        run(open_store("mysql://u@h/db"))


def test_sqlite_database_of_a_newer_server_is_refused(tmp_path: Path) -> None:
    """A SQLite file with a newer schema version raises the store's SchemaError."""
    path = tmp_path / "newer.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 999")
        conn.execute("CREATE TABLE projects (id TEXT)")
    with pytest.raises(SchemaError):
        run(open_store(path))


def test_sqlite_store_shares_the_servers_file(tmp_path: Path) -> None:
    """What a SqliteStore writes, a second store on the same file reads (one schema)."""
    path = tmp_path / "shared.db"

    async def scenario() -> None:
        first: Store = await open_store(path)
        try:
            boot = await first.bootstrap(None)
            assert boot.key is not None
        finally:
            await first.close()
        second = await open_store(path)
        try:
            principal = await second.principal(hash_key(boot.key))
            assert principal is not None
            assert principal.project_id == boot.project_id
            with pytest.raises(Conflict):
                await second.create_project("default", hash_key("psk_z"), "psk_z")
        finally:
            await second.close()

    run(scenario())
