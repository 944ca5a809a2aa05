"""Intervals and tests from per-subject sums, vectorized over experiments.

Every function takes numpy arrays (or numbers) and broadcasts, so a test can
analyse a thousand simulated experiments in one call and ``analyze`` one
experiment with the same code. Undefined values (fewer than two subjects, no
variance) come out as NaN.

Fixed horizon: a variant's mean has Student's t interval, its proportion the
Wilson score interval; a difference of means Welch's t-test and interval, of
proportions the two-proportion z-test (pooled) and Newcombe's hybrid score
interval; the relative difference a delta-method interval. Sequential (``tau``
given): every interval is an mSPRT confidence sequence, every p-value always
valid.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from banyan.server.analysis import _sequential
from banyan.server.analysis._dist import Vec, normal_quantile, normal_sf, t_quantile, t_sf
from banyan.server.analysis._inputs import MetricKind


class Moments(NamedTuple):
    """Subjects, mean and per-subject variance of one metric in one variant."""

    n: Vec
    mean: Vec
    var: Vec

    @property
    def var_of_mean(self) -> Vec:
        """The squared standard error of the mean."""
        return self.var / self.n


class Interval(NamedTuple):
    """An estimate with its lower and upper bounds."""

    value: Vec
    low: Vec
    high: Vec


class Comparison(NamedTuple):
    """A variant against the control: absolute and relative difference, p-value."""

    absolute: Interval
    relative: Interval
    p_value: Vec


def moments(n: ArrayLike, total: ArrayLike, squares: ArrayLike, kind: MetricKind) -> Moments:
    """Mean and variance from ``COUNT``, ``SUM(x)`` and ``SUM(x * x)`` over subjects."""
    n, total, squares = (np.asarray(x, dtype=np.float64) for x in (n, total, squares))
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = total / n
        if kind == "proportion":
            return Moments(n, mean, mean * (1 - mean))
        # Clipped: rounding can take a zero sum of squared deviations below zero.
        var = np.maximum(squares - total * mean, 0.0) / (n - 1)
        return Moments(n, mean, np.where(n > 1, var, np.nan))


def _around(value: Vec, half: Vec) -> Interval:
    return Interval(value, value - half, value + half)


def estimate(m: Moments, kind: MetricKind, alpha: float, tau: float | None) -> Interval:
    """A variant's mean (t) or proportion (Wilson), or its confidence sequence."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if tau is not None:
            half = _sequential.half_width(m.var_of_mean, tau * tau * m.var, alpha)
            found = _around(m.mean, half)
            if kind == "proportion":
                return Interval(m.mean, np.maximum(found.low, 0.0), np.minimum(found.high, 1.0))
            return found
        if kind == "proportion":
            return wilson(m.n, m.mean, alpha)
        return _around(m.mean, t_quantile(1 - alpha / 2, m.n - 1) * np.sqrt(m.var_of_mean))


def wilson(n: Vec, p: Vec, alpha: float) -> Interval:
    """The Wilson score interval of a proportion ``p`` of ``n`` (Wilson 1927)."""
    z = normal_quantile(1 - alpha / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return Interval(p, centre - half, centre + half)


def welch_df(t: Moments, c: Moments) -> Vec:
    """Welch-Satterthwaite degrees of freedom of a difference of two means."""
    vt, vc = t.var_of_mean, c.var_of_mean
    with np.errstate(divide="ignore", invalid="ignore"):
        return (vt + vc) ** 2 / (vt * vt / (t.n - 1) + vc * vc / (c.n - 1))


def newcombe(t: Moments, c: Moments, alpha: float) -> Interval:
    """Newcombe's hybrid score interval of ``p_t - p_c``, from the two Wilson intervals."""
    wt, wc = wilson(t.n, t.mean, alpha), wilson(c.n, c.mean, alpha)
    diff = t.mean - c.mean
    with np.errstate(invalid="ignore"):
        below = np.sqrt((t.mean - wt.low) ** 2 + (wc.high - c.mean) ** 2)
        above = np.sqrt((wt.high - t.mean) ** 2 + (c.mean - wc.low) ** 2)
    return Interval(diff, diff - below, diff + above)


def _two_proportions(t: Moments, c: Moments, alpha: float) -> tuple[Interval, Vec]:
    with np.errstate(divide="ignore", invalid="ignore"):
        pooled = (t.mean * t.n + c.mean * c.n) / (t.n + c.n)
        se0 = np.sqrt(pooled * (1 - pooled) * (1 / t.n + 1 / c.n))
        return newcombe(t, c, alpha), 2 * normal_sf(np.abs(t.mean - c.mean) / se0)


def _welch(t: Moments, c: Moments, alpha: float) -> tuple[Interval, Vec]:
    df = welch_df(t, c)
    with np.errstate(divide="ignore", invalid="ignore"):
        diff, se = t.mean - c.mean, np.sqrt(t.var_of_mean + c.var_of_mean)
        half = t_quantile(1 - alpha / 2, df) * se
        return _around(diff, half), 2 * t_sf(np.abs(diff) / se, df)


def compare(
    t: Moments, c: Moments, kind: MetricKind, alpha: float, tau: float | None
) -> Comparison:
    """Treatment ``t`` against control ``c``: fixed-horizon, or sequential when ``tau``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        diff = t.mean - c.mean
        v = t.var_of_mean + c.var_of_mean
        ratio = t.mean / c.mean
        # Delta method: the variance of mean_t / mean_c to first order.
        v_rel = t.var_of_mean / c.mean**2 + ratio**2 * c.var_of_mean / c.mean**2
        if tau is not None:
            tau2 = tau * tau * (t.var + c.var) / 2
            absolute = _around(diff, _sequential.half_width(v, tau2, alpha))
            p = _sequential.p_value(diff, v, tau2)
            half_rel = _sequential.half_width(v_rel, tau2 / c.mean**2, alpha)
        else:
            test = _two_proportions if kind == "proportion" else _welch
            absolute, p = test(t, c, alpha)
            half_rel = normal_quantile(1 - alpha / 2) * np.sqrt(v_rel)
        # No observed difference is no evidence of one, also where a variance is zero.
        return Comparison(absolute, _around(ratio - 1, half_rel), np.where(diff == 0, 1.0, p))
