"""The distributions the analysis needs, from scipy.special (vectorized ufuncs).

scipy.special rather than scipy.stats: the same functions without the per-call
overhead of a distribution object, so thousands of simulated experiments are
one array call. scipy ships no type information; this module is the one place
that says so.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special  # type: ignore[import-untyped]

Vec = NDArray[np.float64]


def _vec(value: object) -> Vec:
    return np.asarray(value, dtype=np.float64)


def normal_sf(x: ArrayLike) -> Vec:
    """P(Z > x) for a standard normal Z."""
    return _vec(special.ndtr(-np.asarray(x, dtype=np.float64)))


def normal_quantile(q: ArrayLike) -> Vec:
    """The q-quantile of the standard normal."""
    return _vec(special.ndtri(q))


def t_sf(x: ArrayLike, df: ArrayLike) -> Vec:
    """P(T > x) for Student's t with ``df`` degrees of freedom (inf: the normal)."""
    return _vec(special.stdtr(df, -np.asarray(x, dtype=np.float64)))


def t_quantile(q: ArrayLike, df: ArrayLike) -> Vec:
    """The q-quantile of Student's t with ``df`` degrees of freedom."""
    return _vec(special.stdtrit(df, q))


def chi2_sf(x: ArrayLike, df: ArrayLike) -> Vec:
    """P(X > x) for a chi-square X with ``df`` degrees of freedom."""
    return _vec(special.chdtrc(df, x))
