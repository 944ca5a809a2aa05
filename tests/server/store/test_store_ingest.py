"""Every engine's ingest: each record stored once, duplicates and counters exact."""

from __future__ import annotations

import asyncio
import time

from banyan._record import Score
from banyan.server import _ingest
from banyan.server.store import Store

from ..helpers import record
from .conftest import StoreTarget
from .records import batch, on_engine

TS = time.time()


def test_resent_batch_stores_nothing_twice(store: StoreTarget) -> None:
    """A batch sent again inserts 0 rows and counts every record as a duplicate."""

    async def scenario(db: Store) -> tuple[int, int, dict[str, int], list[str]]:
        sent = batch([f"r{i:02}" for i in range(50)], ts=TS)
        first = await db.ingest("prj_a", sent, 0)
        again = await db.ingest("prj_a", sent, 0)
        return first, again, await db.summary("prj_a"), await db.log_ids("prj_a")

    first, again, summary, ids = on_engine(store, scenario)
    assert (first, again) == (50, 0)
    assert summary == {"stored": 50, "duplicates": 50, "rejected": 0, "batches": 2, "single": 0}
    assert ids == [f"r{i:02}" for i in range(50)]


def test_projects_keep_their_own_ids(store: StoreTarget) -> None:
    """The same record id in two projects is two records."""

    async def scenario(db: Store) -> list[int]:
        sent = batch(["same"], ts=TS)
        return [await db.ingest(p, sent, 0) for p in ("prj_a", "prj_b", "prj_a")]

    assert on_engine(store, scenario) == [1, 1, 0]


def test_concurrent_overlapping_batches_count_exactly(store: StoreTarget) -> None:
    """Overlapping batches ingested at once: each id stored once, every counter exact."""
    # Batch k holds ids k*100 .. k*100+299: every id is sent by up to three batches.
    batches = [[f"id{n}" for n in range(k * 100, k * 100 + 300)] for k in range(12)]

    async def scenario(db: Store) -> tuple[int, dict[str, int], list[str]]:
        jobs = [db.ingest("prj_a", batch(ids, ts=TS), 0) for ids in batches]
        inserted = sum(await asyncio.gather(*jobs))
        return inserted, await db.summary("prj_a"), await db.log_ids("prj_a")

    inserted, summary, ids = on_engine(store, scenario)
    unique = {i for ids in batches for i in ids}
    assert sorted(ids) == sorted(unique)
    assert inserted == summary["stored"] == len(unique)
    assert summary["duplicates"] == sum(map(len, batches)) - len(unique)
    assert (summary["batches"], summary["rejected"]) == (len(batches), 0)


def test_single_record_endpoint_counts_as_single(store: StoreTarget) -> None:
    """single=1 (the 1.0.1 endpoint) counts a single, not a batch."""

    async def scenario(db: Store) -> dict[str, int]:
        await db.ingest("prj_a", batch(["one"]), 1)
        return await db.summary("prj_a")

    summary = on_engine(store, scenario)
    assert (summary["single"], summary["batches"], summary["stored"]) == (1, 0, 1)


def test_unknown_project_has_zero_counters(store: StoreTarget) -> None:
    """summary() of a project that stored nothing is all zeros, and it has no ids."""

    async def scenario(db: Store) -> tuple[dict[str, int], list[str]]:
        return await db.summary("prj_none"), await db.log_ids("prj_none")

    summary, ids = on_engine(store, scenario)
    assert set(summary.values()) == {0}
    assert ids == []


def test_stats_rows_come_from_stored_logs(store: StoreTarget) -> None:
    """stats_rows returns the indexed columns of the stored logs of one prompt."""

    async def scenario(db: Store) -> list[tuple[object, ...]]:
        sent = batch(["x", "y"], prompt_name="p", version="1", experiment_id="exp_1",
                     experiment_version_id="var_1", duration_ms=12.5, model="m")  # fmt: skip
        await db.ingest("prj_a", sent, 0)
        await db.ingest("prj_a", batch(["z"]), 0)
        return await db.stats_rows("prj_a", "p")

    stats = on_engine(store, scenario)
    assert [tuple(r) for r in stats] == [("1", None, "exp_1", "var_1", 12.5, "m")] * 2


def test_prune_drops_old_logs_and_keeps_counters(store: StoreTarget) -> None:
    """prune(before) removes the logs older than ``before``, keeps newer ones and the counters."""
    day = 86_400.0

    async def scenario(db: Store) -> tuple[list[str], dict[str, int]]:
        await db.ingest("prj_a", batch(["old1", "old2"], ts=TS - 10 * day), 0)
        await db.ingest("prj_a", batch(["new"], ts=TS), 0)
        await db.prune(TS - 5 * day)
        return await db.log_ids("prj_a"), await db.summary("prj_a")

    ids, summary = on_engine(store, scenario)
    assert ids == ["new"]
    assert summary["stored"] == 3


def test_prune_returns_the_rows_it_removed_per_table(store: StoreTarget) -> None:
    """prune(before) returns how many logs and scores it removed, partitioned or not."""
    day = 86_400.0
    # 10 days old: a day partition on PostgreSQL; 40 days old: its default partition.
    old = [record("d1", ts=TS - 10 * day), record("d2", ts=TS - 10 * day),
           record("x", ts=TS - 40 * day)]  # fmt: skip
    scores = [Score(id=f"s{n}", ts=TS - n * day, name="ok", value=True, record_id="d1")
              for n in (0, 10)]  # fmt: skip

    async def scenario(db: Store) -> tuple[dict[str, int], dict[str, int], list[str]]:
        await db.ingest("prj_a", _ingest.to_rows([*old, *scores]), 0)
        await db.ingest("prj_a", batch(["new"], ts=TS), 0)
        first = await db.prune(TS - 5 * day)
        return first, await db.prune(TS - 5 * day), await db.log_ids("prj_a")

    first, again, ids = on_engine(store, scenario)
    assert first == {"logs": 3, "scores": 1}
    assert again == {"logs": 0, "scores": 0}
    assert ids == ["new"]
