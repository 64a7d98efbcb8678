"""The scaling-law formulas, each written once.

`loss_law` is plain arithmetic, so the same function serves numpy arrays, pytensor tensors (inside the PyMC
model) and, through `loss_law_nb`, numba kernels (inside the optimizer). Names follow `shared/DESIGN.md`:
L(N, D, k) = E + A/N^alpha + B/D^beta + G/k^gamma. A k-free (Chinchilla) law is the case G = 0.
"""

from __future__ import annotations

import math

import numba
import numpy as np

LOSS_COEFFICIENTS: tuple[str, ...] = ("E", "A", "alpha", "B", "beta", "G", "gamma")
CHINCHILLA_TOKENS_PER_PARAM = 20.0


def loss_law(E, A, alpha, B, beta, G, gamma, N, D, k):
    """Task loss at k samples: irreducible + model-size + data + sampling terms."""
    return E + A * N ** (-alpha) + B * D ** (-beta) + G * k ** (-gamma)


loss_law_nb = numba.njit(cache=True, nogil=True)(loss_law)


def chinchilla_optimal_params(A, alpha, B, beta, train_flops):
    """Closed-form compute-optimal N for C = 6ND: N_opt = G (C/6)^(beta/(alpha+beta)), G = (alpha A/(beta B))^(1/(alpha+beta))."""
    g = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
    return g * (np.asarray(train_flops) / 6.0) ** (beta / (alpha + beta))


chinchilla_optimal_params_nb = numba.njit(cache=True, nogil=True)(chinchilla_optimal_params)


# ----------------------------------------------------------------------------------------------------------
# Repeated data: the data-constrained law of Muennighoff et al. 2023 ("Scaling Data-Constrained Language
# Models", NeurIPS 2023, eqs. 5-6; docs/model.md). Training on D tokens drawn from U unique ones repeats them
# R_D = D/U - 1 times beyond the first epoch, and each repetition is worth less: the law sees the effective
# tokens D' = U + U R_D* (1 - exp(-R_D/R_D*)) instead of D. Parameters beyond U_N, the compute-optimal model
# size for U tokens, are discounted the same way with R_N*. Both tend to the fresh-data law as R* -> inf and
# to a hard cap at U (at U_N) as R* -> 0.
# ----------------------------------------------------------------------------------------------------------

#: the published fit (Muennighoff et al. 2023, the datablations repository's parametric fit): R_D*, R_N*
PUBLISHED_R_D_STAR = 15.387756
PUBLISHED_R_N_STAR = 5.309743


def repeated_value(base, excess, r_star, fmin=np.fmin, expm1=np.expm1):
    """base (1 + R* (1 - exp(-R/R*))) for R = `excess` >= 0 repetitions beyond the first: what `base` unique
    units repeated R more times are worth. numpy/xarray by default (and numba, compiled below); the PyMC model
    passes pytensor's ops. R* (1 - e^(-R/R*)) <= R always, so the `fmin` with R changes no finite value and
    only fills the limits the closed form leaves undefined: R* = inf (no decay: worth R) and R = R* = 0."""
    with np.errstate(divide="ignore", invalid="ignore"):  # the limits, filled by fmin
        return base * (1.0 + fmin(r_star * -expm1(-excess / r_star), excess))


def effective_tokens(D, U, r_star):
    """Effective training tokens D' of D tokens drawn from U unique ones (D' = D when D <= U or U is NaN)."""
    unique = np.fmin(U, D)
    return repeated_value(unique, D / unique - 1.0, r_star)


def effective_params(N, U_N, r_star):
    """Effective parameters N' of a model of N parameters when U_N is the compute-optimal size for the unique
    data (N' = N when N <= U_N or U_N is NaN)."""
    unique = np.fmin(U_N, N)
    return repeated_value(unique, N / unique - 1.0, r_star)


def unique_params(A, alpha, B, beta, U):
    """U_N: the compute-optimal model size whose compute-optimal token count is U, from the law's own
    coefficients (Chinchilla's N_opt(C) = G (C/6)^(beta/(alpha+beta)), G = (alpha A/(beta B))^(1/(alpha+beta)),
    inverted: U_N = G (G U)^(beta/alpha); as the datablations parametric fit computes it)."""
    g = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
    return g * (g * U) ** (beta / alpha)


