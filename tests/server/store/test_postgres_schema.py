"""PostgreSQL schema: migrations under a lock, newer schemas refused, day partitions, prune."""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

import psycopg
import pytest

from banyan.server.store import SchemaError
from banyan.server.store import pgschema as schema
from banyan.server.store.postgres import PostgresStore

from .records import batch, opened, run, scalar, stored_ids, with_store

SLOW = "CREATE TABLE extra (x integer); SELECT pg_sleep(0.5)"


async def _migrate(url: str, migrations: tuple[str, ...]) -> int:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        return await schema.migrate(conn, migrations)


def test_empty_database_is_migrated_to_the_current_version(pg_url: str) -> None:
    """Opening an empty database creates the schema; opening it again changes nothing."""

    async def scenario() -> int:
        await (await opened(pg_url)).close()
        await (await opened(pg_url)).close()
        return await _migrate(pg_url, schema.MIGRATIONS)

    assert run(scenario()) == schema.SCHEMA_VERSION
    assert scalar(pg_url, "SELECT count(*) FROM banyan_schema") == 1
    assert scalar(pg_url, "SELECT version FROM banyan_schema") == schema.SCHEMA_VERSION


def test_newer_database_is_refused(pg_url: str) -> None:
    """A database of a newer schema version is refused with SchemaError, left untouched."""
    run(_migrate(pg_url, (*schema.MIGRATIONS, "CREATE TABLE future (x integer)")))
    with pytest.raises(SchemaError, match="newer than this server"):
        run(opened(pg_url))
    assert scalar(pg_url, "SELECT version FROM banyan_schema") == schema.SCHEMA_VERSION + 1


def test_foreign_tables_are_refused(pg_url: str) -> None:
    """A database holding a projects table but no banyan version is refused."""
    with psycopg.connect(pg_url) as conn:
        conn.execute("CREATE TABLE projects (id text)")
    with pytest.raises(SchemaError):
        run(opened(pg_url))


def test_two_instances_migrating_at_once_apply_each_step_once(pg_url: str) -> None:
    """Two instances migrating together: one applies the steps, the other waits and sees them."""
    steps = (*schema.MIGRATIONS, SLOW)

    async def scenario() -> list[int]:
        return list(await asyncio.gather(_migrate(pg_url, steps), _migrate(pg_url, steps)))

    assert sorted(run(scenario())) == [0, len(steps)]
    assert scalar(pg_url, "SELECT version FROM banyan_schema") == len(steps)


def test_two_stores_opening_together_both_work(pg_url: str) -> None:
    """Two pools opening an empty database at once both end up on the current schema."""

    async def scenario() -> None:
        stores = await asyncio.gather(opened(pg_url), opened(pg_url))
        sent = batch(["r"])
        for store in stores:
            await store.ingest("prj_a", sent, 0)
            await store.close()

    run(scenario())
    assert stored_ids(pg_url, "prj_a") == ["r"]


def test_failed_migration_leaves_the_previous_version_whole(pg_url: str) -> None:
    """A migration failing half-way keeps none of its statements and the old version."""
    run(_migrate(pg_url, schema.MIGRATIONS))
    broken = (*schema.MIGRATIONS, "CREATE TABLE half (x integer); SELECT 1 / 0")
    with pytest.raises(psycopg.errors.DivisionByZero):
        run(_migrate(pg_url, broken))
    assert scalar(pg_url, "SELECT to_regclass('half')::text") is None
    assert scalar(pg_url, "SELECT version FROM banyan_schema") == schema.SCHEMA_VERSION


