"""The design space a budget buys, written once: what a query costs, how many samples a per-query budget
affords, how many training tokens are left, and the ranges of N and k.

Every solver uses these functions: the optimizer's numba kernels (`optimum.py`), `decide` (through the
array helpers at the bottom, which loop over the same scalar functions), and the scalar baselines and
checks (`budget.py`, `baselines.py`). `reference.py`, the brute-force truth the optimizer is tested
against, does NOT use them: it writes the cost model again on its own.

Query cost. A query draws k samples of T tokens after a prompt of P tokens. In the budget's units
(FLOPs, or prices folded in as weights, see `query_terms`) it costs

    query_cost(N, k) = 2 (N + n0) k t + 2 (p N + q0) t  =  s (k (N + n0) + p N + q0),  s = 2t

with four per-budget terms (t, n0, p, q0) from `query_terms`. With the T2 paper's convention (no prompt,
no attention term, FLOPs) t = T and n0 = p = q0 = 0, so a query costs 2NkT; every rule below then reduces
to the paper's formula bit for bit (terms that vanish are added as exact zeros).

Budgets (`shared/DESIGN.md`): split, 6ND = C_train and query_cost(N, k) <= C_inf (c = C_inf / s); total,
6ND + Q query_cost(N, k) <= C, with b1 = s Q the queries' weight.
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = [
    "QUERY_TERMS_PLAIN",
    "affordable_samples",
    "context_tokens",
    "query_cost",
    "query_terms",
    "split_D",
    "split_designs",
    "split_k",
    "split_k_real",
    "split_n_on_ratio",
    "split_n_wall",
    "split_segment_end",
    "total_D",
    "total_designs",
    "total_k_real",
    "total_k_top",
    "total_n_at_share",
    "total_n_on_ratio",
    "total_n_top",
    "total_n_wall",
]

_JIT = dict(cache=True, nogil=True, fastmath=False, error_model="numpy")  # 1/0 -> inf, no exceptions

#: (t, n0, p, q0) of the paper's convention with T = 1: a query costs 2Nk FLOPs
QUERY_TERMS_PLAIN = (1.0, 0.0, 0.0, 0.0)


# ------------------------------------------------------------------------------------------------ query cost
@numba.njit(**_JIT)
def context_tokens(P, T):
    """(prefill, decode): tokens of context attended to, summed over positions, by a prompt of P tokens and
    by one sample of T tokens generated after it. A token at position i (0-based) attends to i + 1 tokens
    (itself and the i before it), so the prompt sums to P (P + 1) / 2 and the sample, at positions P to
    P + T - 1, to T P + T (T + 1) / 2."""
    return 0.5 * P * (P + 1.0), T * P + 0.5 * T * (T + 1.0)


@numba.njit(**_JIT)
def query_terms(T, P, F, kv, w_prefill, w_decode):
    """Per-budget terms (t, n0, p, q0) of query_cost(N, k) = 2t (k (N + n0) + p N + q0).

    T tokens per sample, P prompt tokens, F FLOPs per token per token of context attended to (the attention
    term; 0 = left out), kv: the prompt is prefilled once and its KV cache shared by the k samples (else
    every sample prefills it again). A token costs 2N FLOPs plus F per token of context
    (`context_tokens`). w_prefill, w_decode: the budget units one prefill / decode FLOP costs (1, 1 for
    FLOPs; price ratios for money), so that a query's cost is prefill FLOPs x w_prefill + decode FLOPs x
    w_decode, the same function with weights.

    With a KV cache: fixed part w_p (2 N P + F ctx_P), each sample w_d (2 N T + F ctx_T).
    Without: each sample w_p (2 N P + F ctx_P) + w_d (2 N T + F ctx_T), nothing fixed.
    """
    cp, cd = context_tokens(P, T)
    if kv:
        t = T * w_decode
        n0 = w_decode * F * cd / (2.0 * t)
        p = w_prefill * P / t
        q0 = w_prefill * F * cp / (2.0 * t)
    else:
        t = w_prefill * P + w_decode * T
        n0 = (w_prefill * F * cp + w_decode * F * cd) / (2.0 * t)
        p = 0.0
        q0 = 0.0
    return t, n0, p, q0


@numba.njit(**_JIT)
def query_cost(t, n0, p, q0, N, k):
    """What one query of k samples from a model of N parameters costs (budget units); 2NkT with the
    paper's terms, in that order of operations."""
    return 2.0 * (N + n0) * k * t + 2.0 * (p * N + q0) * t


@numba.njit(**_JIT)
def affordable_samples(x, kmax):
    """Samples per query from the real number x a budget affords: floor(x) capped at k_max, at least 1."""
    return max(1.0, min(kmax, np.floor(x)))


# ------------------------------------------------------------------------------------------------ split
@numba.njit(**_JIT)
def split_k_real(c, n0, p, q0, N):
    """Real k with query_cost(N, k) = C_inf, c = C_inf / s: (c - q0 - p N) / (N + n0)."""
    return (c - q0 - p * N) / (N + n0)