_NB_ERR = dict(cache=True, nogil=True, error_model="numpy")  # x/0 -> inf, as numpy


@numba.njit(**_NB_ERR)
def repeated_value_nb(base, excess, r_star):
    """`repeated_value` for numba kernels (scalars): the same formula and limits."""
    return base * (1.0 + min(r_star * -math.expm1(-excess / r_star), excess)) if r_star < math.inf \
        else base * (1.0 + excess)


@numba.njit(**_NB_ERR)
def effective_tokens_nb(D, U, r_star):
    """`effective_tokens` for numba kernels (scalars; U NaN or >= D: no repetition)."""
    if not U < D:
        return D
    return repeated_value_nb(U, D / U - 1.0, r_star)


@numba.njit(**_NB_ERR)
def effective_params_nb(N, U_N, r_star):
    """`effective_params` for numba kernels (scalars)."""
    if not U_N < N:
        return N
    return repeated_value_nb(U_N, N / U_N - 1.0, r_star)


# ----------------------------------------------------------------------------------------------------------
# Under-training: learning-rate warm-up. A run whose learning rate rises linearly from 0 to its peak over its
# first W = w N tokens (warm-up proportional to the model's size) and stays there has, by the area under its
# schedule, the progress of D - W/2 tokens at the peak rate when D >= W, and of D^2 / (2W) when it stops
# inside the warm-up. The law then sees those effective tokens; w = 0 is the plain law. Runs of a few tokens
# per parameter are where this shows: at fixed tokens a larger model loses more, which no additive law can.
# ----------------------------------------------------------------------------------------------------------


#: the model size at which a warm-up that grows as a power of the size lasts w N tokens (`warmup_length`)
WARMUP_N_REF = 1e8


def warmup_length(N, w, exponent=None, n_ref=WARMUP_N_REF):
    """Tokens the warm-up lasts: w N (proportional to the model, `exponent` None), or w n_ref (N / n_ref)^exponent
    when the warm-up grows as a power of the size (1: proportional; 0: a fixed number of tokens, w n_ref, for
    every model, as a schedule of fixed steps and batch gives). Ufuncs only (numpy, xarray, pytensor)."""
    if exponent is None:
        return w * N
    return w * n_ref * (N / n_ref) ** exponent


def warmup_tokens(D, N, w, fmin=np.fmin, exponent=None, n_ref=WARMUP_N_REF):
    """Effective tokens of a run of D tokens whose warm-up lasts W = `warmup_length(N, w, exponent)` tokens
    (w N by default, w = warm-up tokens per parameter): D u (1 - u / (2r)) with r = D/W and u = min(r, 1), i.e.
    D - W/2 past the warm-up and D r/2 inside it. Ufuncs only, so numpy, xarray (dims kept) and, with
    `fmin=pt.minimum`, pytensor share it. Continuous with its slope at D = W; w = 0 gives D."""
    D, N, w = (np.float64(x) if isinstance(x, (int, float)) else x for x in (D, N, w))  # x/0: inf, not raised
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = D / warmup_length(N, w, exponent, n_ref)
        done = fmin(ratio, 1.0)  # the share of the warm-up the run got through
        return D * done * (1.0 - done / (2.0 * ratio))


@numba.njit(**_NB_ERR)
def warmup_after_nb(D, W):
    """Effective tokens of D tokens after a linear warm-up of W tokens (numba, scalars; `warmup_tokens`)."""
    if D >= W:
        return D - 0.5 * W
    return D * D / (2.0 * W)


@numba.njit(**_NB_ERR)
def warmup_tokens_nb(D, N, w):
    """`warmup_tokens` for numba kernels (scalars), a warm-up of w N tokens."""
    return warmup_after_nb(D, w * N)


@numba.njit(**_NB_ERR)
def warmup_power_tokens_nb(D, N, w, exponent):
    """`warmup_tokens` for numba kernels (scalars), a warm-up of w n_ref (N / n_ref)^exponent tokens."""
    return warmup_after_nb(D, w * WARMUP_N_REF * (N / WARMUP_N_REF) ** exponent)
