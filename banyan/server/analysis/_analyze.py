"""``analyze``: an experiment's configuration and per-variant sums in, results out."""

from __future__ import annotations

import math
from collections.abc import Iterable

import msgspec

from banyan._routing import Experiment, Variant
from banyan.server.analysis import _estimates, _sequential, _srm
from banyan.server.analysis._dist import Vec
from banyan.server.analysis._estimates import Comparison, Interval, Moments
from banyan.server.analysis._inputs import MetricKind, MetricSummary, VariantAggregate
from banyan.server.analysis._results import (
    Bounds,
    Difference,
    Methods,
    MetricResult,
    Results,
    SrmResult,
    VariantResult,
)

_FIXED = Methods(
    mean="Student t interval",
    proportion="Wilson score interval",
    difference_of_means="Welch t-test and interval",
    difference_of_proportions="two-proportion z-test (pooled), Newcombe hybrid score interval",
    relative_difference="delta method, normal interval",
    srm="chi-square goodness of fit",
)
_ALWAYS_VALID = "mSPRT always-valid p-value and confidence sequence"
_SEQUENCE = "mSPRT confidence sequence (normal mixture)"
_SEQUENTIAL = msgspec.structs.replace(
    _FIXED,
    mean=_SEQUENCE,
    proportion=_SEQUENCE,
    difference_of_means=_ALWAYS_VALID,
    difference_of_proportions=_ALWAYS_VALID,
    relative_difference="delta method, mSPRT confidence sequence",
)
_EMPTY = MetricSummary(subjects=0, sum=0.0, sum_squares=0.0)


def _number(value: Vec) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


def _bounds(interval: Interval) -> Bounds:
    return Bounds(_number(interval.low), _number(interval.high))


def _moments(summary: MetricSummary, kind: MetricKind) -> Moments:
    return _estimates.moments(summary.subjects, summary.sum, summary.sum_squares, kind)


def _difference(found: Comparison, alpha: float) -> Difference:
    p_value = _number(found.p_value)
    return Difference(
        absolute=_number(found.absolute.value),
        absolute_interval=_bounds(found.absolute),
        relative=_number(found.relative.value),
        relative_interval=_bounds(found.relative),
        p_value=p_value,
        significant=p_value is not None and p_value < alpha,
    )


def _srm_result(experiment: Experiment, subjects: list[int]) -> SrmResult:
    weights = [v.weight_bp for v in experiment.variants]
    chi2, p = _srm.srm_test(subjects, weights)
    total = sum(subjects)
    tested = total > 0 and len(subjects) > 1
    p_value = _number(p) if tested else None
    return SrmResult(
        chi_square=_number(chi2) if tested else None,
        df=max(sum(w > 0 for w in weights) - 1, 0),
        p_value=p_value,
        flagged=p_value is not None and p_value < _srm.SRM_THRESHOLD,
        threshold=_srm.SRM_THRESHOLD,
        expected=[total * w / (sum(weights) or 1) for w in weights],
        observed=subjects,
    )


def _kinds(aggregates: Iterable[VariantAggregate]) -> dict[str, MetricKind]:
    kinds: dict[str, MetricKind] = {}
    for agg in aggregates:
        for name, summary in agg.metrics.items():
            if kinds.setdefault(name, summary.kind) != summary.kind:
                raise ValueError(f"metric {name!r} is both a mean and a proportion")
    return dict(sorted(kinds.items()))


class _Analysis:
    """One call of ``analyze``: its settings and the control's metrics."""

    def __init__(self, kinds: dict[str, MetricKind], alpha: float, tau: float | None) -> None:
        self.kinds, self.alpha, self.tau = kinds, alpha, tau
        self.control: dict[str, Moments] = {}

    def metric(self, agg: VariantAggregate, name: str) -> tuple[MetricResult, Moments]:
        summary, kind = agg.metrics.get(name, _EMPTY), self.kinds[name]
        m = _moments(summary, kind)
        found = _estimates.estimate(m, kind, self.alpha, self.tau)
        result = MetricResult(
            kind, summary.subjects, summary.records, _number(m.mean), _bounds(found)
        )
        return result, m

    def variant(
        self, v: Variant, agg: VariantAggregate, total: int, *, control: bool
    ) -> VariantResult:
        metrics, versus = {}, {}
        for name, kind in self.kinds.items():
            metrics[name], m = self.metric(agg, name)
            if control:
                self.control[name] = m
            else:
                found = _estimates.compare(m, self.control[name], kind, self.alpha, self.tau)
                versus[name] = _difference(found, self.alpha)
        return VariantResult(
            id=v.id, name=v.name, version=v.version, weight_bp=v.weight_bp, control=control,
            subjects=agg.subjects, records=agg.records,
            share=agg.subjects / total if total else None,
            latency=agg.latency, metrics=metrics, versus_control=versus,
        )  # fmt: skip


def analyze(
    experiment: Experiment,
    aggregates: Iterable[VariantAggregate],
    *,
    sequential: bool = False,
    alpha: float = 0.05,
    tau: float = _sequential.TAU,
) -> Results:
    """Analyse an experiment: per-variant metrics, differences to control, SRM check.

    The control is the first configured variant. Aggregates of variants that are
    not configured are ignored; a configured variant without one has no subjects.
    ``sequential`` gives always-valid intervals and p-values (mSPRT with mixing
    standard deviation ``tau`` per-subject standard deviations); the default is
    fixed-horizon, valid when the results are read once, at a planned size.
    """
    if not 0 < alpha < 1:
        raise ValueError("alpha must be between 0 and 1")
    if sequential and not tau > 0:
        raise ValueError("tau must be positive")
    by_id = {agg.variant_id: agg for agg in aggregates}
    aggs = [by_id.get(v.id) or VariantAggregate(v.id, 0, 0) for v in experiment.variants]
    subjects = [agg.subjects for agg in aggs]
    run = _Analysis(_kinds(aggs), alpha, tau if sequential else None)
    total = sum(subjects)
    return Results(
        experiment_id=experiment.id,
        mode="sequential" if sequential else "fixed-horizon",
        alpha=alpha,
        tau=tau if sequential else None,
        control_id=experiment.variants[0].id,
        subjects=total,
        records=sum(agg.records for agg in aggs),
        srm=_srm_result(experiment, subjects),
        variants=[
            run.variant(v, agg, total, control=i == 0)
            for i, (v, agg) in enumerate(zip(experiment.variants, aggs, strict=True))
        ],
        methods=_SEQUENTIAL if sequential else _FIXED,
    )
