"""PostgreSQL: the per-subject aggregates of an experiment's results (#18).

The statements are analysis's own (``subject_query``, ``cdf_query`` and the
score queries), turned into PostgreSQL's dialect; latency percentiles are
``percentile_disc``, which is the nearest rank that SQLite's index walk finds,
and so are the order statistics that bound them (at ``(rank - 0.5) / n``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import TypeVar

import msgspec

from banyan.server import analysis
from banyan.server.analysis import (
    RECORD_METRICS,
    Percentiles,
    VariantAggregate,
    cdf_query,
    latency_summary,
    subject_query,
)
from banyan.server.analysis._outcomes import (
    SCORE_QUERIES,
    ByVariant,
    postgres,
    score_args,
    scores_from,
    with_scores,
)
from banyan.server.analysis._sqlite import aggregate, percentiles
from banyan.server.store.pgcatalog import Conn, _all, _one

_SUMS = postgres(subject_query(RECORD_METRICS))
_PERCENTILES = """
SELECT experiment_version_id,
       percentile_disc(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY duration_ms)
FROM logs WHERE project_id = %s AND experiment_id = %s AND duration_ms IS NOT NULL
GROUP BY experiment_version_id
"""
_CDF = postgres(cdf_query())
_AT_RANKS = """
SELECT percentile_disc(%s::float8[]) WITHIN GROUP (ORDER BY duration_ms)
FROM logs WHERE project_id = %s AND experiment_id = %s AND experiment_version_id = %s
    AND duration_ms IS NOT NULL
"""
_SCORES = tuple(map(postgres, SCORE_QUERIES))
#: For the results transactions only. JIT compiled each 1M-record statement for ~0.8 s
#: before running it once; at the default 4 MB work_mem the scores' per-subject sorts
#: and hashes spilled to disk (external merge, hash batches).
_TUNED = ("SET LOCAL jit = off", "SET LOCAL work_mem = '64MB'")
#: The logs' per-subject sums stream in the order of their covering partial index
#: (logs_experiment_subjects): no sort, no hash table. Left alone, the planner took a
#: sequential scan and a 100,000-group hash aggregate: twice the CPU at 1M records.
_STREAMED = (*_TUNED, "SET LOCAL enable_seqscan = off", "SET LOCAL enable_hashagg = off")
T = TypeVar("T")


async def _set(conn: Conn, settings: tuple[str, ...]) -> None:
    for setting in settings:
        await conn.execute(setting.encode())


async def _percentiles(
    conn: Conn, args: tuple[str, str, str | None], values: list[float | None],
    alpha: float, tau: float | None,
) -> Percentiles:  # fmt: skip
    """One variant's percentiles with the cluster sums and order statistics of their intervals."""
    row = await _one(conn, _CDF, (*values, *args))
    unbounded = percentiles(row, values, [(None, None)] * len(values), alpha, tau)
    ranks = analysis.interval_ranks(unbounded, alpha, tau)
    wanted = sorted({r for pair in ranks for r in pair if r is not None})
    at: dict[int, float] = {}
    if wanted:
        fractions = [(r - 0.5) / unbounded.timed for r in wanted]
        (found,) = await _one(conn, _AT_RANKS, (fractions, *args))
        at = dict(zip(wanted, found, strict=True))
    bounds = [(at.get(low) if low else None, at.get(high) if high else None) for low, high in ranks]
    return percentiles(row, values, bounds, alpha, tau)


async def _record_sums(
    conn: Conn, project_id: str, exp_id: str, alpha: float, tau: float | None
) -> list[VariantAggregate]:
    await _set(conn, _STREAMED)
    args = (project_id, exp_id)
    sums = [aggregate(row, RECORD_METRICS) for row in await _all(conn, _SUMS, args)]
    values = {v: list(p) for v, p in await _all(conn, _PERCENTILES, args)}
    out = []
    for a in sums:
        found = None
        if a.variant_id in values:
            variant = (project_id, exp_id, a.variant_id)
            found = await _percentiles(conn, variant, values[a.variant_id], alpha, tau)
        out.append(msgspec.structs.replace(a, latency=latency_summary(found), percentiles=found))
    return out


async def _score_sums(
    conn: Conn, project_id: str, exp_id: str, alpha: float, tau: float | None
) -> ByVariant:
    await _set(conn, _TUNED)
    rows = [await _all(conn, query, score_args(project_id, exp_id)) for query in _SCORES]
    return scores_from(*rows)


class Results:
    """The result aggregates of PostgresStore."""

    def _connection(self) -> AbstractAsyncContextManager[Conn]:
        raise NotImplementedError

    async def result_aggregates(
        self, project_id: str, exp_id: str, *, alpha: float = 0.05, tau: float | None = None
    ) -> list[VariantAggregate]:
        """Latency, usage, cost and score sums per variant, per subject first.

        The logs and the scores are read on two connections at once (two backends,
        two snapshots: a record stored in between may count in one and not the other).
        """
        logs, scores = await asyncio.gather(
            self._on_connection(_record_sums, project_id, exp_id, alpha, tau),
            self._on_connection(_score_sums, project_id, exp_id, alpha, tau),
        )
        return with_scores(logs, scores)

    async def _on_connection(
        self, fn: Callable[[Conn, str, str, float, float | None], Awaitable[T]],
        project_id: str, exp_id: str, alpha: float, tau: float | None,
    ) -> T:  # fmt: skip
        async with self._connection() as conn:
            return await fn(conn, project_id, exp_id, alpha, tau)