@numba.njit(**_JIT)
def split_k(c, n0, p, q0, N, kmax):
    """Samples per query the per-query budget affords at N: the largest integer k whose query fits, capped
    at k_max, at least 1 (c = C_inf / s)."""
    return affordable_samples(split_k_real(c, n0, p, q0, N), kmax)


@numba.njit(**_JIT)
def split_segment_end(c, n0, p, q0, k):
    """Largest N that still affords k samples per query (right end of k's constant-k segment):
    (c - q0 - k n0) / (k + p); with k = 1 the largest model the per-query budget serves at all."""
    return (c - q0 - k * n0) / (k + p)


@numba.njit(**_JIT)
def split_n_wall(Ct, Dmax):
    """N at which all of C_train buys exactly the data wall's tokens (larger models are not capped)."""
    return Ct / (6.0 * Dmax)


@numba.njit(**_JIT)
def split_D(Ct, Dmax, N):
    """Training tokens at N: all of C_train (6ND = C_train), up to the data wall."""
    return min(Ct / (6.0 * N), Dmax)


# ------------------------------------------------------------------------------------------------ total
@numba.njit(**_JIT)
def total_D(C, b1, n0, p, q0, N, k):
    """Training tokens left at (N, k) by the total budget, before the data wall (<= 0: not affordable):
    6ND + Q query_cost(N, k) = C, b1 = s Q."""
    return (C / N - b1 * (k + p + (k * n0 + q0) / N)) / 6.0


@numba.njit(**_JIT)
def total_k_real(C, b1, n0, p, q0, N, D):
    """Real k the total budget leaves for the queries after training N parameters on D tokens."""
    return (C - 6.0 * N * D - b1 * (p * N + q0)) / (b1 * (N + n0))


@numba.njit(**_JIT)
def total_k_top(C, b1, n0, p, q0, N, kmax):
    """Largest k that leaves some training (D > 0) at N, capped at k_max, at least 1."""
    x = (C - b1 * (p * N + q0)) / (N * b1 + b1 * n0)
    return max(1.0, min(kmax, np.ceil(x) - 1.0))


@numba.njit(**_JIT)
def total_n_top(C, b1, n0, p, q0, k):
    """N at which k samples per query use the whole total budget (D = 0); k = 1: the largest model the
    budget can serve at all."""
    return (C - b1 * (k * n0 + q0)) / (b1 * (k + p))


@numba.njit(**_JIT)
def total_n_wall(C, b1, n0, p, q0, Dmax, k):
    """N at which the training tokens left at k samples reach the data wall D = max_tokens."""
    return (C - b1 * (k * n0 + q0)) / (6.0 * Dmax + b1 * (k + p))


@numba.njit(**_JIT)
def total_n_at_share(C, b1, n0, p, q0, k, share):
    """N at which training gets `share` of the total budget at k samples (scan points when inference
    dominates)."""
    return (C * (1.0 - share) - b1 * (k * n0 + q0)) / (b1 * (k + p))


# ------------------------------------------------------------------------------------------------ D = r N
@numba.njit(**_JIT)
def split_n_on_ratio(Ct, r):
    """N that the training budget buys at r tokens per parameter: 6 r N^2 = C_train."""
    return math.sqrt(Ct / (6.0 * r))


@numba.njit(**_JIT)
def total_n_on_ratio(C, b1, n0, p, q0, r):
    """N that the total budget buys at r tokens per parameter with one sample a query:
    6 r N^2 + b1 ((1 + p) N + n0 + q0) = C, the positive root in the cancellation-free form."""
    c = C - b1 * (n0 + q0)
    b = b1 * (1.0 + p)
    return 2.0 * c / (b + math.sqrt(b * b + 24.0 * r * c))


# ------------------------------------------------------------------------------------------------ arrays
@numba.njit(**_JIT)
def split_designs(Ct, c, n0, p, q0, Dmax, kmax, N, k):
    """Designs [M, 3] (N, D, k) of the split budget at model sizes N[M]; k[M] given, or NaN entries for the
    k the per-query budget affords."""
    out = np.empty((N.shape[0], 3))
    for i in range(N.shape[0]):
        n = N[i]
        out[i, 0] = n
        out[i, 1] = split_D(Ct, Dmax, n)
        out[i, 2] = split_k(c, n0, p, q0, n, kmax) if math.isnan(k[i]) else k[i]
    return out


@numba.njit(**_JIT)
def total_designs(C, b1, n0, p, q0, Dmax, N, k):
    """Designs [M, 3] (N, D, k) of the total budget at N[M], k[M] (D <= 0: not affordable)."""
    out = np.empty((N.shape[0], 3))
    for i in range(N.shape[0]):
        out[i, 0] = N[i]
        out[i, 1] = min(total_D(C, b1, n0, p, q0, N[i], k[i]), Dmax)
        out[i, 2] = k[i]
    return out
