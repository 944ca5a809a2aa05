"""Sample-ratio mismatch: do the subjects per variant match the configured weights?

A chi-square goodness-of-fit test of the observed subjects against
``total * weight / sum(weights)``; a p-value under ``SRM_THRESHOLD`` (GrowthBook's
0.001) means the split is broken (a routing bug, a variant that fails to log,
bots) and no other result of the experiment should be trusted.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from banyan.server.analysis._dist import Vec, chi2_sf

SRM_THRESHOLD = 0.001


def srm_test(observed: ArrayLike, weights: ArrayLike) -> tuple[Vec, Vec]:
    """Chi-square statistic and p-value of subjects (last axis: variants) against weights.

    A variant of weight 0 leaves the degrees of freedom alone; any subject in it
    makes the statistic infinite (p = 0).
    """
    obs = np.asarray(observed, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    expected = obs.sum(axis=-1, keepdims=True) * w / w.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(expected > 0, (obs - expected) ** 2 / expected, 0.0)
    terms = np.where((expected == 0) & (obs > 0), np.inf, terms)
    chi2 = terms.sum(axis=-1)
    # A perfect fit has p = 1 even with no degree of freedom (one variant of positive weight).
    with np.errstate(invalid="ignore"):
        return chi2, np.where(chi2 > 0, chi2_sf(chi2, np.count_nonzero(w > 0) - 1), 1.0)
