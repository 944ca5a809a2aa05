"""Every engine: usage columns, score records and the result aggregates (#18)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from banyan._record import Record, Score, UsageRecord
from banyan.server import _ingest
from banyan.server.analysis import MetricSummary, Percentiles, VariantAggregate
from banyan.server.store import Store

from ..analysis.sim import clustered, summed
from ..helpers import record
from .conftest import StoreTarget
from .records import on_engine, with_store

if TYPE_CHECKING:
    from banyan.server.store.postgres import PostgresStore

TS = time.time()
WHERE = {"experiment_id": "exp", "experiment_version_id": "v0"}


def _used(rid: str, subject: str, tokens: int, cost: float, duration: float) -> UsageRecord:
    fields = {**WHERE, "sticky_value": subject, "duration_ms": duration}
    base = record(rid, ts=TS, **fields)
    return UsageRecord(**{f: getattr(base, f) for f in base.__struct_fields__},
                       input_tokens=tokens, output_tokens=1, cost=cost)  # fmt: skip


def _score(sid: str, value: Any, **fields: Any) -> Score:
    return Score(**{"id": sid, "ts": TS, "name": "accepted", "value": value, **fields})


def _batch() -> _ingest.Decoded:
    return _ingest.to_rows([
        _used("r1", "alice", 10, 0.5, 100.0), _used("r2", "alice", 30, 1.5, 300.0),
        _used("r3", "bob", 100, 2.0, 200.0),
        _score("s1", True, sticky_value="alice", **WHERE),
        _score("s2", False, record_id="r3"),
        _score("s3", "good", name="verdict", record_id="r1"),
    ])  # fmt: skip


def test_usage_and_scores_are_stored_once_and_aggregated(store: StoreTarget) -> None:
    """Records with usage and scores are stored once per id; the aggregates are per subject."""

    async def scenario(db: Store) -> tuple[int, int, dict[str, int], list[VariantAggregate]]:
        first = await db.ingest("prj", _batch(), 0)
        again = await db.ingest("prj", _batch(), 0)
        return first, again, await db.summary("prj"), await db.result_aggregates("prj", "exp")

    first, again, summary, aggregates = on_engine(store, scenario)
    assert (first, again) == (6, 0)
    assert (summary["stored"], summary["duplicates"]) == (6, 6)
    (agg,) = aggregates
    assert (agg.variant_id, agg.subjects, agg.records) == ("v0", 2, 3)
    m = agg.metrics
    # alice: 20 tokens, 1.0 USD, 200 ms on average; bob: 100, 2.0, 200.
    assert m["input_tokens"] == MetricSummary(2, 120.0, 20.0**2 + 100.0**2, 3)
    assert m["cost_usd"] == MetricSummary(2, 3.0, 5.0, 3)
    assert m["latency_ms"] == MetricSummary(2, 400.0, 80_000.0, 3)
    assert m["score:accepted"] == MetricSummary(2, 1.0, 1.0, 2, "proportion")
    assert m["score:verdict=good"] == MetricSummary(1, 1.0, 1.0, 1, "proportion")
    assert agg.latency is not None
    assert (agg.latency.p50_ms, agg.latency.p95_ms) == (200.0, 300.0)


def test_prune_deletes_old_scores_and_keeps_newer_ones(store: StoreTarget) -> None:
    """prune(before) deletes the scores older than ``before`` (by their ts), like the logs."""
    day = 86_400.0
    old = _score("old", True, ts=TS - 10 * day, sticky_value="alice", **WHERE)
    new = _score("new", True, sticky_value="bob", **WHERE)

    async def scenario(db: Store) -> list[VariantAggregate]:
        await db.ingest("prj", _ingest.to_rows([old, new]), 0)
        await db.prune(TS - 5 * day)
        return await db.result_aggregates("prj", "exp")

    (agg,) = on_engine(store, scenario)
    assert agg.metrics["score:accepted"] == MetricSummary(1, 1.0, 1.0, 1, "proportion")


def test_results_settings_stay_in_their_transaction_on_postgres(pg_url: str) -> None:
    """The planner settings of the results statements do not reach the pool's next user."""
    names = ("jit", "work_mem", "enable_seqscan", "enable_hashagg")
    shown = "SELECT " + ", ".join(f"current_setting('{n}')" for n in names)

    async def scenario(db: PostgresStore) -> tuple[list[tuple[Any, ...]], ...]:
        before = await db._fetch(shown, ())
        await db.ingest("prj", _batch(), 0)
        await db.result_aggregates("prj", "exp")
        return before, await db._fetch(shown, ())

    # One connection: the results' two statements and the checks all run on it.
    before, after = with_store(pg_url, scenario, max_size=1)
    assert after == before


def _timed_records() -> tuple[list[Record], Percentiles]:
    """Clustered timed records, some without a subject, and their Percentiles by numpy."""
    values, owner = clustered(np.random.default_rng(12), 40)
    subjects = [None if o >= 35 else f"u{o}" for o in owner]
    records = [record(f"r{i}", ts=TS, sticky_value=u, duration_ms=float(x), **WHERE)
               for i, (u, x) in enumerate(zip(subjects, values, strict=True))]  # fmt: skip
    # A record without a subject is a subject of its own.
    alone = np.where(owner >= 35, 1000 + np.arange(owner.size), owner)
    return records, summed(values, np.unique(alone, return_inverse=True)[1])


async def _percentiles_of(db: Store, records: list[Record]) -> Percentiles | None:
    await db.ingest("prj", _ingest.to_rows(records), 0)
    (agg,) = await db.result_aggregates("prj", "exp")
    return agg.percentiles


def test_latency_intervals_are_the_same_on_every_engine(store: StoreTarget) -> None:
    """Percentiles, cluster sums and interval bounds equal numpy's from the same records,
    a record without a subject counting as a subject of its own (#18)."""
    records, expected = _timed_records()
    assert on_engine(store, lambda db: _percentiles_of(db, records)) == expected
