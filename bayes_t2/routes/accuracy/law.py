"""The accuracy law evaluated from coefficients: Beta shapes and pass@k per posterior draw (numpy/xarray), the
optimizer's objective (numba), and the map from any T2 coefficient set to the fitted normalisation.

The formulas themselves are in `kernels` (once per backend); the model that fits them is in `model`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numba
import numpy as np
import xarray as xr
from numba import types

from ...laws import loss_law, loss_law_nb
from ...passk import beta_pass_at_k, log1m_beta_pass_at_k_nb
from ..extrapolation import discrepancy_error, extrapolation_efolds_nb
from .config import NO_FLOOR, T2_COEFFICIENTS
from .kernels import beta_shapes, beta_shapes_nb, floored_logit, floored_logit_nb


def standardize_coefficients(coefs: Mapping[str, float], N0: float, D0: float) -> dict[str, float]:
    """Map any T2 coefficient set to the model's pinned normalisation at reference (N0, D0).

    Returns the sampled quantities (logit_mu_ref, slope_mu, log_nu_ref, slope_nu, w, alpha, beta) and the T2
    names in the pinned form (E = 0, unit total log-slope of L at the reference). Both describe the same law.
    """
    c = {k: float(v) for k, v in coefs.items()}
    a_n = c["A"] * N0 ** (-c["alpha"])
    a_d = c["B"] * D0 ** (-c["beta"])
    slope = c["alpha"] * a_n + c["beta"] * a_d  # -dL/dlogN - dL/dlogD at the reference
    l_ref = c["E"] + a_n + a_d
    w = c["alpha"] * a_n / slope
    out = {
        "logit_mu_ref": c["theta1"] + c["theta2"] * l_ref,
        "slope_mu": -c["theta2"] * slope,
        "log_nu_ref": c["theta3"] + c["theta4"] * l_ref,
        "slope_nu": c["theta4"] * slope,
        "w": w, "alpha": c["alpha"], "beta": c["beta"],
    }
    level = w / c["alpha"] + (1.0 - w) / c["beta"]
    out.update({
        "theta1": out["logit_mu_ref"] + out["slope_mu"] * level, "theta2": -out["slope_mu"],
        "theta3": out["log_nu_ref"] - out["slope_nu"] * level, "theta4": out["slope_nu"],
        "E": 0.0, "A": w / c["alpha"] * N0 ** c["alpha"], "B": (1.0 - w) / c["beta"] * D0 ** c["beta"],
    })
    out["log_slope_mu"] = math.log(out["slope_mu"]) if out["slope_mu"] > 0 else -math.inf
    out["logit_w"] = math.log(w / (1.0 - w))
    out["log_alpha"], out["log_beta"] = math.log(c["alpha"]), math.log(c["beta"])
    out["logit_floor"] = c.get("logit_floor", NO_FLOOR)  # the floor does not depend on the normalisation
    return out


def _get(source: Any, name: str):
    if hasattr(source, "posterior"):  # InferenceData or DataTree
        return source.posterior[name]
    return source[name]


def _get_coefficient(source: Any, name: str):
    """A T2 coefficient; a source without ``logit_floor`` (a truth or fit from before the chance floor) has
    none: `NO_FLOOR`."""
    try:
        return _get(source, name)
    except KeyError:
        if name == "logit_floor":
            return NO_FLOOR
        raise


def _as_input(x, like):
    """N or D for broadcasting: xarray objects pass; arrays against an xarray posterior get dim 'point'."""
    if isinstance(like, xr.DataArray) and not isinstance(x, xr.DataArray):
        x = np.asarray(x, dtype=float)
        return xr.DataArray(x, dims=("point",)) if x.ndim == 1 else (float(x) if x.ndim == 0 else x)
    return x if isinstance(x, xr.DataArray) else np.asarray(x, dtype=float)


def accuracy_shapes(posterior_or_arrays: Any, N: Any, D: Any, *, rng: np.random.Generator | None = None,
                    noise_nu: float | None = None, discrepancy: float = 0.0, logit_shift: Any = 0.0):
    """Beta shapes (a, b) of per-problem success at (N, D) for every posterior draw.

    `posterior_or_arrays`: a posterior Dataset/DataTree/InferenceData or a mapping with the T2 names
    (theta1..theta4, E, A, alpha, B, beta). With xarray coefficients, 1-d N and D get a dim ``point``; with
    plain arrays, numpy broadcasting applies. The shape bounds of the model are applied.
    rng: draw a fresh checkpoint deviation per draw and point (a *new* checkpoint's shapes, the posterior
    predictive); needs ``checkpoint_sd_mu``/``checkpoint_sd_nu`` in the source, else the law itself.
    noise_nu: the Student-t degrees of freedom of the deviations (None: normal), as in the fit's spec.
    discrepancy: with `rng`, the law's error beyond the data (`routes.extrapolation`): logit(mu) of the new
    checkpoint also gets Normal(0, discrepancy * x), x the e-folds of (N, D) beyond the source's
    ``data_log_range`` (none without it). logit_shift: a fixed shift of logit(mu) (the optimizer's bend).
    Both act on the floored mean, as the checkpoint deviation does.
    """
    c = {name: _get_coefficient(posterior_or_arrays, name) for name in T2_COEFFICIENTS}
    like = c["theta1"]
    N, D = _as_input(N, like), _as_input(D, like)
    L = loss_law(c["E"], c["A"], c["alpha"], c["B"], c["beta"], 0.0, 1.0, N, D, 1.0)
    logit_mu = floored_logit(c["theta1"] + c["theta2"] * L, c["logit_floor"])
    log_nu = c["theta3"] + c["theta4"] * L
    logit_mu = logit_mu + logit_shift
    if rng is not None:
        logit_mu = logit_mu + _checkpoint_deviation(posterior_or_arrays, "mu", logit_mu, rng, noise_nu)
        log_nu = log_nu + _checkpoint_deviation(posterior_or_arrays, "nu", log_nu, rng, noise_nu)
        logit_mu = logit_mu + _discrepancy(posterior_or_arrays, N, D, logit_mu, rng, discrepancy)
    return beta_shapes(logit_mu, log_nu)


def _discrepancy(source: Any, N: Any, D: Any, like: Any, rng: np.random.Generator, scale: float):
    """A new checkpoint's error of logit(mu) beyond the data (`extrapolation.discrepancy_error`)."""
    try:
        log_range = _get(source, "data_log_range")
    except KeyError:
        return 0.0
    return discrepancy_error(log_range, N, D, like, rng, scale)


def _checkpoint_deviation(source: Any, name: str, like: Any, rng: np.random.Generator, nu: float | None):
    """Student-t(nu) (or Normal when nu is None) scaled by checkpoint_sd_<name>: noise shaped like `like` (0 when the fit has no checkpoint noise)."""
    try:
        sd = _get(source, f"checkpoint_sd_{name}")
    except KeyError:
        return 0.0
    eps = rng.standard_t(nu, size=np.shape(like)) if nu else rng.standard_normal(np.shape(like))
    if isinstance(like, xr.DataArray):
        eps = xr.DataArray(eps, dims=like.dims, coords=like.coords)
    return eps * sd


def accuracy_pass_at_k(posterior_or_arrays: Any, N: Any, D: Any, k: Any, *, rng: np.random.Generator | None = None,
                       noise_nu: float | None = None, discrepancy: float = 0.0, logit_shift: Any = 0.0):
    """pass@k (the expected fraction of problems solved within k samples) at (N, D), per draw; with `rng`,
    at a new checkpoint (see `accuracy_shapes`)."""
    a, b = accuracy_shapes(posterior_or_arrays, N, D, rng=rng, noise_nu=noise_nu, discrepancy=discrepancy,
                           logit_shift=logit_shift)
    k = _as_input(k, a) if isinstance(a, xr.DataArray) and np.ndim(k) == 0 else k
    return beta_pass_at_k(a, b, k)


def pack_theta(posterior_or_arrays: Any) -> np.ndarray:
    """The optimizer's theta for every draw and task: array (..., len(theta_names)), C-contiguous float64."""
    arrays = [np.asarray(_get_coefficient(posterior_or_arrays, name), dtype=float) for name in T2_COEFFICIENTS]
    return np.ascontiguousarray(np.stack(np.broadcast_arrays(*arrays), axis=-1))


_OBJECTIVE_SIGNATURE = types.float64(types.float64[::1], types.float64, types.float64, types.float64)


@numba.njit(cache=True, nogil=True)
def _neg_pass_at_k_shifted_nb(theta, N, D, k, logit_shift):
    """log(1 - pass@k) with the (floored) logit of mu shifted by `logit_shift` (0: the law itself)."""
    L = loss_law_nb(theta[4], theta[5], theta[6], theta[7], theta[8], 0.0, 1.0, N, D, 1.0)
    logit_mu = floored_logit_nb(theta[0] + theta[1] * L, theta[9]) + logit_shift
    a, b = beta_shapes_nb(logit_mu, theta[2] + theta[3] * L)
    return log1m_beta_pass_at_k_nb(a, b, k)


@numba.njit(_OBJECTIVE_SIGNATURE, cache=True, nogil=True)
def neg_pass_at_k_nb(theta, N, D, k):
    """log(1 - pass@k) at (N, D, k) for theta packed in `theta_names` order: the value to MINIMISE.

    Monotone in pass@k and well resolved both when pass@k is tiny and when it approaches 1 (where -pass@k
    would be flat to float64). k may be real.
    """
    return _neg_pass_at_k_shifted_nb(theta, N, D, k, 0.0)


#: where the bend starts in the bent objective's theta: [T2 coefficients..., z*s, range (8)] (`optimum.BentRoute`)
BEND_AT = len(T2_COEFFICIENTS)


@numba.njit(_OBJECTIVE_SIGNATURE, cache=True, nogil=True)
def neg_pass_at_k_bent_nb(theta, N, D, k):
    """`neg_pass_at_k_nb` with the law bent beyond the data: logit(mu) (floored) shifted by z*s times the
    e-folds (N, D) lies outside the data's range; theta = [T2 coefficients, z*s, (min, max) of log N, log D,
    log 6ND, log D/N]."""
    bend = theta[BEND_AT]
    shift = bend * extrapolation_efolds_nb(theta, BEND_AT + 1, N, D) if bend != 0.0 else 0.0
    return _neg_pass_at_k_shifted_nb(theta, N, D, k, shift)
