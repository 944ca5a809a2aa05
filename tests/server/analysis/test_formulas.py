"""The formulas, pinned against scipy (an independent implementation) on fixed data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy import stats  # type: ignore[import-untyped]

from banyan.server.analysis import Results, analyze
from banyan.server.analysis import _sequential as sequential
from banyan.server.analysis._inputs import MetricKind

from .sim import aggregate, experiment

_rng = np.random.default_rng(18)
CONTROL = _rng.lognormal(5.0, 0.6, 140)
TREATMENT = _rng.lognormal(5.1, 0.8, 170)
#: The 0.975 quantile of the standard normal.
Z = 1.959963984540054


def two_arm(
    control: NDArray[np.float64], treatment: NDArray[np.float64], kind: MetricKind = "mean"
) -> Results:
    """The analysis of a 50/50 experiment whose one metric ``x`` has these subject values."""
    aggs = [aggregate("v0", x=(control, kind)), aggregate("v1", x=(treatment, kind))]
    return analyze(experiment(5000, 5000), aggs)


def _wilson(x: int, n: int) -> tuple[float, float]:
    p = x / n
    centre = (p + Z * Z / (2 * n)) / (1 + Z * Z / n)
    half = Z / (1 + Z * Z / n) * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n))
    return centre - half, centre + half


def test_difference_of_means_is_welchs_t_test() -> None:
    """The difference of means has scipy's Welch p-value and confidence interval."""
    found = two_arm(CONTROL, TREATMENT).variants[1].versus_control["x"]
    welch = stats.ttest_ind(TREATMENT, CONTROL, equal_var=False)
    ci = welch.confidence_interval(0.95)
    assert found.absolute == pytest.approx(TREATMENT.mean() - CONTROL.mean(), rel=1e-12)
    assert found.p_value == pytest.approx(welch.pvalue, rel=1e-9)
    assert found.absolute_interval.low == pytest.approx(ci.low, rel=1e-9)
    assert found.absolute_interval.high == pytest.approx(ci.high, rel=1e-9)
    assert found.significant == (welch.pvalue < 0.05)


def test_variant_mean_has_students_t_interval() -> None:
    """A variant's mean has scipy's one-sample t confidence interval."""
    found = two_arm(CONTROL, TREATMENT).variants[0].metrics["x"]
    ci = stats.ttest_1samp(CONTROL, 0.0).confidence_interval(0.95)
    assert found.value == pytest.approx(CONTROL.mean(), rel=1e-12)
    assert (found.interval.low, found.interval.high) == pytest.approx((ci.low, ci.high), rel=1e-9)


def test_proportion_has_wilson_interval() -> None:
    """12 conversions of 50 subjects: the Wilson interval, by hand and by scipy."""
    converted = np.array([1.0] * 12 + [0.0] * 38)
    found = two_arm(converted, converted, "proportion").variants[0].metrics["x"]
    low, high = _wilson(12, 50)
    assert found.value == pytest.approx(0.24)
    assert (found.interval.low, found.interval.high) == pytest.approx((low, high), rel=1e-12)
    scipy_ci = stats.binomtest(12, 50).proportion_ci(0.95, method="wilson")
    assert found.interval.low == pytest.approx(scipy_ci.low, rel=1e-9)
    assert found.interval.high == pytest.approx(scipy_ci.high, rel=1e-9)


def test_difference_of_proportions_is_the_two_proportion_z_test() -> None:
    """30/200 against 45/210: the pooled z-test's p-value equals scipy's 2x2 chi-square."""
    control = np.array([1.0] * 30 + [0.0] * 170)
    treatment = np.array([1.0] * 45 + [0.0] * 165)
    found = two_arm(control, treatment, "proportion").variants[1].versus_control["x"]
    table = [[45, 165], [30, 170]]
    assert found.p_value == pytest.approx(
        stats.chi2_contingency(table, correction=False).pvalue, rel=1e-9
    )


def test_difference_of_proportions_has_newcombes_interval() -> None:
    """45/210 - 30/200: Newcombe's hybrid score interval from the two Wilson intervals, by hand."""
    control = np.array([1.0] * 30 + [0.0] * 170)
    treatment = np.array([1.0] * 45 + [0.0] * 165)
    found = two_arm(control, treatment, "proportion").variants[1].versus_control["x"]
    pt, pc = 45 / 210, 30 / 200
    (lt, ut), (lc, uc) = _wilson(45, 210), _wilson(30, 200)
    assert found.absolute == pytest.approx(pt - pc)
    low = pt - pc - math.sqrt((pt - lt) ** 2 + (uc - pc) ** 2)
    high = pt - pc + math.sqrt((ut - pt) ** 2 + (pc - lc) ** 2)
    assert found.absolute_interval.low == pytest.approx(low, rel=1e-9)
    assert found.absolute_interval.high == pytest.approx(high, rel=1e-9)


