"""Latency percentiles with intervals at the unit that was randomized (#18).

A percentile describes records, but records cluster by subject, so the usual
per-record interval (ranks ``n p ± z √(n p (1 - p))``) is too narrow. Deng,
Knoblich and Lu, "Applying the Delta Method in Metric Analytics" (KDD 2018,
arXiv 1803.06336, quantile metrics): the empirical CDF at the sample quantile
``q`` is ``F = ΣS / ΣN`` over subjects (``S`` a subject's records at or below
``q``, ``N`` its records), a ratio of two means whose variance the delta method
gives from five sums; mapped to ranks, ``n (p ± z sigma)``, the order statistics
there bound the quantile (the outer interval). The ranks' width over the values'
width estimates the density at ``q``, which turns ``sigma`` into the quantile's
standard error for the difference to the control.
"""

from __future__ import annotations

import math

import numpy as np

from banyan.server.analysis import _sequential
from banyan.server.analysis._dist import normal_quantile
from banyan.server.analysis._estimates import Moments
from banyan.server.analysis._inputs import Percentiles, QuantileSums
from banyan.server.analysis._sqlite import PERCENTILES, nearest_rank

#: The Moments of a variant without timed records.
EMPTY = Moments(np.float64(0), np.float64(math.nan), np.float64(math.nan))


def cdf_variance(found: Percentiles, q: QuantileSums) -> float:
    """The delta-method variance of ``F = ΣS / ΣN`` over ``found.clusters`` subjects.

    ``Σ(S - F N)² / (K - 1)`` is the sample variance of the linearized ratio (its
    mean is 0), divided by ``K`` subjects and the squared mean of ``N``.
    """
    k, total = found.clusters, found.timed
    if k < 2 or total <= 0:
        return math.nan
    f = q.below / total
    spread = q.below_squares - 2 * f * q.below_records + f * f * found.records_squares
    return max(spread, 0.0) * k / ((k - 1) * total * total)


def cdf_half_width(variance: float, clusters: int, alpha: float, tau: float | None) -> float:
    """Half the interval of ``F`` on the probability scale: ``z sigma``, or the confidence
    sequence's, whose per-subject variance is ``K sigma**2``."""
    if tau is None:
        return float(normal_quantile(1 - alpha / 2)) * math.sqrt(variance)
    return float(_sequential.half_width(variance, tau * tau * clusters * variance, alpha))


def outer_ranks(p: float, n: int, half: float) -> tuple[int | None, int | None]:
    """The ranks ``⌊n (p - h)⌋`` and ``⌈n (p + h)⌉`` (``p`` in percent); None outside 1..n."""
    if not math.isfinite(half) or n < 1:
        return None, None
    low, high = math.floor(n * (p / 100 - half)), math.ceil(n * (p / 100 + half))
    return (low if low >= 1 else None), (high if high <= n else None)


def interval_ranks(
    found: Percentiles, alpha: float, tau: float | None
) -> list[tuple[int | None, int | None]]:
    """Per percentile of PERCENTILES, the ranks whose order statistics bound it."""
    return [
        outer_ranks(p, found.timed, _half(found, q, alpha, tau))
        for p, q in zip(PERCENTILES, found.quantiles, strict=True)
    ]


def _half(found: Percentiles, q: QuantileSums, alpha: float, tau: float | None) -> float:
    return cdf_half_width(cdf_variance(found, q), found.clusters, alpha, tau)


def standard_error(found: Percentiles, i: int) -> float:
    """The standard error of percentile ``i``: ``sigma`` over the density at it, which the
    interval estimates as its width in values over its width in ranks (over n). A bound
    beyond the records (a p99 of few) leaves the side from the percentile to the other."""
    q, (low, high) = found.quantiles[i], interval_ranks(found, found.alpha, found.tau)[i]
    middle = nearest_rank(PERCENTILES[i], found.timed)
    known = [(r, x) for r, x in ((low, q.low), (middle, q.value), (high, q.high))
             if r is not None and x is not None]  # fmt: skip
    if len(known) < 2:
        return math.nan
    (first, x0), (last, x1) = known[0], known[-1]
    # U = L only when sigma = 0: the subjects' shares at or below the value do not vary.
    width = max(last - first, 1)
    return math.sqrt(cdf_variance(found, q)) * (x1 - x0) * found.timed / width


def moments(found: Percentiles, i: int) -> Moments:
    """Percentile ``i`` as the Moments of a mean of ``K`` subjects with its standard error,
    so that ``_estimates.compare`` tests it against the control's."""
    value, se, k = found.quantiles[i].value, standard_error(found, i), found.clusters
    mean = math.nan if value is None else value
    return Moments(np.float64(k), np.float64(mean), np.float64(k * se * se))
