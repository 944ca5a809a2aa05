"""Simulated experiments: A/A false positives, sequential peeking, power, SRM.

Sizes are modest and seeds fixed, so each test is deterministic and takes
about a second. Tolerances are stated as Monte-Carlo standard errors of a
rate over RUNS experiments: sqrt(p * (1 - p) / 1000) is 0.69 % at p = 5 %.
"""

from __future__ import annotations

import numpy as np
import pytest

from banyan.server.analysis import _estimates as est
from banyan.server.analysis import analyze
from banyan.server.analysis._dist import normal_quantile, normal_sf
from banyan.server.analysis._inputs import MetricKind
from banyan.server.analysis._srm import SRM_THRESHOLD, srm_test

from .sim import RUNS, aggregate, experiment, moments

ALPHA = 0.05
#: Three Monte-Carlo standard errors of a rate near ALPHA over RUNS experiments.
MC_TOLERANCE = 3 * np.sqrt(ALPHA * (1 - ALPHA) / RUNS)


def test_aa_experiments_flag_a_difference_in_five_percent() -> None:
    """1,000 A/A experiments (300 subjects per arm) are significant in 5 % +- 1.5 %."""
    rng = np.random.default_rng(1801)
    latency = rng.lognormal(6.0, 0.5, (RUNS, 2, 300))
    accepted = (rng.random((RUNS, 2, 300)) < 0.2).astype(np.float64)
    flagged = {"latency": 0, "accepted": 0}
    for run in range(RUNS):
        aggs = [
            aggregate(f"v{arm}", latency=(latency[run, arm], "mean"),
                      accepted=(accepted[run, arm], "proportion"))
            for arm in range(2)
        ]  # fmt: skip
        result = analyze(experiment(5000, 5000), aggs, alpha=ALPHA)
        assert result.mode == "fixed-horizon"
        for name, diff in result.variants[1].versus_control.items():
            flagged[name] += diff.significant
    for name, count in flagged.items():
        assert 0.035 <= count / RUNS <= 0.065, (name, count)


