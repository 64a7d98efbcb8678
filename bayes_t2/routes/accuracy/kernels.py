"""The accuracy law's elementwise formulas: the chance floor, the smooth shape bounds and the Beta shapes.

Each formula is written once for array backends (numpy, and pytensor inside the PyMC model: the same code,
given that backend's `softplus`, `logaddexp` and `exp` through an `Ops`) and once as a scalar numba kernel
(inside the optimizer's objective). `tests/test_accuracy_model.py` checks the three evaluations against a
closed form and each other.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import numba
import numpy as np
import pytensor.tensor as pt

from .config import LOG_NU_BOUNDS, LOGIT_MU_BOUNDS


class Ops(NamedTuple):
    """The three elementwise functions the formulas need, from one array backend."""

    softplus: Callable[[Any], Any]
    logaddexp: Callable[[Any, Any], Any]
    exp: Callable[[Any], Any]


def _softplus_np(x):
    return np.logaddexp(0.0, x)


NP = Ops(_softplus_np, np.logaddexp, np.exp)
PT = Ops(pt.softplus, pt.logaddexp, pt.exp)


# ------------------------------------------------------------------------------------------- array backends
def softclip(x, lo, hi, ops: Ops = NP):
    """A smooth, monotone clip of x into (lo, hi): the identity to within 1e-2 more than 5 units inside."""
    return lo + ops.softplus(x - lo) - ops.softplus(x - hi)


def floored_logit(x, logit_floor, ops: Ops = NP):
    """logit of mu = f + (1 - f) sigmoid(x), f = sigmoid(logit_floor), in log space (stable for tiny mu)."""
    log_mu = ops.logaddexp(-ops.softplus(-logit_floor), -ops.softplus(logit_floor) - ops.softplus(-x))
    return log_mu + ops.softplus(logit_floor) + ops.softplus(x)


def beta_shapes(logit_mu, log_nu, ops: Ops = NP):
    """Beta shapes (a, b) = (nu mu, nu (1 - mu)) from logit(mu) and log(nu), after the model's shape bounds."""
    logit_mu = softclip(logit_mu, *LOGIT_MU_BOUNDS, ops)
    log_nu = softclip(log_nu, *LOG_NU_BOUNDS, ops)
    return ops.exp(log_nu - ops.softplus(-logit_mu)), ops.exp(log_nu - ops.softplus(logit_mu))


def boxcox_pt(log_x, exponent):
    """(x^-exponent - 1)/exponent from log x; -> -log x as exponent -> 0."""
    return pt.expm1(-exponent * log_x) / exponent


# ------------------------------------------------------------------------------------ numba (scalar) kernels
@numba.njit(cache=True, nogil=True)
def softplus_nb(x):
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


@numba.njit(cache=True, nogil=True)
def softclip_nb(x, lo, hi):
    return lo + softplus_nb(x - lo) - softplus_nb(x - hi)


@numba.njit(cache=True, nogil=True)
def floored_logit_nb(x, logit_floor):
    u = -softplus_nb(-logit_floor)
    v = -softplus_nb(logit_floor) - softplus_nb(-x)
    log_mu = max(u, v) + math.log1p(math.exp(-abs(u - v)))
    return log_mu + softplus_nb(logit_floor) + softplus_nb(x)


@numba.njit(cache=True, nogil=True)
def beta_shapes_nb(logit_mu, log_nu):
    logit_mu = softclip_nb(logit_mu, LOGIT_MU_BOUNDS[0], LOGIT_MU_BOUNDS[1])
    log_nu = softclip_nb(log_nu, LOG_NU_BOUNDS[0], LOG_NU_BOUNDS[1])
    return math.exp(log_nu - softplus_nb(-logit_mu)), math.exp(log_nu - softplus_nb(logit_mu))
