"""Latency percentiles with cluster-aware intervals (Deng, Knoblich and Lu 2018), #18."""

from __future__ import annotations

import math
import sqlite3

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy import stats  # type: ignore[import-untyped]

from banyan.server.analysis import (
    PERCENTILES,
    TAU,
    Percentiles,
    QuantileSums,
    VariantAggregate,
    analyze,
    interval_ranks,
    sqlite_aggregates,
)

from .sim import clustered, experiment, summed
from .test_sqlite import insert

Z = stats.norm.ppf(0.975)


def reference(
    values: NDArray[np.float64], owner: NDArray[np.int64], p: float
) -> tuple[float, float, tuple[int, int]]:
    """The quantile, the delta-method variance of the CDF there and the outer ranks, by numpy
    from the records themselves (not from the store's sums)."""
    ordered = np.sort(values)
    n = values.size
    q = float(ordered[math.ceil(p / 100 * n) - 1])
    s = np.bincount(owner, weights=values <= q)
    counts = np.bincount(owner).astype(np.float64)
    # Var(mean S / mean N) to first order: gradient (1/mu_N, -mu_S/mu_N**2), covariance of (S, N).
    grad = np.array([1 / counts.mean(), -s.mean() / counts.mean() ** 2])
    variance = float(grad @ np.cov(s, counts) @ grad) / counts.size
    half = Z * math.sqrt(variance)
    return q, variance, (math.floor(n * (p / 100 - half)), math.ceil(n * (p / 100 + half)))


def test_sql_interval_is_the_delta_method_outer_interval(conn: sqlite3.Connection) -> None:
    """The SQL's percentiles and bounds are order statistics at n(p -+ z sigma), with sigma
    the delta-method standard error of the CDF over subjects, computed here by numpy."""
    values, owner = clustered(np.random.default_rng(7), 300)
    insert(conn, [("v0", f"u{o}", float(x), None) for x, o in zip(values, owner, strict=True)])
    (agg,) = sqlite_aggregates(conn, "p", "exp_sim")
    assert agg.percentiles is not None
    ordered = np.sort(values)
    for p, q in zip(PERCENTILES, agg.percentiles.quantiles, strict=True):
        value, _, (low, high) = reference(values, owner, p)
        assert q.value == value
        assert q.low == ordered[low - 1]
        assert q.high == (ordered[high - 1] if high <= values.size else None)
    assert agg.latency is not None
    assert agg.latency.p50_ms == agg.percentiles.quantiles[0].value


def test_records_without_a_subject_count_as_subjects_of_their_own(
    conn: sqlite3.Connection,
) -> None:
    """A record without a subject is its own cluster, as if it had a subject no other has."""
    values, owner = clustered(np.random.default_rng(8), 50)
    alone = owner >= 40
    subjects = [None if a else f"u{o}" for o, a in zip(owner, alone, strict=True)]
    insert(conn, [("v0", u, float(x), None) for u, x in zip(subjects, values, strict=True)])
    (agg,) = sqlite_aggregates(conn, "p", "exp_sim")
    # The reference: each subject-less record its own subject.
    own = np.where(alone, 1000 + np.arange(owner.size), owner)
    assert agg.percentiles == summed(values, np.unique(own, return_inverse=True)[1])


def _standard_error(arm: Percentiles, i: int) -> float:
    """sigma * (X_U - X_L) * n / (U - L), from the interval at alpha 0.05."""
    q, (low, high) = arm.quantiles[i], interval_ranks(arm, 0.05, None)[i]
    assert q.low is not None
    assert q.high is not None
    assert low
    assert high
    return math.sqrt(_variance(arm, q)) * (q.high - q.low) * arm.timed / (high - low)


def test_difference_of_quantiles_is_welch_on_their_standard_errors() -> None:
    """A percentile's difference to the control: Welch's test (scipy) on standard errors
    sigma * (X_U - X_L) * n / (U - L), the delta-method sigma over the interval's density."""
    rng = np.random.default_rng(9)
    arms = [summed(*clustered(rng, 400)), summed(*clustered(rng, 400, shift=0.1))]
    aggs = [VariantAggregate(f"v{i}", a.clusters, a.timed, percentiles=a)
            for i, a in enumerate(arms)]  # fmt: skip
    found = analyze(experiment(5000, 5000), aggs).variants[1]
    (kc, kt), (c, t) = (arm.clusters for arm in arms), arms
    for i, p in enumerate(PERCENTILES):
        sc, st = (_standard_error(arm, i) * math.sqrt(arm.clusters) for arm in arms)
        qc, qt = c.quantiles[i].value, t.quantiles[i].value
        assert qc is not None
        assert qt is not None
        welch = stats.ttest_ind_from_stats(qt, st, kt, qc, sc, kc, equal_var=False)
        d = found.versus_control[f"latency_p{p}_ms"]
        assert d.absolute == pytest.approx(qt - qc, rel=1e-12)
        assert d.p_value == pytest.approx(welch.pvalue, rel=1e-9)
        metric = found.metrics[f"latency_p{p}_ms"]
        assert (metric.kind, metric.value, metric.subjects, metric.records) == (
            "quantile", qt, kt, t.timed)  # fmt: skip
        bounds = metric.interval.low, metric.interval.high
        assert bounds == (t.quantiles[i].low, t.quantiles[i].high)


