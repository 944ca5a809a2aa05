"""``analyze``: an experiment's configuration and per-variant sums in, results out."""

from __future__ import annotations

import math
from collections.abc import Iterable

import msgspec

from banyan._routing import Experiment, Variant
from banyan.server.analysis import _estimates, _quantiles, _sequential, _srm
from banyan.server.analysis._dist import Vec
from banyan.server.analysis._estimates import Comparison, Interval, Moments
from banyan.server.analysis._inputs import MetricKind, MetricSummary, Percentiles, VariantAggregate
from banyan.server.analysis._results import (
    Bounds,
    Difference,
    Methods,
    MetricResult,
    ResultKind,
    Results,
    SrmResult,
    VariantResult,
)
from banyan.server.analysis._sqlite import PERCENTILES

_FIXED = Methods(
    mean="Student t interval",
    proportion="Wilson score interval",
    difference_of_means="Welch t-test and interval",
    difference_of_proportions="two-proportion z-test (pooled), Newcombe hybrid score interval",
    relative_difference="delta method, normal interval",
    srm="chi-square goodness of fit",
    quantile="outer interval: order statistics at ranks n(p \u00b1 z\u03c3), \u03c3 by the"
    " delta method over subjects (Deng, Knoblich and Lu 2018)",
    difference_of_quantiles="Welch t-test and interval, standard errors from the outer intervals",
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
    quantile="outer interval at the mSPRT confidence sequence's ranks",
    difference_of_quantiles=_ALWAYS_VALID,
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


#: The results' name of each latency percentile, in the order of PERCENTILES.
QUANTILE_NAMES = tuple(f"latency_p{p}_ms" for p in PERCENTILES)


def _kinds(aggregates: Iterable[VariantAggregate]) -> dict[str, ResultKind]:
    kinds: dict[str, ResultKind] = {}
    for agg in aggregates:
        for name, summary in agg.metrics.items():
            if kinds.setdefault(name, summary.kind) != summary.kind:
                raise ValueError(f"metric {name!r} is both a mean and a proportion")
        if agg.percentiles is not None:
            kinds.update(dict.fromkeys(QUANTILE_NAMES, "quantile"))
    return dict(sorted(kinds.items()))


def _quantile(found: Percentiles | None, i: int) -> tuple[MetricResult, Moments]:
    if found is None:
        return MetricResult("quantile", 0, 0, None, Bounds(None, None)), _quantiles.EMPTY
    q = found.quantiles[i]
    result = MetricResult("quantile", found.clusters, found.timed, q.value, Bounds(q.low, q.high))
    return result, _quantiles.moments(found, i)


def _check_bounds(aggregates: Iterable[VariantAggregate], alpha: float, tau: float | None) -> None:
    for agg in aggregates:
        found = agg.percentiles
        if found is not None and (found.alpha, found.tau) != (alpha, tau):
            raise ValueError(
                f"latency intervals were found at alpha={found.alpha}, tau={found.tau},"
                f" not at alpha={alpha}, tau={tau}"
            )


class _Analysis:
    """One call of ``analyze``: its settings and the control's metrics."""

    def __init__(self, kinds: dict[str, ResultKind], alpha: float, tau: float | None) -> None:
        self.kinds, self.alpha, self.tau = kinds, alpha, tau
        self.control: dict[str, Moments] = {}

    def metric(self, agg: VariantAggregate, name: str) -> tuple[MetricResult, Moments]:
        kind = self.kinds[name]
        if kind == "quantile":
            return _quantile(agg.percentiles, QUANTILE_NAMES.index(name))
        summary = agg.metrics.get(name, _EMPTY)
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
                tested = "mean" if kind == "quantile" else kind
                found = _estimates.compare(m, self.control[name], tested, self.alpha, self.tau)
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
    _check_bounds(aggs, alpha, tau if sequential else None)
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
