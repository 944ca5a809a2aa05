"""Experiment statistics: pure functions over the per-variant sums a store returns.

No database and no HTTP here: ``analyze`` turns an experiment's configuration
and one ``VariantAggregate`` per variant into ``Results`` (the results JSON);
``sqlite_aggregates`` is a reference query that computes the aggregates in
SQLite. The formulas and their references are in docs/statistics.md.

``analyze`` imports scipy and numpy (~0.65 s and ~27 MB per server worker) on
first use: importing this package, its result types or its queries loads
neither, so a worker that never computes results never pays for them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from banyan.server.analysis._inputs import (
    LatencySummary,
    MetricSummary,
    Percentiles,
    QuantileSums,
    VariantAggregate,
)
from banyan.server.analysis._outcomes import (
    RECORD_METRICS,
    SCORE_PREFIX,
    USAGE,
    score_metrics,
    sqlite_outcomes,
    with_scores,
)
from banyan.server.analysis._results import (
    Bounds,
    Difference,
    Methods,
    MetricResult,
    Results,
    SrmResult,
    VariantResult,
)
from banyan.server.analysis._sqlite import (
    LATENCY,
    PERCENTILES,
    Metric,
    cdf_query,
    latency_summary,
    sqlite_aggregates,
    subject_query,
)

__all__ = [
    "LATENCY",
    "PERCENTILES",
    "RECORD_METRICS",
    "SCORE_PREFIX",
    "SRM_THRESHOLD",
    "TAU",
    "USAGE",
    "Bounds",
    "Difference",
    "LatencySummary",
    "Methods",
    "Metric",
    "MetricResult",
    "MetricSummary",
    "Percentiles",
    "QuantileSums",
    "Results",
    "SrmResult",
    "VariantAggregate",
    "VariantResult",
    "analyze",
    "cdf_query",
    "interval_ranks",
    "latency_summary",
    "score_metrics",
    "sqlite_aggregates",
    "sqlite_outcomes",
    "subject_query",
    "with_scores",
]


if TYPE_CHECKING:
    from banyan.server.analysis._analyze import analyze
    from banyan.server.analysis._quantiles import interval_ranks
    from banyan.server.analysis._sequential import TAU
    from banyan.server.analysis._srm import SRM_THRESHOLD

#: Names whose modules import numpy and scipy, and those modules (PEP 562).
_LAZY = {
    "analyze": "_analyze",
    "interval_ranks": "_quantiles",
    "TAU": "_sequential",
    "SRM_THRESHOLD": "_srm",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