def test_no_conversions_in_either_arm_is_no_evidence_with_a_real_interval() -> None:
    """0/40 against 0/40: p = 1 and an interval of width > 0 around a difference of 0."""
    none = np.zeros(40)
    found = two_arm(none, none, "proportion").variants[1].versus_control["x"]
    _, high = _wilson(0, 40)
    assert (found.absolute, found.p_value, found.significant) == (0.0, 1.0, False)
    assert (found.absolute_interval.low, found.absolute_interval.high) == pytest.approx(
        (-high, high)
    )


def test_relative_difference_uses_the_delta_method() -> None:
    """The lift's interval is ratio - 1 +- z * sqrt(Vt/mc^2 + mt^2 Vc/mc^4), by hand."""
    found = two_arm(CONTROL, TREATMENT).variants[1].versus_control["x"]
    mt, mc = TREATMENT.mean(), CONTROL.mean()
    vt = TREATMENT.var(ddof=1) / TREATMENT.size
    vc = CONTROL.var(ddof=1) / CONTROL.size
    se = math.sqrt(vt / mc**2 + mt**2 * vc / mc**4)
    assert found.relative == pytest.approx(mt / mc - 1, rel=1e-12)
    assert found.relative_interval.low == pytest.approx(mt / mc - 1 - Z * se, rel=1e-9)
    assert found.relative_interval.high == pytest.approx(mt / mc - 1 + Z * se, rel=1e-9)


def test_srm_is_scipys_chi_square_goodness_of_fit() -> None:
    """Subjects 5,120 / 2,950 / 1,930 against 50/30/20 %: scipy's chisquare statistic and p."""
    aggs = [aggregate(f"v{i}", x=(np.zeros(n), "mean")) for i, n in enumerate((5120, 2950, 1930))]
    srm = analyze(experiment(5000, 3000, 2000), aggs).srm
    scipy_srm = stats.chisquare([5120, 2950, 1930], [5000, 3000, 2000])
    assert srm.chi_square == pytest.approx(scipy_srm.statistic, rel=1e-12)
    assert srm.p_value == pytest.approx(scipy_srm.pvalue, rel=1e-9)
    assert srm.df == 2
    assert srm.flagged == (scipy_srm.pvalue < 0.001)


def test_msprt_p_value_and_confidence_sequence_by_hand() -> None:
    """The mixture likelihood ratio, its p-value 1/Lambda and the interval, by hand."""
    d, v, tau2 = 0.3, 0.01, 0.04
    lr = math.sqrt(v / (v + tau2)) * math.exp(tau2 * d * d / (2 * v * (v + tau2)))
    assert float(sequential.p_value(d, v, tau2)) == pytest.approx(1 / lr, rel=1e-12)
    half = math.sqrt(v * (v + tau2) / tau2 * (2 * math.log(20) + math.log((v + tau2) / v)))
    assert float(sequential.half_width(v, tau2, 0.05)) == pytest.approx(half, rel=1e-12)


def test_msprt_interval_excludes_zero_exactly_when_p_is_below_alpha() -> None:
    """The confidence sequence and the always-valid p-value agree on significance."""
    d = np.linspace(-1, 1, 2001)
    v, tau2 = 0.02, 0.05
    outside = np.abs(d) > sequential.half_width(v, tau2, 0.05)
    assert np.array_equal(outside, sequential.p_value(d, v, tau2) < 0.05)
    assert 0 < outside.sum() < d.size


def test_default_tau_is_tightest_near_two_thousand_subjects_per_arm() -> None:
    """With TAU the interval is ~1.55 times the fixed one at 2,000 subjects per arm (its best)."""
    n = np.array([200.0, 2000.0, 20000.0, 200000.0])
    v = 2 / n
    ratio = sequential.half_width(v, sequential.TAU**2, 0.05) / (Z * np.sqrt(v))
    assert ratio[1] == pytest.approx(1.55, abs=0.01)
    assert ratio.argmin() == 1
