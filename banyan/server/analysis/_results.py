"""The results JSON: what ``analyze`` returns and the API and the page serve.

Numbers that cannot be computed (no subjects yet, a single subject, no
variance, a control mean of zero for a relative difference) are ``null``.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from banyan.server.analysis._inputs import LatencySummary

Mode = Literal["fixed-horizon", "sequential"]
#: A metric's kind in the results: a latency percentile is a "quantile" of records.
ResultKind = Literal["mean", "proportion", "quantile"]


class Bounds(msgspec.Struct, frozen=True):
    """An interval: ``[low, high]``, null where undefined."""

    low: float | None
    high: float | None


class MetricResult(msgspec.Struct, frozen=True):
    """One metric of one variant: its mean or proportion over subjects, or a percentile of
    its records (``records`` of ``subjects``), with an interval."""

    kind: ResultKind
    subjects: int
    records: int
    value: float | None
    interval: Bounds


class Difference(msgspec.Struct, frozen=True):
    """One metric of a variant against the control's: ``variant - control``."""

    absolute: float | None
    absolute_interval: Bounds
    #: ``variant / control - 1``; null when the control's value is 0.
    relative: float | None
    relative_interval: Bounds
    p_value: float | None
    #: ``p_value < alpha`` (equivalently, for the sequential mode, 0 outside the interval).
    significant: bool


class VariantResult(msgspec.Struct, frozen=True):
    """One variant: its configuration, subjects, records, metrics and its differences."""

    id: str
    name: str
    version: str
    weight_bp: int
    control: bool
    subjects: int
    records: int
    #: This variant's share of the experiment's subjects (null before any subject).
    share: float | None
    latency: LatencySummary | None
    metrics: dict[str, MetricResult]
    #: Per metric, against the control; empty for the control itself.
    versus_control: dict[str, Difference]


class SrmResult(msgspec.Struct, frozen=True):
    """The sample-ratio-mismatch check of subjects against the configured weights."""

    chi_square: float | None
    df: int
    p_value: float | None
    #: ``p_value < threshold``: the split is broken and no result should be trusted.
    flagged: bool
    threshold: float
    expected: list[float]
    observed: list[int]


class Methods(msgspec.Struct, frozen=True):
    """The names of the statistics used, for the page's footnotes (docs/statistics.md)."""

    mean: str
    proportion: str
    difference_of_means: str
    difference_of_proportions: str
    relative_difference: str
    srm: str
    quantile: str
    difference_of_quantiles: str


class Results(msgspec.Struct, frozen=True):
    """The analysis of one experiment; ``msgspec.json.encode`` gives the results JSON."""

    experiment_id: str
    #: "fixed-horizon" (valid at one planned look) or "sequential" (valid at every look).
    mode: Mode
    alpha: float
    #: The mSPRT mixing standard deviation in per-subject standard deviations (sequential).
    tau: float | None
    control_id: str
    subjects: int
    records: int
    srm: SrmResult
    variants: list[VariantResult]
    methods: Methods