def _day_ts(days_ago: int) -> float:
    return (int(time.time() // schema.DAY) - days_ago) * schema.DAY + 3600.0


def _partitions(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'logs'::regclass"
        )
        return {r[0] for r in rows}


def test_partitions_are_created_ahead_and_for_late_records(pg_url: str) -> None:
    """Today and the days ahead get partitions; a late record its day's; an ancient one default."""

    async def scenario(store: PostgresStore) -> None:
        await store.ingest("prj_a", batch(["late"], ts=_day_ts(10)), 0)
        await store.ingest("prj_a", batch(["ancient"], ts=_day_ts(400)), 0)

    with_store(pg_url, scenario)
    today = int(time.time() // schema.DAY)
    ahead = {schema.partition_name(today + d) for d in range(schema.AHEAD_DAYS + 1)}
    assert ahead | {schema.partition_name(today - 10), "logs_default"} == _partitions(pg_url)
    assert scalar(pg_url, "SELECT id FROM logs_default") == "ancient"


def test_new_partition_takes_its_rows_from_the_default_one(pg_url: str) -> None:
    """Creating a day's partition moves that day's rows out of logs_default, none lost."""
    future = int(time.time() // schema.DAY) + 30

    async def scenario(store: PostgresStore) -> None:
        await store.ingest("prj_a", batch(["f1", "f2"], ts=future * schema.DAY + 5.0), 0)
        async with await psycopg.AsyncConnection.connect(pg_url) as conn:
            await schema.create_partition(conn, future, 2000)

    with_store(pg_url, scenario)
    name = schema.partition_name(future)
    assert scalar(pg_url, f"SELECT count(*) FROM {name}") == 2
    assert scalar(pg_url, "SELECT count(*) FROM logs_default") == 0


def test_prune_drops_old_partitions_and_keeps_the_rest(pg_url: str) -> None:
    """prune(before) drops whole day partitions before it and older default rows."""

    async def scenario(store: PostgresStore) -> dict[str, int]:
        for rid, days_ago in (("now", 0), ("old", 10), ("ancient", 400)):
            await store.ingest("prj_a", batch([rid], ts=_day_ts(days_ago)), 0)
        await store.prune(_day_ts(5))
        await store.ingest("prj_a", batch(["old2"], ts=_day_ts(10)), 0)
        return await store.summary("prj_a")

    summary = with_store(pg_url, scenario)
    today = int(time.time() // schema.DAY)
    assert sorted(stored_ids(pg_url, "prj_a")) == ["now", "old2"]
    assert schema.partition_name(today) in _partitions(pg_url)
    # Counters count what was received, not what retention kept.
    assert summary["stored"] == 4


def _insert_today(url: str) -> bool:
    """Whether a row for today's partition gets its lock within 1 s."""
    with psycopg.connect(url) as conn:
        conn.execute("SET lock_timeout = '1s'")
        try:
            conn.execute("INSERT INTO logs (project_id, id, ts, record) VALUES"
                         " ('prj_b', 'probe', %s, '')", (time.time(),))  # fmt: skip
        except psycopg.errors.LockNotAvailable:
            return False
        return True


class _Probing:
    """A connection that, after its first statement on record_ids (the prune's slow part),
    tries an insert for today's partition while the prune is held there."""

    def __init__(self, conn: psycopg.AsyncConnection[Any], url: str) -> None:
        self._conn, self._url = conn, url
        self.insert_got_its_lock: bool | None = None

    def transaction(self) -> Any:
        return self._conn.transaction()

    async def execute(self, query: Any, params: Any = None) -> Any:
        cursor = await self._conn.execute(query, params)
        if self.insert_got_its_lock is None and "record_ids" in str(query):
            self.insert_got_its_lock = await asyncio.to_thread(_insert_today, self._url)
        return cursor


def test_prune_holds_no_lock_on_logs_while_it_deletes_record_ids(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While prune deletes the dropped days' ids (in chunks), today's ingest takes its lock
    (#17); every old id is freed, every kept one stays."""
    monkeypatch.setattr(schema, "PRUNE_CHUNK", 40)
    old = [f"old-{n}" for n in range(150)]

    async def scenario(store: PostgresStore) -> dict[str, int]:
        await store.ingest("prj_a", batch(old, ts=_day_ts(10)), 0)
        await store.ingest("prj_a", batch(["ancient-1", "ancient-2"], ts=_day_ts(400)), 0)
        await store.ingest("prj_a", batch(["now-1", "now-2"], ts=_day_ts(0)), 0)
        async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
            probing = _Probing(conn, pg_url)
            removed = await schema.drop_before(cast(Any, probing), _day_ts(5), 2000)
        assert probing.insert_got_its_lock
        assert await store.ingest("prj_a", batch(["old-7", "ancient-2"], ts=_day_ts(10)), 0) == 2
        return removed

    assert with_store(pg_url, scenario) == {"logs": 152, "scores": 0}
    assert sorted(stored_ids(pg_url, "prj_a")) == ["ancient-2", "now-1", "now-2", "old-7"]
    assert scalar(pg_url, "SELECT count(*) FROM record_ids") == 4


def test_two_instances_creating_one_day_store_every_row(pg_url: str) -> None:
    """Two instances storing late records of one new day at once: one partition, all rows."""
    ts = _day_ts(20)

    async def scenario() -> None:
        stores = await asyncio.gather(opened(pg_url), opened(pg_url))
        try:
            await asyncio.gather(
                *(s.ingest("prj_a", batch([f"{n}-{i}" for i in range(50)], ts=ts), 0)
                  for n, s in enumerate(stores))
            )  # fmt: skip
        finally:
            for store in stores:
                await store.close()

    run(scenario())
    day = int(ts // schema.DAY)
    assert scalar(pg_url, f"SELECT count(*) FROM {schema.partition_name(day)}") == 100
    assert scalar(pg_url, "SELECT count(*) FROM logs_default") == 0


def test_blocked_partition_creation_does_not_hold_up_ingest(pg_url: str) -> None:
    """A day's partition that cannot be created now (lock held) leaves its rows in default."""
    with_store(pg_url, lambda store: store.ingest("prj_a", batch(["warm"]), 0))

    async def scenario(store: PostgresStore) -> int:
        store.partition_lock_timeout_ms = 200
        return await asyncio.wait_for(store.ingest("prj_a", batch(["late"], ts=_day_ts(20)), 0), 30)

    with psycopg.connect(pg_url) as holder:
        # An ingest still in its transaction holds a lock on the default partition.
        holder.execute("INSERT INTO logs_default (project_id, id, ts, record) VALUES"
                       " ('prj_b', 'x', 0, '')")  # fmt: skip
        assert with_store(pg_url, scenario) == 1
    assert scalar(pg_url, "SELECT id FROM logs_default WHERE project_id = 'prj_a'") == "late"