def _variance(found: Percentiles, q: QuantileSums) -> float:
    """Var(F) by the delta method from the sums, written out as in docs/statistics.md."""
    k, n = found.clusters, found.timed
    mu_s, mu_n = q.below / k, n / k
    var_s = (q.below_squares - k * mu_s**2) / (k - 1)
    var_n = (found.records_squares - k * mu_n**2) / (k - 1)
    cov = (q.below_records - k * mu_s * mu_n) / (k - 1)
    r = mu_s / mu_n
    return (var_s - 2 * r * cov + r * r * var_n) / (k * mu_n**2)


def test_delta_method_variance_matches_numpy_covariance() -> None:
    """The sums give the variance that numpy's covariance of (S, N) gives, per percentile."""
    values, owner = clustered(np.random.default_rng(10), 250)
    found = summed(values, owner)
    ranks = interval_ranks(found, 0.05, None)
    for i, p in enumerate(PERCENTILES):
        _, variance, outer = reference(values, owner, p)
        assert _variance(found, found.quantiles[i]) == pytest.approx(variance, rel=1e-9)
        n = values.size
        assert ranks[i] == tuple(r if 1 <= r <= n else None for r in outer)


def test_intervals_found_at_another_alpha_are_refused() -> None:
    """analyze refuses percentiles whose bounds were found for another alpha or mode."""
    found = summed(*clustered(np.random.default_rng(11), 30))
    agg = VariantAggregate("v0", found.clusters, found.timed, percentiles=found)
    with pytest.raises(ValueError, match="alpha"):
        analyze(experiment(5000, 5000), [agg], sequential=True)
    with pytest.raises(ValueError, match="alpha"):
        analyze(experiment(5000, 5000), [agg], alpha=0.1)


def _covers(
    values: NDArray[np.float64], owner: NDArray[np.int64], truth: list[float]
) -> tuple[list[bool], list[bool]]:
    """Whether the cluster-aware and the naive per-record interval hold each true quantile."""
    found, ordered, n = summed(values, owner), np.sort(values), values.size
    ours, naive = [], []
    for p, q, true in zip(PERCENTILES[:2], found.quantiles, truth, strict=False):
        ours.append(q.low is not None and q.high is not None and q.low <= true <= q.high)
        half = Z * math.sqrt(p / 100 * (1 - p / 100) / n)
        low, high = math.floor(n * (p / 100 - half)), math.ceil(n * (p / 100 + half))
        naive.append(bool(ordered[low - 1] <= true <= ordered[min(high, n) - 1]))
    return ours, naive


def test_interval_covers_the_true_quantile_with_clustered_records() -> None:
    """Over 500 simulated variants of 200 subjects (1-15 correlated records each), the
    interval holds the true p50 and p95 in 95 % +- 3 points of runs; the per-record one
    (ranks n p -+ z sqrt(n p (1 - p))) in under 85 %."""
    rng = np.random.default_rng(2018)
    population, _ = clustered(rng, 400_000)
    truth = [float(np.quantile(population, p / 100)) for p in PERCENTILES[:2]]
    runs = [_covers(*clustered(rng, 200), truth) for _ in range(500)]
    ours = np.mean([r[0] for r in runs], axis=0)
    naive = np.mean([r[1] for r in runs], axis=0)
    assert np.all(np.abs(ours - 0.95) <= 0.03), ours
    assert np.all(naive < 0.85), naive


def test_a_percentile_without_variance_has_a_zero_width_interval() -> None:
    """When every subject has as many records at or below the p50 (sigma = 0, U = L), the
    interval is that value and the difference to the control is still computed."""
    values, owner = np.arange(100.0), np.arange(100) % 50
    arms = [summed(values, owner), summed(values + 10.0, owner)]
    aggs = [VariantAggregate(f"v{i}", 50, 100, percentiles=a) for i, a in enumerate(arms)]
    found = analyze(experiment(5000, 5000), aggs).variants[1]
    p50 = found.metrics["latency_p50_ms"]
    assert (p50.value, p50.interval.low, p50.interval.high) == (59.0, 59.0, 59.0)
    assert found.versus_control["latency_p50_ms"].absolute == 10.0


def test_sequential_intervals_hold_the_fixed_horizon_ones() -> None:
    """In the sequential mode a percentile's interval is the confidence sequence's (wider
    ranks), and its difference to the control is always valid (mSPRT)."""
    rng = np.random.default_rng(13)
    data = [clustered(rng, 300), clustered(rng, 300, shift=0.05)]
    found = {}
    for tau in (None, TAU):
        arms = [summed(*d, tau=tau) for d in data]
        aggs = [VariantAggregate(f"v{i}", a.clusters, a.timed, percentiles=a)
                for i, a in enumerate(arms)]  # fmt: skip
        found[tau] = analyze(experiment(5000, 5000), aggs, sequential=tau is not None)
    for p in PERCENTILES:
        name = f"latency_p{p}_ms"
        fixed, always = (found[t].variants[1] for t in (None, TAU))
        inner, outer = fixed.metrics[name].interval, always.metrics[name].interval
        assert outer.low is not None
        assert inner.low is not None
        assert outer.low < inner.low
        assert outer.high is None or (inner.high is not None and outer.high > inner.high)
        inner_d, outer_d = (v.versus_control[name] for v in (fixed, always))
        assert outer_d.p_value is not None
        assert inner_d.p_value is not None
        assert outer_d.p_value >= inner_d.p_value
    assert found[TAU].methods.quantile != found[None].methods.quantile
