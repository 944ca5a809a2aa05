"""What the analysis reads: per-variant sums over subjects, as a store computes them.

Subjects (the values of the experiment's sticky key) were randomized, not
records, so every metric is first reduced to one value per subject: the mean
of that subject's records (``kind="mean"``), or 1 when any of its records
converted and 0 otherwise (``kind="proportion"``). A variant's summary is
then three SQL aggregates over those per-subject values: ``COUNT``, ``SUM(x)``
and ``SUM(x * x)``. A heavy user weighs one subject, however many records it
sent. The SQL shape is in docs/statistics.md; ``sqlite_aggregates`` is a
reference implementation.
"""

from __future__ import annotations

from typing import Literal

import msgspec

MetricKind = Literal["mean", "proportion"]


class MetricSummary(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One metric of one variant, summed over the per-subject values.

    ``subjects`` counts the subjects that have a value (a subject none of whose
    records carries the metric is left out), ``records`` the records behind them.
    For ``kind="proportion"`` each per-subject value is 0 or 1, so ``sum`` is the
    number of converted subjects and ``sum_squares`` equals ``sum``.
    """

    subjects: int
    sum: float
    sum_squares: float
    records: int = 0
    kind: MetricKind = "mean"


class LatencySummary(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Nearest-rank percentiles of a variant's record latencies, passed through as given."""

    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None


class VariantAggregate(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Everything the analysis needs about one variant: subjects, records, metric sums."""

    #: None for the experiment's records that name no variant (never a configured one).
    variant_id: str | None
    subjects: int
    records: int
    metrics: dict[str, MetricSummary] = msgspec.field(default_factory=dict)
    latency: LatencySummary | None = None
