"""Every engine: a record id is stored once per project, whatever its ts (#17, protocol §3)."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from banyan.server import _ingest
from banyan.server._rules import COLUMNS
from banyan.server.store import Store

from ..helpers import record
from .conftest import StoreTarget
from .records import batch, on_engine, opened, run, scalar, stored_ids, with_store

if TYPE_CHECKING:
    from banyan.server.store.postgres import PostgresStore

TS = time.time()
HOUR = 3600.0


def test_same_id_other_ts_in_one_batch_is_stored_once(store: StoreTarget) -> None:
    """One batch with an id twice, at two times: the first is stored, the second a duplicate."""

    async def scenario(db: Store) -> tuple[int, dict[str, int], list[str]]:
        sent = _ingest.to_rows([record("twice", ts=TS), record("twice", ts=TS + HOUR),
                                record("once", ts=TS)])  # fmt: skip
        inserted = await db.ingest("prj_a", sent, 0)
        return inserted, await db.summary("prj_a"), await db.log_ids("prj_a")

    inserted, summary, ids = on_engine(store, scenario)
    assert inserted == summary["stored"] == 2
    assert summary["duplicates"] == 1
    assert sorted(ids) == ["once", "twice"]


def test_same_id_other_ts_in_two_batches_keeps_the_first(store: StoreTarget) -> None:
    """An id stored already, sent again a day earlier: a duplicate, and the first row stays."""

    async def scenario(db: Store) -> tuple[list[int], dict[str, int], list[tuple[object, ...]]]:
        first = await db.ingest("prj_a", batch(["reused"], ts=TS, prompt_name="p", model="1st"), 0)
        again = batch(["reused"], ts=TS - 24 * HOUR, prompt_name="p", model="2nd")
        inserted = [first, await db.ingest("prj_a", again, 0)]
        return inserted, await db.summary("prj_a"), await db.stats_rows("prj_a", "p")

    inserted, summary, rows = on_engine(store, scenario)
    assert inserted == [1, 0]
    assert (summary["stored"], summary["duplicates"]) == (1, 1)
    assert [r[-1] for r in rows] == ["1st"]


def test_same_id_other_ts_via_two_instances_is_stored_once(store: StoreTarget) -> None:
    """Two stores on one database (two instances), the same id at two times, one after the
    other and then at once: each id stored once, the others counted as duplicates."""

    async def scenario(db: Store) -> tuple[list[int], dict[str, int], list[str]]:
        other = await store.open()
        try:
            first = await db.ingest("prj_a", batch(["a"], ts=TS), 0)
            second = await other.ingest("prj_a", batch(["a"], ts=TS + HOUR), 0)
            ids = [f"c{n:03}" for n in range(300)]
            at_once = await asyncio.gather(
                db.ingest("prj_a", batch(ids, ts=TS), 0),
                other.ingest("prj_a", batch(ids, ts=TS + 2 * HOUR), 0),
            )
            return [first, second, *at_once], await db.summary("prj_a"), await db.log_ids("prj_a")
        finally:
            await other.close()

    inserted, summary, ids = on_engine(store, scenario)
    assert inserted[:2] == [1, 0]
    assert sorted(inserted[2:]) == [0, 300]
    assert sorted(ids) == ["a", *(f"c{n:03}" for n in range(300))]
    assert (summary["stored"], summary["duplicates"]) == (301, 301)


def test_pruned_id_may_be_stored_again(store: StoreTarget) -> None:
    """Once prune removed a record, its id is free: sent again, it is stored."""

    async def scenario(db: Store) -> tuple[int, list[str]]:
        await db.ingest("prj_a", batch(["old"], ts=TS - 10 * 24 * HOUR), 0)
        await db.prune(TS - 5 * 24 * HOUR)
        again = await db.ingest("prj_a", batch(["old"], ts=TS), 0)
        return again, await db.log_ids("prj_a")

    assert on_engine(store, scenario) == (1, ["old"])


def test_version_2_database_gets_its_ids_claimed(pg_url: str) -> None:
    """PostgreSQL schema 2 -> 3: stored ids are claimed (the earliest of a doubled id), so a
    record reusing one is a duplicate; the rows stored twice before stay."""
    import psycopg

    from banyan.server.store import pgschema

    async def scenario() -> tuple[int, int]:
        async with await psycopg.AsyncConnection.connect(pg_url) as conn:
            await pgschema.migrate(conn, pgschema.MIGRATIONS[:2])
            await conn.execute(
                "INSERT INTO logs (project_id, id, ts, record) VALUES"
                " ('prj_a', 'old', %s, ''), ('prj_a', 'old', %s, '')",
                (TS, TS - HOUR),
            )
        db = await opened(pg_url)
        try:
            again = await db.ingest("prj_a", batch(["old"], ts=TS + HOUR), 0)
            return again, await db.ingest("prj_a", batch(["new"], ts=TS), 0)
        finally:
            await db.close()

    assert run(scenario()) == (0, 1)
    assert scalar(pg_url, "SELECT ts FROM record_ids WHERE id = 'old'") == TS - HOUR
    assert sorted(stored_ids(pg_url, "prj_a")) == ["new", "old", "old"]


def test_rejected_row_leaves_its_id_free(pg_url: str) -> None:
    """PostgreSQL: a row refused for a NUL character does not keep its id; resent whole, it
    is stored."""

    async def scenario(db: PostgresStore) -> list[int]:
        sent = batch(["a", "b"], ts=TS)
        sent.values[1 * COLUMNS + 5] = "nul\x00model"
        return [await db.ingest("prj_a", sent, 0), await db.ingest("prj_a", batch(["b"]), 0)]

    assert with_store(pg_url, scenario) == [1, 1]
    assert sorted(stored_ids(pg_url, "prj_a")) == ["a", "b"]
