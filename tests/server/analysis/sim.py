"""Simulated experiments for the analysis tests: configurations and per-subject sums."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from banyan._routing import Experiment, Variant
from banyan.server.analysis import MetricSummary, VariantAggregate, _estimates
from banyan.server.analysis._estimates import Moments
from banyan.server.analysis._inputs import MetricKind

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
