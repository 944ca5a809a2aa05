"""Always-valid inference: the normal-mixture SPRT (mSPRT) and its confidence sequence.

An estimate ``d`` of an effect ``theta``, approximately normal with variance
``v`` (which shrinks as subjects arrive), and a normal mixing distribution
``N(0, tau2)`` over ``theta`` give the mixture likelihood ratio against
``theta = 0`` (Robbins 1970; Johari, Koomen, Pekelis and Walsh 2017)::

    Lambda = sqrt(v / (v + tau2)) * exp(tau2 * d**2 / (2 * v * (v + tau2)))

By Ville's inequality ``P(Lambda ever reaches 1/alpha) <= alpha`` under the
null, however often it is looked at, so ``min(1, 1/Lambda)`` is an
always-valid p-value and the set of ``theta`` it does not reject is a
confidence sequence: ``d`` plus or minus ``half_width(v, tau2, alpha)``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from banyan.server.analysis._dist import Vec

#: The default mixing standard deviation, in per-subject standard deviations of the
#: metric: tau2 = (TAU * sigma) ** 2. Intervals are tightest (about 1.55 times the
#: fixed-horizon width at alpha 0.05) near 2 * 10 / TAU**2 = 2,000 subjects per arm.
TAU = 0.1


def half_width(v: ArrayLike, tau2: ArrayLike, alpha: float) -> Vec:
    """Half the width of the (1 - alpha) confidence sequence around an estimate."""
    v, tau2 = np.asarray(v, dtype=np.float64), np.asarray(tau2, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        spread = v * (v + tau2) / tau2 * (2 * np.log(1 / alpha) + np.log((v + tau2) / v))
    half: Vec = np.sqrt(spread)
    return half


def p_value(d: ArrayLike, v: ArrayLike, tau2: ArrayLike) -> Vec:
    """The always-valid p-value ``min(1, 1/Lambda)`` of the null ``theta = 0``."""
    d, v, tau2 = (np.asarray(x, dtype=np.float64) for x in (d, v, tau2))
    with np.errstate(divide="ignore", invalid="ignore"):
        log_lr = 0.5 * np.log(v / (v + tau2)) + tau2 * d * d / (2 * v * (v + tau2))
        return np.exp(-np.maximum(log_lr, 0.0))
