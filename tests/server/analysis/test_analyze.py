"""``analyze``: the shape of the results JSON and the cases with too little data."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest

from banyan.server.analysis import (
    LatencySummary,
    MetricSummary,
    Results,
    VariantAggregate,
    analyze,
)

from .sim import aggregate, experiment

_rng = np.random.default_rng(7)
AGGS = [
    aggregate("v0", x=(_rng.normal(10, 2, 300), "mean"), ok=(_rng.random(300) < 0.3, "proportion")),
    aggregate("v1", x=(_rng.normal(11, 2, 310), "mean"), ok=(_rng.random(310) < 0.4, "proportion")),
]


def test_results_round_trip_through_json() -> None:
    """The results encode to JSON and decode back to the same Results."""
    result = analyze(experiment(5000, 5000), AGGS)
    assert msgspec.json.decode(msgspec.json.encode(result), type=Results) == result


def test_first_variant_is_the_control_and_others_are_compared_to_it() -> None:
    """The control has no differences; every other variant has one per metric."""
    result = analyze(experiment(5000, 5000), AGGS)
    control, treatment = result.variants
    assert result.control_id == "v0"
    assert (control.control, treatment.control) == (True, False)
    assert control.versus_control == {}
    assert set(treatment.versus_control) == {"ok", "x"}
    assert treatment.versus_control["x"].significant
    assert result.subjects == 610
    assert control.share == pytest.approx(300 / 610)


def test_default_is_fixed_horizon_and_the_mode_is_named() -> None:
    """Without ``sequential`` the results say fixed-horizon; with it, sequential and its tau."""
    fixed = analyze(experiment(5000, 5000), AGGS)
    sequential = analyze(experiment(5000, 5000), AGGS, sequential=True)
    assert (fixed.mode, fixed.tau) == ("fixed-horizon", None)
    assert (sequential.mode, sequential.tau) == ("sequential", 0.1)
    assert "mSPRT" in sequential.methods.difference_of_means
    assert "Welch" in fixed.methods.difference_of_means


def test_sequential_intervals_are_wider_than_fixed_ones() -> None:
    """At one look the always-valid interval contains the fixed-horizon one."""
    fixed = analyze(experiment(5000, 5000), AGGS).variants[1]
    sequential = analyze(experiment(5000, 5000), AGGS, sequential=True).variants[1]
    for name in ("x", "ok"):
        inner, outer = fixed.versus_control[name], sequential.versus_control[name]
        assert inner.absolute == outer.absolute
        assert outer.absolute_interval.low < inner.absolute_interval.low  # type: ignore[operator]
        assert outer.absolute_interval.high > inner.absolute_interval.high  # type: ignore[operator]
        assert outer.p_value >= inner.p_value  # type: ignore[operator]


def test_no_data_gives_nulls_and_no_srm_flag() -> None:
    """An experiment without subjects: zero counts, no metrics, SRM unknown and not flagged."""
    result = analyze(experiment(5000, 5000), [])
    assert [v.subjects for v in result.variants] == [0, 0]
    assert result.variants[1].metrics == {}
    assert (result.srm.p_value, result.srm.flagged) == (None, False)


def test_undefined_statistics_are_null_not_nan() -> None:
    """One subject, no variance, a zero control mean: nulls (p = 1: no difference seen)."""
    one = MetricSummary(subjects=1, sum=5.0, sum_squares=25.0)
    flat = MetricSummary(subjects=4, sum=0.0, sum_squares=0.0)
    aggs = [
        VariantAggregate("v0", 4, 4, {"one": one, "flat": flat}),
        VariantAggregate("v1", 4, 4, {"one": one, "flat": flat}),
    ]
    result = analyze(experiment(5000, 5000), aggs)
    single = result.variants[0].metrics["one"]
    assert (single.value, single.interval.low, single.interval.high) == (5.0, None, None)
    diff = result.variants[1].versus_control["flat"]
    assert (diff.absolute, diff.relative, diff.significant) == (0.0, None, False)
    assert diff.p_value == 1.0
    assert b"NaN" not in msgspec.json.encode(result)


def test_unconfigured_variants_are_ignored_and_missing_ones_are_empty() -> None:
    """Aggregates of unknown variant ids do not count; a silent variant has zero subjects."""
    stray = VariantAggregate("v9", 1000, 1000)
    result = analyze(experiment(5000, 3000, 2000), [*AGGS, stray])
    assert [v.subjects for v in result.variants] == [300, 310, 0]
    assert result.srm.observed == [300, 310, 0]
    assert result.srm.expected == pytest.approx([305.0, 183.0, 122.0])
    assert result.srm.flagged


def test_subjects_in_a_zero_weight_variant_are_an_srm() -> None:
    """A variant configured at 0 % that still gets subjects is flagged; an empty one is not."""
    result = analyze(experiment(10000, 0), AGGS)
    assert (result.srm.df, result.srm.p_value, result.srm.flagged) == (0, 0.0, True)
    result = analyze(experiment(10000, 0), AGGS[:1])
    assert (result.srm.df, result.srm.p_value, result.srm.flagged) == (0, 1.0, False)


def test_latency_percentiles_pass_through() -> None:
    """The store's latency percentiles appear unchanged in the variant's results."""
    latency = LatencySummary(p50_ms=120.0, p95_ms=480.0, p99_ms=900.0)
    aggs = [msgspec.structs.replace(AGGS[0], latency=latency), AGGS[1]]
    result = analyze(experiment(5000, 5000), aggs)
    assert result.variants[0].latency == latency
    assert result.variants[1].latency is None


def test_a_metric_is_either_a_mean_or_a_proportion() -> None:
    """A metric summarised as a mean in one variant and a proportion in another is refused."""
    mixed = VariantAggregate("v1", 3, 3, {"ok": MetricSummary(3, 1.0, 1.0, kind="mean")})
    with pytest.raises(ValueError, match="ok"):
        analyze(experiment(5000, 5000), [AGGS[0], mixed])


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1, float("nan")])
def test_alpha_must_be_a_probability(alpha: float) -> None:
    """alpha outside (0, 1) is refused."""
    with pytest.raises(ValueError, match="alpha"):
        analyze(experiment(5000, 5000), AGGS, alpha=alpha)


@pytest.mark.parametrize("tau", [0.0, -1.0, float("nan")])
def test_sequential_tau_must_be_positive(tau: float) -> None:
    """A sequential analysis refuses a mixing standard deviation that is not positive."""
    with pytest.raises(ValueError, match="tau"):
        analyze(experiment(5000, 5000), AGGS, sequential=True, tau=tau)
