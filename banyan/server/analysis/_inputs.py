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


class QuantileSums(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One latency percentile of a variant: its value and what its interval needs.

    ``S`` is a subject's timed records at or below ``value``, ``N`` its timed records
    (a record without a subject is a subject of its own); ``low`` and ``high`` are
    the order statistics at the ranks ``analysis.interval_ranks`` asked for (null
    where a rank falls outside the records).
    """

    value: float | None
    #: Sums over subjects of S, S * S and S * N.
    below: float = 0.0
    below_squares: float = 0.0
    below_records: float = 0.0
    low: float | None = None
    high: float | None = None


class Percentiles(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A variant's latency percentiles (p50, p95, p99) with their cluster sums.

    ``alpha`` and ``tau`` (None: fixed-horizon) are those the interval ranks were
    computed at; ``analyze`` refuses others.
    """

    #: n: the timed records; K: their subjects; the sum over subjects of N * N.
    timed: int
    clusters: int
    records_squares: float
    quantiles: tuple[QuantileSums, ...]
    alpha: float
    tau: float | None = None


class VariantAggregate(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Everything the analysis needs about one variant: subjects, records, metric sums."""

    #: None for the experiment's records that name no variant (never a configured one).
    variant_id: str | None
    subjects: int
    records: int
    metrics: dict[str, MetricSummary] = msgspec.field(default_factory=dict)
    latency: LatencySummary | None = None
    percentiles: Percentiles | None = None
