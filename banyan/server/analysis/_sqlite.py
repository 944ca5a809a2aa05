"""A reference query: the per-variant aggregates of one experiment, from SQLite's logs.

It reads the ``logs`` table of banyan/server/_db.py plus one column it does not
have yet, the subject (the value of the experiment's sticky key), named by
``subject``. Memory is bounded by the number of subjects, never by records:
SQLite reduces each (variant, subject) group to one row in the inner query,
and the outer query sums those rows per variant. An index on
``(project_id, experiment_id, experiment_version_id, subject)`` lets the inner
GROUP BY stream; one on ``(..., experiment_version_id, duration_ms)`` makes the
percentiles index walks.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Sequence
from typing import Any, NamedTuple

import msgspec

from banyan.server.analysis._inputs import (
    LatencySummary,
    MetricKind,
    MetricSummary,
    Percentiles,
    QuantileSums,
    VariantAggregate,
)

_WHERE = "project_id = ? AND experiment_id = ?"
#: One variant's timed records; binds project, experiment and variant.
_TIMED = f"{_WHERE} AND experiment_version_id = ? AND duration_ms IS NOT NULL"
#: The latency percentiles reported, in percent.
PERCENTILES = (50, 95, 99)
#: The order statistics at an interval's two ranks (None: no such rank).
Bound = tuple[float | None, float | None]


class Metric(NamedTuple):
    """A metric: its name, an SQL expression over a logs row (NULL: no value), its kind."""

    name: str
    #: Written by the server, never taken from a request: it is pasted into the SQL.
    expression: str
    kind: MetricKind = "mean"


LATENCY = Metric("latency_ms", "duration_ms")


def _per_subject(metric: Metric, i: int) -> str:
    # One value per subject: the mean of its records, or whether any record converted.
    value = f"AVG({metric.expression})"
    if metric.kind == "proportion":
        value = f"MAX(({metric.expression}) != 0)"
    return f"{value} AS m{i}, COUNT({metric.expression}) AS r{i}"


def subject_query(metrics: Sequence[Metric], subject: str = "subject") -> str:
    """The SQL: per variant, subjects, records, and per metric COUNT, SUM, SUM of squares."""
    inner = ", ".join(_per_subject(m, i) for i, m in enumerate(metrics))
    outer = "".join(
        f", COUNT(m{i}), TOTAL(m{i}), TOTAL(m{i} * m{i}), TOTAL(r{i})" for i in range(len(metrics))
    )
    return (
        f"SELECT variant, COUNT(*), SUM(records){outer} FROM ("
        f" SELECT experiment_version_id AS variant, COUNT(*) AS records, {inner}"
        f" FROM logs WHERE {_WHERE} AND {subject} IS NOT NULL"
        f" GROUP BY experiment_version_id, {subject}"
        ") AS per_subject GROUP BY variant"
    )


def nearest_rank(p: float, n: int) -> int:
    """The rank of the nearest-rank ``p`` percentile of ``n`` values (1-based)."""
    return max(1, math.ceil(p / 100 * n))


def aggregate(row: Sequence[Any], metrics: Sequence[Metric]) -> VariantAggregate:
    """A VariantAggregate from one row of ``subject_query(metrics)``."""
    summaries = {}
    for i, metric in enumerate(metrics):
        n, total, squares, records = row[3 + 4 * i : 7 + 4 * i]
        # PostgreSQL's SUM (for TOTAL) of no values is NULL, and of integers numeric.
        summaries[metric.name] = MetricSummary(
            int(n), float(total or 0), float(squares or 0), int(records or 0), metric.kind
        )
    variant = None if row[0] is None else str(row[0])
    return VariantAggregate(variant, int(row[1]), int(row[2]), summaries)


def cdf_query(subject: str = "subject", percentiles: int = 3) -> str:
    """The SQL: one variant's cluster sums of the records at or below each percentile.

    Binds the percentiles' values, then project, experiment and variant. A record
    without a subject is a subject of its own: its S is 0 or 1, so S * S = S * N = S.
    """
    below = "".join(
        f", SUM(CASE WHEN duration_ms <= ? THEN 1 ELSE 0 END) AS s{i}" for i in range(percentiles)
    )
    sums = "".join(
        f", TOTAL(s{i}), TOTAL(CASE WHEN alone THEN s{i} ELSE s{i} * s{i} END),"
        f" TOTAL(CASE WHEN alone THEN s{i} ELSE s{i} * n END)"
        for i in range(percentiles)
    )
    return (
        "SELECT TOTAL(n), TOTAL(CASE WHEN alone THEN n ELSE 1 END),"
        f" TOTAL(CASE WHEN alone THEN n ELSE n * n END){sums} FROM ("
        f" SELECT {subject} IS NULL AS alone, COUNT(*) AS n{below}"
        f" FROM logs WHERE {_TIMED} GROUP BY {subject}"
        ") AS per_subject"
    )


def percentiles(
    row: Sequence[Any], values: Sequence[float | None], bounds: Sequence[Bound],
    alpha: float, tau: float | None,
) -> Percentiles:  # fmt: skip
    """Percentiles from a row of ``cdf_query``, the values and the bounds found."""
    quantiles = []
    for i, (value, (low, high)) in enumerate(zip(values, bounds, strict=True)):
        below, squares, records = (float(x or 0) for x in row[3 + 3 * i : 6 + 3 * i])
        quantiles.append(QuantileSums(value, below, squares, records, low, high))
    timed, clusters, records_squares = int(row[0] or 0), int(row[1] or 0), float(row[2] or 0)
    return Percentiles(timed, clusters, records_squares, tuple(quantiles), alpha, tau)


def _at_rank(conn: sqlite3.Connection, args: tuple[Any, ...], timed: int, rank: int | None) -> Any:
    if rank is None:
        return None
    # An OFFSET steps through the index: walk in from the nearer end (p99: 1 % of it).
    order, offset = ("ASC", rank - 1) if rank <= timed / 2 else ("DESC", timed - rank)
    walk = f"SELECT duration_ms FROM logs WHERE {_TIMED} ORDER BY duration_ms {order}"
    row = conn.execute(f"{walk} LIMIT 1 OFFSET ?", (*args, offset)).fetchone()
    return row[0] if row else None


def latency(
    conn: sqlite3.Connection, project_id: str, experiment_id: str, variant: str | None,
    *, subject: str = "subject", alpha: float = 0.05, tau: float | None = None,
) -> Percentiles:  # fmt: skip
    """Nearest-rank p50, p95 and p99 of a variant's ``duration_ms``, by index walks, with
    the cluster sums and order statistics of their intervals (analysis._quantiles)."""
    from banyan.server.analysis import interval_ranks  # loads scipy: see __init__

    args = (project_id, experiment_id, variant)
    (timed,) = conn.execute(f"SELECT COUNT(*) FROM logs WHERE {_TIMED}", args).fetchone()
    values = [_at_rank(conn, args, timed, nearest_rank(p, timed)) for p in PERCENTILES]
    row = conn.execute(cdf_query(subject), (*values, *args)).fetchone()
    found = percentiles(row, values, [(None, None)] * len(values), alpha, tau)
    ranks = interval_ranks(found, alpha, tau)
    bounds = [(_at_rank(conn, args, timed, low), _at_rank(conn, args, timed, high))
              for low, high in ranks]  # fmt: skip
    return percentiles(row, values, bounds, alpha, tau)


def latency_summary(found: Percentiles | None) -> LatencySummary:
    """The values of ``found``'s percentiles, as the results JSON's ``latency`` shows them."""
    return LatencySummary(*(q.value for q in found.quantiles)) if found else LatencySummary()


def sqlite_aggregates(
    conn: sqlite3.Connection,
    project_id: str,
    experiment_id: str,
    metrics: Sequence[Metric] = (LATENCY,),
    *,
    subject: str = "subject",
    alpha: float = 0.05,
    tau: float | None = None,
) -> list[VariantAggregate]:
    """One ``VariantAggregate`` per variant id found in the experiment's logs.

    ``subject`` is the column (or SQL expression) holding the subject; records
    without one are left out. Latency percentiles are over records, their intervals
    at ``alpha`` (and, for the sequential mode, ``tau``).
    """
    rows = conn.execute(subject_query(metrics, subject), (project_id, experiment_id))
    aggs = [aggregate(row, metrics) for row in rows]
    found = [latency(conn, project_id, experiment_id, a.variant_id, subject=subject,
                     alpha=alpha, tau=tau) for a in aggs]  # fmt: skip
    return [
        msgspec.structs.replace(a, latency=latency_summary(p), percentiles=p)
        for a, p in zip(aggs, found, strict=True)
    ]
