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
    VariantAggregate,
)

_WHERE = "project_id = ? AND experiment_id = ?"


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


def latency(
    conn: sqlite3.Connection, project_id: str, experiment_id: str, variant: str | None
) -> LatencySummary:
    """Nearest-rank p50, p95 and p99 of a variant's ``duration_ms``, by index walks."""
    where = f"{_WHERE} AND experiment_version_id = ? AND duration_ms IS NOT NULL"
    args = (project_id, experiment_id, variant)
    (timed,) = conn.execute(f"SELECT COUNT(*) FROM logs WHERE {where}", args).fetchone()
    found = []
    for p in (50, 95, 99):
        rank = max(1, math.ceil(p / 100 * timed))
        # An OFFSET steps through the index: walk in from the nearer end (p99: 1 % of it).
        order, offset = ("ASC", rank - 1) if rank <= timed / 2 else ("DESC", timed - rank)
        row = conn.execute(
            f"SELECT duration_ms FROM logs WHERE {where}"
            f" ORDER BY duration_ms {order} LIMIT 1 OFFSET ?",
            (*args, offset),
        ).fetchone()
        found.append(row[0] if row else None)
    return LatencySummary(*found)


def sqlite_aggregates(
    conn: sqlite3.Connection,
    project_id: str,
    experiment_id: str,
    metrics: Sequence[Metric] = (LATENCY,),
    *,
    subject: str = "subject",
) -> list[VariantAggregate]:
    """One ``VariantAggregate`` per variant id found in the experiment's logs.

    ``subject`` is the column (or SQL expression) holding the subject; records
    without one are left out. Latency percentiles are over records.
    """
    rows = conn.execute(subject_query(metrics, subject), (project_id, experiment_id))
    aggs = [aggregate(row, metrics) for row in rows]
    return [
        msgspec.structs.replace(a, latency=latency(conn, project_id, experiment_id, a.variant_id))
        for a in aggs
    ]