def _looks(values: np.ndarray, looks: int, kind: MetricKind = "mean") -> list[est.Moments]:
    """Cumulative moments of each arm after each of ``looks`` equal batches."""
    runs, arms, subjects = values.shape
    batches = values.reshape(runs, arms, looks, subjects // looks)
    n = np.cumsum(np.full(batches.shape[:-1], subjects // looks, dtype=np.float64), axis=-1)
    total = np.cumsum(batches.sum(axis=-1), axis=-1)
    squares = np.cumsum((batches * batches).sum(axis=-1), axis=-1)
    return [est.moments(n[:, a], total[:, a], squares[:, a], kind) for a in range(arms)]


def _peeking_rates(values: np.ndarray, looks: int) -> tuple[float, float]:
    """Share of A/A runs significant at any look: (sequential, fixed-horizon)."""
    control, treatment = _looks(values, looks)
    seq = est.compare(treatment, control, "mean", ALPHA, tau=0.1).p_value
    fixed = est.compare(treatment, control, "mean", ALPHA, tau=None).p_value
    return float((seq < ALPHA).any(axis=-1).mean()), float((fixed < ALPHA).any(axis=-1).mean())


def test_sequential_option_holds_alpha_when_checked_after_every_batch() -> None:
    """A/A checked after each of 20 batches: mSPRT stays <= alpha; fixed-horizon does not."""
    rng = np.random.default_rng(1802)
    sequential, fixed = _peeking_rates(rng.lognormal(6.0, 0.5, (RUNS, 2, 600)), looks=20)
    assert sequential <= ALPHA + MC_TOLERANCE
    # The test has teeth: the same looks inflate the fixed-horizon test well past alpha.
    assert fixed > ALPHA + 3 * MC_TOLERANCE


def test_sequential_option_holds_alpha_for_proportions() -> None:
    """A/A conversions (p = 0.1) checked after each of 20 batches stay <= alpha."""
    rng = np.random.default_rng(1803)
    converted = (rng.random((RUNS, 2, 1000)) < 0.1).astype(np.float64)
    control, treatment = _looks(converted, looks=20, kind="proportion")
    p = est.compare(treatment, control, "proportion", ALPHA, tau=0.1).p_value
    assert float((p < ALPHA).any(axis=-1).mean()) <= ALPHA + MC_TOLERANCE


def test_sequential_interval_covers_the_true_mean_at_every_look() -> None:
    """A variant's confidence sequence misses the true mean at some look in <= alpha of runs."""
    rng = np.random.default_rng(1804)
    (arm,) = _looks(rng.normal(10.0, 3.0, (RUNS, 1, 600)), looks=20)
    found = est.estimate(arm, "mean", ALPHA, tau=0.1)
    missed = ((found.low > 10.0) | (found.high < 10.0)).any(axis=-1)
    assert float(missed.mean()) <= ALPHA + MC_TOLERANCE


def _power_means(lift: float, sigma: float, n: int) -> float:
    """The usual normal-approximation power of a two-sided test of means."""
    shift = lift / (sigma * np.sqrt(2 / n))
    z = float(normal_quantile(1 - ALPHA / 2))
    return float(normal_sf(z - shift) + normal_sf(z + shift))


def test_ab_lift_in_means_is_detected_at_the_predicted_power() -> None:
    """A lift of 0.2 sd with 400 subjects per arm: power 0.81 predicted, observed +- 0.04."""
    rng = np.random.default_rng(1805)
    control = rng.normal(1.0, 1.0, (RUNS, 400))
    treatment = rng.normal(1.2, 1.0, (RUNS, 400))
    p = est.compare(
        moments(treatment, "mean"), moments(control, "mean"), "mean",
        ALPHA, tau=None,
    ).p_value  # fmt: skip
    predicted = _power_means(0.2, 1.0, 400)
    assert 0.75 < predicted < 0.85
    assert float((p < ALPHA).mean()) == pytest.approx(predicted, abs=0.04)


def test_ab_lift_in_conversion_is_detected_at_the_predicted_power() -> None:
    """Conversion 20 % -> 26 % with 800 subjects per arm: the Fleiss power, +- 0.04."""
    rng = np.random.default_rng(1806)
    pc, pt, n = 0.20, 0.26, 800
    control = (rng.random((RUNS, n)) < pc).astype(np.float64)
    treatment = (rng.random((RUNS, n)) < pt).astype(np.float64)
    p = est.compare(
        moments(treatment, "proportion"), moments(control, "proportion"),
        "proportion", ALPHA, tau=None,
    ).p_value  # fmt: skip
    pooled = (pc + pt) / 2
    se0, se1 = np.sqrt(2 * pooled * (1 - pooled) / n), np.sqrt((pc * (1 - pc) + pt * (1 - pt)) / n)
    z = float(normal_quantile(1 - ALPHA / 2))
    predicted = float(normal_sf((z * se0 - (pt - pc)) / se1))
    assert 0.75 < predicted < 0.9
    assert float((p < ALPHA).mean()) == pytest.approx(predicted, abs=0.04)


def test_fair_splits_are_flagged_by_srm_at_its_threshold_rate() -> None:
    """1,000 fair 50/30/20 splits of 5,000 subjects: about 0.1 % flagged, p uniform."""
    rng = np.random.default_rng(1807)
    weights = np.array([5000, 3000, 2000])
    observed = rng.multinomial(5000, weights / weights.sum(), RUNS)
    _, p = srm_test(observed, weights)
    assert int((p < SRM_THRESHOLD).sum()) <= 5
    assert float((p < ALPHA).mean()) == pytest.approx(ALPHA, abs=MC_TOLERANCE)


def test_skewed_splits_are_flagged_by_srm() -> None:
    """A 50/50 experiment that routed 53 % of 10,000 subjects to the control is flagged."""
    rng = np.random.default_rng(1808)
    observed = rng.multinomial(10_000, [0.53, 0.47], RUNS)
    _, p = srm_test(observed, [5000, 5000])
    assert float((p < SRM_THRESHOLD).mean()) >= 0.99
    aggs = [aggregate(f"v{i}", x=(np.zeros(n), "mean")) for i, n in enumerate(observed[0])]
    assert analyze(experiment(5000, 5000), aggs).srm.flagged


def test_sequential_option_detects_a_real_lift() -> None:
    """A 0.2 sd lift read after each of 20 batches (to 1,000 per arm) is found in >= 85 %."""
    rng = np.random.default_rng(1810)
    arms = [rng.normal(1.0, 1.0, (RUNS, 1000)), rng.normal(1.2, 1.0, (RUNS, 1000))]
    control, treatment = _looks(np.stack(arms, axis=1), looks=20)
    p = est.compare(treatment, control, "mean", ALPHA, tau=0.1).p_value
    # Observed 0.94 with this seed; the fixed-horizon test at the last look has 0.996.
    assert float((p < ALPHA).any(axis=-1).mean()) >= 0.85


def _covered(interval: est.Interval, truth: float) -> float:
    return float(((interval.low < truth) & (interval.high > truth)).mean())


def test_lift_intervals_cover_the_true_lift() -> None:
    """Delta-method lift intervals (latency +10 %, conversion 10 % -> 15 %) cover in 95 % +- 2.1."""
    rng = np.random.default_rng(1811)
    control = rng.lognormal(6.0, 0.5, (RUNS, 300))
    treatment = rng.lognormal(6.0 + np.log(1.1), 0.5, (RUNS, 300))
    means = est.compare(moments(treatment, "mean"), moments(control, "mean"), "mean", ALPHA, None)
    converted_c = (rng.random((RUNS, 400)) < 0.10).astype(np.float64)
    converted_t = (rng.random((RUNS, 400)) < 0.15).astype(np.float64)
    rates = est.compare(
        moments(converted_t, "proportion"), moments(converted_c, "proportion"), "proportion",
        ALPHA, None,
    )  # fmt: skip
    for coverage in (_covered(means.relative, 0.1), _covered(rates.relative, 0.5),
                     _covered(rates.absolute, 0.05)):  # fmt: skip
        assert coverage == pytest.approx(1 - ALPHA, abs=MC_TOLERANCE)
