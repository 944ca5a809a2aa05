"""Simulated experiments for the analysis tests: configurations and per-subject sums."""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np
from numpy.typing import NDArray

from banyan._routing import Experiment, Variant
from banyan.server.analysis import (
    PERCENTILES,
    MetricSummary,
    Percentiles,
    QuantileSums,
    VariantAggregate,
    _estimates,
    interval_ranks,
)
from banyan.server.analysis._estimates import Moments
from banyan.server.analysis._inputs import MetricKind
from banyan.server.analysis._sqlite import nearest_rank

#: A/A and A/B simulations: experiments per test, and its Monte-Carlo standard error at 5 %.
RUNS = 1000


def experiment(*weights: int) -> Experiment:
    """An experiment whose variants ``v0`` (the control), ``v1``, ... have these weights."""
    variants = tuple(Variant(f"v{i}", str(i), w, name=f"arm {i}") for i, w in enumerate(weights))
    return Experiment(id="exp_sim", sticky_key="user_id", seed="s", variants=variants)


def summary(values: NDArray[Any], kind: MetricKind = "mean") -> MetricSummary:
    """The sums a store returns for these per-subject values (last axis: subjects)."""
    values = values.astype(np.float64)
    return MetricSummary(
        subjects=values.shape[-1],
        sum=float(values.sum()),
        sum_squares=float((values * values).sum()),
        records=values.shape[-1],
        kind=kind,
    )


def aggregate(variant_id: str, **metrics: tuple[NDArray[Any], MetricKind]) -> VariantAggregate:
    """A variant's aggregate from per-subject values of each named metric."""
    summaries = {name: summary(values, kind) for name, (values, kind) in metrics.items()}
    n = max(s.subjects for s in summaries.values())
    return VariantAggregate(variant_id, subjects=n, records=n, metrics=summaries)


def moments(values: NDArray[np.float64], kind: MetricKind) -> Moments:
    """The vectorized formulas' moments of per-subject values (last axis: subjects)."""
    n = np.full(values.shape[:-1], values.shape[-1], dtype=np.float64)
    return _estimates.moments(n, values.sum(axis=-1), (values * values).sum(axis=-1), kind)


def clustered(
    rng: np.random.Generator, subjects: int, shift: float = 0.0
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Latencies of ``subjects`` subjects, 1 to 15 records each, each subject its own speed."""
    counts = rng.integers(1, 16, subjects)
    speed = rng.normal(0.0, 0.5, subjects)
    owner = np.repeat(np.arange(subjects), counts)
    values = np.exp(6.0 + shift + speed[owner] + rng.normal(0.0, 0.3, owner.size))
    return values, owner


def summed(
    values: NDArray[np.float64], owner: NDArray[np.int64], tau: float | None = None
) -> Percentiles:
    """The store's Percentiles of these records, bounds included, at alpha 0.05 (and the
    sequential mode's ``tau``)."""
    ordered, n = np.sort(values), values.size
    counts = np.bincount(owner).astype(np.float64)
    quantiles = []
    for p in PERCENTILES:
        q = float(ordered[nearest_rank(p, n) - 1])
        s = np.bincount(owner, weights=values <= q)
        quantiles.append(QuantileSums(q, s.sum(), (s * s).sum(), (s * counts).sum()))
    squares = float((counts * counts).sum())
    found = Percentiles(n, counts.size, squares, tuple(quantiles), 0.05, tau)
    bounds = [
        msgspec.structs.replace(
            q,
            low=None if lo is None else float(ordered[lo - 1]),
            high=None if hi is None else float(ordered[hi - 1]),
        )
        for q, (lo, hi) in zip(found.quantiles, interval_ranks(found, 0.05, tau), strict=True)
    ]
    return msgspec.structs.replace(found, quantiles=tuple(bounds))
