"""PostgresStore ingest: each record stored once, duplicates and counters exact."""

from __future__ import annotations

import asyncio
import time

from banyan.server.store.postgres import PostgresStore

from .records import batch, opened, run, scalar, stored_ids, with_store

TS = time.time()


def test_resent_batch_stores_nothing_twice(pg_url: str) -> None:
    """A batch sent again inserts 0 rows and counts every record as a duplicate."""

    async def scenario() -> tuple[int, int, dict[str, int], list[str]]:
        store = await opened(pg_url)
        try:
            sent = batch([f"r{i:02}" for i in range(50)], ts=TS)
            first = await store.ingest("prj_a", sent, 0)
            again = await store.ingest("prj_a", sent, 0)
            return first, again, await store.summary("prj_a"), await store.log_ids("prj_a")
        finally:
            await store.close()

    first, again, summary, ids = run(scenario())
    assert (first, again) == (50, 0)
    assert summary == {"stored": 50, "duplicates": 50, "rejected": 0, "batches": 2, "single": 0}
    assert ids == [f"r{i:02}" for i in range(50)]


def test_projects_keep_their_own_ids(pg_url: str) -> None:
    """The same record id in two projects is two records."""

    async def scenario(store: PostgresStore) -> list[int]:
        sent = batch(["same"], ts=TS)
        return [await store.ingest(p, sent, 0) for p in ("prj_a", "prj_b", "prj_a")]

    assert with_store(pg_url, scenario) == [1, 1, 0]


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


def test_row_postgres_refuses_is_rejected_by_index(pg_url: str) -> None:
    """A record whose text PostgreSQL cannot hold is rejected alone, with its index."""

    async def scenario(store: PostgresStore) -> tuple[int, list[int], dict[str, int]]:
        sent = batch(["a", "b", "c"], ts=TS)
        sent.values[1 * 10 + 5] = "nul\x00model"
        inserted = await store.ingest("prj_a", sent, 0)
        return inserted, [r.index for r in sent.rejected], await store.summary("prj_a")

    inserted, rejected, summary = with_store(pg_url, scenario)
    assert (inserted, rejected) == (2, [1])
    assert (summary["stored"], summary["rejected"]) == (2, 1)
    assert sorted(stored_ids(pg_url, "prj_a")) == ["a", "c"]


def test_single_record_endpoint_counts_as_single(pg_url: str) -> None:
    """single=1 (the 1.0.1 endpoint) counts a single, not a batch."""

    async def scenario(store: PostgresStore) -> dict[str, int]:
        await store.ingest("prj_a", batch(["one"]), 1)
        return await store.summary("prj_a")

    summary = with_store(pg_url, scenario)
    assert (summary["single"], summary["batches"], summary["stored"]) == (1, 0, 1)


def test_aggregate_rows_come_from_stored_logs(pg_url: str) -> None:
    """stats_rows and result_rows return the indexed columns of the stored logs."""

    async def scenario(store: PostgresStore) -> tuple[list[tuple[object, ...]], ...]:
        sent = batch(["x", "y"], prompt_name="p", version="1", experiment_id="exp_1",
                     experiment_version_id="var_1", duration_ms=12.5, model="m")  # fmt: skip
        await store.ingest("prj_a", sent, 0)
        await store.ingest("prj_a", batch(["z"]), 0)
        return await store.stats_rows("prj_a", "p"), await store.result_rows("prj_a", "exp_1")

    stats, results = with_store(pg_url, scenario)
    assert stats == [("1", None, "exp_1", "var_1", 12.5, "m")] * 2
    assert results == [("var_1", 12.5, "m")] * 2
