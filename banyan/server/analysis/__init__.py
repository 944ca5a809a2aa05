"""Experiment statistics: pure functions over the per-variant sums a store returns.

No database and no HTTP here: ``analyze`` turns an experiment's configuration
and one ``VariantAggregate`` per variant into ``Results`` (the results JSON);
``sqlite_aggregates`` is a reference query that computes the aggregates in
SQLite. The formulas and their references are in docs/statistics.md. This
package imports scipy; the client (``import banyan``) never imports it.
"""

from __future__ import annotations

from banyan.server.analysis._analyze import analyze
from banyan.server.analysis._inputs import LatencySummary, MetricSummary, VariantAggregate
from banyan.server.analysis._results import (
    Bounds,
    Difference,
    Methods,
    MetricResult,
    Results,
    SrmResult,
    VariantResult,
)
from banyan.server.analysis._sequential import TAU
from banyan.server.analysis._sqlite import LATENCY, Metric, sqlite_aggregates, subject_query
from banyan.server.analysis._srm import SRM_THRESHOLD

__all__ = [
    "LATENCY",
    "SRM_THRESHOLD",
    "TAU",
    "Bounds",
    "Difference",
    "LatencySummary",
    "Methods",
    "Metric",
    "MetricResult",
    "MetricSummary",
    "Results",
    "SrmResult",
    "VariantAggregate",
    "VariantResult",
    "analyze",
    "sqlite_aggregates",
    "subject_query",
]
