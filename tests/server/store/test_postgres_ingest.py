"""PostgresStore ingest only: two instances at once, sharded counters, rows PostgreSQL refuses.

The engine-neutral ingest tests are in test_store_ingest.py."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import psycopg
import pytest

from banyan.server import _ingest
from banyan.server._rules import COLUMN_NAMES, COLUMNS, NULL
from banyan.server.store import pgcopy
from banyan.server.store.postgres import PostgresStore

from ..helpers import record
from .records import batch, opened, run, scalar, stored_ids, with_store

TS = time.time()


def test_overlapping_batches_on_two_instances_store_each_id_once(pg_url: str) -> None:
    """Two pools (two instances) ingesting overlapping batches at once store each id once."""
    # Batch k holds ids k*100 .. k*100+299: every id is sent by up to three batches.
    batches = [[f"id{n}" for n in range(k * 100, k * 100 + 300)] for k in range(24)]

    async def scenario() -> tuple[int, dict[str, int]]:
        stores = [await opened(pg_url, max_size=4) for _ in range(2)]
        try:
            jobs = [
                stores[k % 2].ingest("prj_a", batch(ids, ts=TS), 0) for k, ids in enumerate(batches)
            ]
            inserted = sum(await asyncio.gather(*jobs))
            return inserted, await stores[1].summary("prj_a")
        finally:
            for store in stores:
                await store.close()

    inserted, summary = run(scenario())
    unique = {i for ids in batches for i in ids}
    sent = sum(map(len, batches))
    ids = stored_ids(pg_url, "prj_a")
    assert sorted(ids) == sorted(unique)
    assert inserted == summary["stored"] == len(unique)
    assert summary["duplicates"] == sent - len(unique)
    assert summary["batches"] == len(batches)
    # The counts were spread over several counter rows, not one hot row.
    shards = scalar(pg_url, "SELECT count(*) FROM ingest_counters WHERE project_id = 'prj_a'")
    assert shards > 1


@pytest.mark.parametrize("text", ["nul\x00model", "lone\ud800surrogate"])
def test_row_postgres_refuses_is_rejected_by_index(pg_url: str, text: str) -> None:
    """A record whose text PostgreSQL cannot hold is rejected alone, with its index."""

    async def scenario(store: PostgresStore) -> tuple[int, list[int], dict[str, int]]:
        sent = batch(["a", "b", "c"], ts=TS)
        sent.values[1 * COLUMNS + 5] = text
        inserted = await store.ingest("prj_a", sent, 0)
        return inserted, [r.index for r in sent.rejected], await store.summary("prj_a")

    inserted, rejected, summary = with_store(pg_url, scenario)
    assert (inserted, rejected) == (2, [1])
    assert (summary["stored"], summary["rejected"]) == (2, 1)
    assert sorted(stored_ids(pg_url, "prj_a")) == ["a", "c"]


def test_batch_of_new_records_needs_no_staging_table(pg_url: str) -> None:
    """New records are copied straight into logs: no temporary staging table is created."""
    staged = "SELECT count(*) FROM pg_class WHERE relname IN ('logs_stage', 'scores_stage')"

    async def scenario(store: PostgresStore) -> tuple[int, int]:
        inserted = await store.ingest("prj_a", batch(["a", "b"], ts=TS), 0)
        return inserted, scalar(pg_url, staged)  # while the store's connection is open

    assert with_store(pg_url, scenario) == (2, 0)


def test_batch_of_new_records_takes_no_savepoint(pg_url: str, tmp_path: Path) -> None:
    """New records are claimed, copied and counted in one transaction with no savepoint
    (a savepoint costs two round trips a batch)."""
    trace = tmp_path / "libpq.trace"

    async def scenario(store: PostgresStore) -> int:
        async with store._pool.connection() as conn:  # the pool's only connection
            with trace.open("w") as out:
                conn.pgconn.trace(os.dup(out.fileno()))
        inserted = await store.ingest("prj_a", batch(["a", "b"], ts=TS), 0)
        async with store._pool.connection() as conn:
            conn.pgconn.untrace()
        return inserted

    assert with_store(pg_url, scenario, max_size=1) == 2
    sent = trace.read_text()
    assert "COPY record_ids" in sent
    assert "COPY logs" in sent
    assert "SAVEPOINT" not in sent.upper()


@pytest.mark.parametrize("formatter", ["C row formatter", "write_row"])
def test_batch_of_several_copy_chunks_is_stored_value_for_value(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, formatter: str
) -> None:
    """Every row of a batch over several COPY chunks is stored as sent, NULLs included,
    by psycopg's row formatter or, without it, by write_row."""
    if formatter == "write_row":
        monkeypatch.setattr(pgcopy, "_format_row", None)
    sent = _ingest.to_rows(
        [record(f"r{n:04}", ts=TS + n, model="m" if n % 3 else None, duration_ms=n / 4 or None)
         for n in range(2 * pgcopy.CHUNK + 3)]
    )  # fmt: skip
    width = COLUMNS
    expected = [
        tuple(None if v is NULL else v for v in sent.values[n * width : (n + 1) * width])
        for n in range(sent.count)
    ]

    async def scenario(store: PostgresStore) -> int:
        return await store.ingest("prj_a", sent, 0)

    assert with_store(pg_url, scenario) == sent.count
    with psycopg.connect(pg_url) as conn:
        names = ", ".join((*COLUMN_NAMES, "record"))
        query = f"SELECT {names} FROM logs WHERE project_id = 'prj_a' ORDER BY id"
        assert conn.execute(query.encode()).fetchall() == expected
