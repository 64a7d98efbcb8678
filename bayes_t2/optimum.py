"""Per-draw compute-optimal designs (N*, D*, k*) under a budget: numba kernels and an xarray wrapper.

For every posterior draw, task and budget the kernels minimise an objective ``objective(theta, N, D, k)``
(the loss law for the loss route, e.g. -pass@k for the accuracy route) over the designs the budget buys:

* split budget (T2 convention): D = min(C_train/(6N), max_tokens), k = min(k_max, floor(C_inf/(2NT))),
  one free variable N in [min_params, min(max_params, C_inf/(2T))]. The objective is piecewise in N (k
  jumps at N = C_inf/(2kT)). The generic search is global: it scans every constant-k segment end (or small
  k, a geometric set and integer refinement around its local minima when there are very many), a log grid
  in N and the data wall, then polishes the best scan points by bounded Brent minimisation in log N over
  their cells (between scan neighbours, inside one constant-k segment, ends included).
* total budget: 6ND + 2NkTQ <= C, D <= max_tokens, k integer in [1, k_max]. Generic search: a scan over k
  (every integer, or small k + a geometric grid + integer refinement around its local minima), each k with
  a global inner search over N (log grid, data wall, a few training shares, Brent over the best cells).
  Nothing assumes one minimum beyond one scan cell: the accuracy route's log(1 - pass@k) can have a second
  local optimum at the smallest model. `bayes_t2.reference` is the independent brute force it is tested
  against (tests/test_optimum_global.py).

The loss law has an exact path (`method="exact"`, chosen automatically for `loss_law_nb`):
* split: nothing beats the clipped Chinchilla optimum within its own k segment; for larger k the best N
  of a segment is its right end N = C_inf/(2kT), along which the loss is convex in log k, and its real
  minimiser solves a monotone first-order condition (Newton from a proven lower bound); the integer
  optimum is its floor or ceiling.
* total: for fixed k the first-order condition in log D is increasing, concave and nearly linear (Newton
  from a proven lower bound), then Illinois on the profile slope d/dlog k (envelope theorem) brackets k.
So N* is exact to rounding. The generic search is limited by float64 rounding of the objective near its
flat minimum (about sqrt(eps |f| / f'') in log N, up to ~1e-5 relative when the reducible loss is tiny next
to E), which is one reason the exact path exists; the other is speed (~0.8 vs ~24 CPU-us per split problem).

Kernels take the objective as a numba first-class function of type `OBJECTIVE_TYPE`; any `@numba.njit`
function with that call signature can be passed. (Dispatcher arguments would be specialised per function,
but then the kernels could not be cached on disk; typed as a first-class function they are compiled once
and cached.) Kernels are compiled with fastmath off and numpy's error model (1/0 -> inf, no exceptions).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from typing import Any

import numba
import numpy as np
import xarray as xr
from numba import types

from . import designs as ds_
from .budget import (SERVING_DEFAULTS, Budget, Constraints, SplitBudget, TotalBudget, check_feasible,
                     chinchilla_design)
from .errors import InputError
from .laws import LOSS_COEFFICIENTS, chinchilla_optimal_params_nb, loss_law_nb
from .routes.extrapolation import with_discrepancy
from .routes.loss import RANGE_AXES, extrapolation_efolds_nb

__all__ = [
    "OBJECTIVE_SIGNATURE",
    "OBJECTIVE_TYPE",
    "OUTPUTS",
    "budget_table",
    "loss_objective_nb",
    "optimize_array",
    "optimize_posterior",
    "split_optimum",
    "split_optimum_loss",
    "sweep_kernel",
    "total_optimum",
    "total_optimum_loss",
]

OBJECTIVE_SIGNATURE = types.float64(types.float64[::1], types.float64, types.float64, types.float64)
OBJECTIVE_TYPE = types.FunctionType(OBJECTIVE_SIGNATURE)

#: Rows of the array `sweep_kernel` fills, in order.
OUTPUTS = ("N", "D", "k", "metric", "chinchilla_metric", "chinchilla_metric_k1")

SPLIT, TOTAL = 0.0, 1.0
_XATOL = 1e-10  # final bracket width in log N, relative to max(1, |log N|)
_JIT = dict(cache=True, nogil=True, fastmath=False, error_model="numpy")  # 1/0 -> inf, no exceptions


@numba.njit(OBJECTIVE_SIGNATURE, **_JIT)
def loss_objective_nb(theta, N, D, k):
    """The loss law as an optimizer objective: theta = [E, A, alpha, B, beta, G, gamma]."""
    return loss_law_nb(theta[0], theta[1], theta[2], theta[3], theta[4], theta[5], theta[6], N, D, k)


# ----------------------------------------------------------------------------------------------------------
# Exact path for the loss law (theta = [E, A, alpha, B, beta, G, gamma])
# ----------------------------------------------------------------------------------------------------------


@numba.njit(**_JIT)
def _split_loss_value(theta, Ct, Dmax, N, k):
    return loss_law_nb(theta[0], theta[1], theta[2], theta[3], theta[4], theta[5], theta[6],
                       N, ds_.split_D(Ct, Dmax, N), k)


@numba.njit(**_JIT)
def _lse(x, y):
    m = max(x, y)
    if m == -np.inf:
        return -np.inf
    return m + math.log(math.exp(x - m) + math.exp(y - m))


@numba.njit(**_JIT)
def _phi1(v, lp, a, lq, b, lr, g):
    """First-order condition of psi(v) = loss at N = c e^-v, k = e^v (uncapped D), in log form, and its slope.

    psi'(v) = P e^{av} - Q e^{-bv} - R e^{-gv};  phi1 = log(P e^{av}) - log(Q e^{-bv} + R e^{-gv}) is
    increasing and concave with slope in [a + min(b, g), a + max(b, g)]; psi' > 0 iff phi1 > 0.
    """
    x, y = lq - b * v, lr - g * v
    s = _lse(x, y)
    wq = math.exp(x - s)
    return lp + a * v - s, a + b * wq + g * (1.0 - wq)


@numba.njit(**_JIT)
def _root_phi1(lp, a, lq, b, lr, g, x1, x2):
    """Root of the increasing function phi1, clipped to [x1, x2].

    The root lies right of both two-term roots (the sum Q e^-bv + R e^-gv exceeds each term), and Newton's
    method started left of the root of a concave increasing function climbs monotonically to it, so no
    bracketing is needed; slopes lie in [a + min(b, g), a + max(b, g)], so a few steps suffice.
    """
    x = max((lq - lp) / (a + b), (lr - lp) / (a + g), x1)
    if x >= x2:
        return x2
    for _ in range(100):
        fx, dfx = _phi1(x, lp, a, lq, b, lr, g)
        if fx >= 0.0:
            return x
        xn = x - fx / dfx
        if xn >= x2:
            return x2
        if xn - x <= 1e-9:  # the next step would move < 1e-17
            return xn
        x = xn
    return x


@numba.njit(**_JIT)
def split_optimum_loss(theta, Ct, Ci, T, Dmax, lo, maxN, kmax):
    """Exact split-budget optimum of the loss law -> (N, D, k, loss), a query costing 2NkT (`_split_loss`)."""
    return _split_loss(theta, Ct, Ci / (2.0 * T), Dmax, lo, maxN, kmax)


@numba.njit(**_JIT)
def _split_loss(theta, Ct, c, Dmax, lo, maxN, kmax):
    """Exact split-budget optimum of the loss law when a query costs s N k (c = C_inf / s) -> (N, D, k, loss).

    Within the segment of the fixed-k optimum N_h = clip(max(N_chinchilla, N_wall), lo, hi) nothing beats
    N_h. For more samples than that segment affords the best N in each segment is its right end
    N_k = c/k, where psi(k) = loss(N_k, k) is convex in log k; its real minimiser solves a monotone
    first-order condition and the integer optimum is its floor or ceiling. (With a prompt or an attention
    term the segment ends are not c/k and the sweep takes the generic search instead.)
    """
    A, a, B, b, G, g = theta[1], theta[2], theta[3], theta[4], theta[5], theta[6]
    hi = min(maxN, ds_.split_segment_end(c, 0.0, 0.0, 0.0, 1.0))
    if not lo <= hi:
        return np.nan, np.nan, np.nan, np.nan
    nw = ds_.split_n_wall(Ct, Dmax)
    nc = chinchilla_optimal_params_nb(A, a, B, b, Ct)
    nh = min(max(max(nc, nw), lo), hi)
    kh = ds_.split_k(c, 0.0, 0.0, 0.0, nh, kmax)
    bn, bk = nh, kh
    bv = _split_loss_value(theta, Ct, Dmax, nh, kh)
    K = ds_.split_k(c, 0.0, 0.0, 0.0, lo, kmax)
    if G > 0.0 and kh + 1.0 <= K:
        v0, v1 = math.log(kh + 1.0), math.log(K)
        lp = math.log(a * A) - a * math.log(c)
        lq = math.log(b * B) - b * math.log(Ct / (6.0 * c))
        lr = math.log(g * G)
        vw = math.log(6.0 * c * Dmax / Ct)  # D is capped for v > vw
        v2 = (lr - lp) / (a + g)  # root with D capped
        if vw >= v1:
            vs = _root_phi1(lp, a, lq, b, lr, g, v0, v1)
        elif vw <= v0:
            vs = min(max(v2, v0), v1)
        else:
            f_w, _ = _phi1(vw, lp, a, lq, b, lr, g)
            if f_w >= 0.0:
                vs = _root_phi1(lp, a, lq, b, lr, g, v0, vw)
            elif v2 >= vw:
                vs = min(v2, v1)
            else:
                vs = vw
        kf = np.floor(math.exp(vs))
        for kk in (kf, kf + 1.0):
            k = min(max(kk, kh + 1.0), K)
            n = max(ds_.split_segment_end(c, 0.0, 0.0, 0.0, k), lo)
            v = _split_loss_value(theta, Ct, Dmax, n, k)
            if v < bv:
                bn, bk, bv = n, k, v
    return bn, ds_.split_D(Ct, Dmax, bn), bk, bv


@numba.njit(**_JIT)
def _total_loss_value(theta, C, b1, Dmax, N, k):
    D = ds_.total_D(C, b1, 0.0, 0.0, 0.0, N, k)
    if not D > 0.0:
        return np.inf
    return loss_law_nb(theta[0], theta[1], theta[2], theta[3], theta[4], theta[5], theta[6],
                       N, min(D, Dmax), k)


@numba.njit(**_JIT)
def _total_foc(t, l0, a, b, C, bk):
    """First-order condition for fixed k in t = log D (N = C / (6 e^t + bk), bk = 2kTQ), and its slope:

    F(t) = log(aA) - log(bB C/6) + (1-a) log N(t) + (b+1) t, increasing and concave in t with slope in
    [a + b, 1 + b]; F > 0 iff the loss would fall with a bigger model (smaller D).
    """
    s = 6.0 * math.exp(t)
    return l0 + (1.0 - a) * (math.log(C) - math.log(s + bk)) + (b + 1.0) * t, (b + 1.0) - (1.0 - a) * s / (s + bk)


@numba.njit(**_JIT)
def _total_inner_loss_n(theta, C, bk, Dmax, lo, hi):
    """Exact best N for fixed k under the total budget (bk = 2kTQ): the root of the first-order condition,
    moved to the data wall if it lies on the capped side, clipped to [lo, hi]; nan if no N has D > 0.
    (The first-order condition's algebra is written for 6ND + bk N = C: a query costing s N k.)"""
    A, a, B, b = theta[1], theta[2], theta[3], theta[4]
    nhi = min(hi, ds_.total_n_top(C, bk, 0.0, 0.0, 0.0, 1.0) * (1.0 - 1e-12))
    if not lo < nhi:
        return np.nan
    l0 = math.log(a * A) - math.log(b * B * C / 6.0)
    # D range: t_lo at N = nhi, t_hi at N = lo or the data wall
    d_nhi = ds_.total_D(C, bk, 0.0, 0.0, 0.0, nhi, 1.0)
    t_lo = math.log(d_nhi) if d_nhi > 0.0 else -np.inf
    t_hi = min(math.log(ds_.total_D(C, bk, 0.0, 0.0, 0.0, lo, 1.0)), math.log(Dmax))
    # The root lies right of the roots of the two linear upper bounds of F (log(6e^t + bk) exceeds both
    # log(6e^t) and log(bk)), and Newton from the left of the root of a concave increasing function climbs
    # monotonically to it.
    lc = math.log(C)
    t = max(-(l0 + (1.0 - a) * (lc - math.log(6.0))) / (a + b), -(l0 + (1.0 - a) * (lc - math.log(bk))) / (b + 1.0))
    if t < t_hi:
        for _ in range(100):
            ft, dft = _total_foc(t, l0, a, b, C, bk)
            if ft >= 0.0:
                break
            tn = t - ft / dft
            if tn >= t_hi:
                t = t_hi
                break
            if tn - t <= 1e-9:  # the next step would move < 1e-17
                t = tn
                break
            t = tn
    else:
        t = t_hi
    t = max(t, t_lo)
    n = C / (6.0 * math.exp(t) + bk)
    return min(max(n, lo), nhi)


# ----------------------------------------------------------------------------------------------------------
# Generic search (any objective)
# ----------------------------------------------------------------------------------------------------------


@numba.njit(**_JIT)
def _value(f, theta, mode, N, args):
    """Objective at N for one of two one-dimensional problems with a fixed k; args is a 7-tuple:

    mode 0 split:  args = (C_train, max_tokens, k, ...)
    mode 2 total:  args = (C, b1 = sQ, n0, p, q0, max_tokens, k) (query cost terms as `designs`)
    """
    if mode == 0:
        return f(theta, N, ds_.split_D(args[0], args[1], N), args[2])
    D = ds_.total_D(args[0], args[1], args[2], args[3], args[4], N, args[6])
    if not D > 0.0:
        return np.inf
    return f(theta, N, min(D, args[5]), args[6])


@numba.njit(**_JIT)
def _brent(f, theta, mode, args, nlo, nhi):
    """Bounded Brent minimisation (golden section + parabolic steps, as scipy's `fminbound`) in u = log N
    over [nlo, nhi] of `_value(f, theta, mode, N, args)`; returns (N, value). The end points are compared at
    the end, so a binding bound is returned exactly."""
    a, b = math.log(nlo), math.log(nhi)
    vlo = _value(f, theta, mode, nlo, args)
    if not b > a:
        return nlo, vlo
    vhi = _value(f, theta, mode, nhi, args)
    cg = 0.5 * (3.0 - math.sqrt(5.0))
    xatol = _XATOL * max(1.0, abs(a), abs(b))
    # A unimodal function that does not rise over the last xatol before an end has its minimum within xatol
    # of that end (the tolerance anyway): return the end at once. Segment ends are the common answer.
    if b - a > 4.0 * xatol:
        if vhi <= vlo and vhi <= _value(f, theta, mode, math.exp(b - xatol), args):
            return nhi, vhi
        if vlo < vhi and vlo <= _value(f, theta, mode, math.exp(a + xatol), args):
            return nlo, vlo
    # Minima at an end are common (segment ends); a unimodal function that does not rise over the last
    # 1/1000 of the interval has its minimum there, which saves ~15 golden steps. (The probe is far enough
    # in that float rounding of f cannot fake the comparison except inside rounding's own flat band.)
    delta = 1e-3 * (b - a)
    if delta > xatol:
        if vhi <= _value(f, theta, mode, math.exp(b - delta), args):
            a = b - delta
        elif vlo <= _value(f, theta, mode, math.exp(a + delta), args):
            b = a + delta
    fulc = a + cg * (b - a)
    nfc, xf = fulc, fulc
    rat, e = 0.0, 0.0
    fx = _value(f, theta, mode, math.exp(xf), args)
    ffulc, fnfc = fx, fx
    xm = 0.5 * (a + b)
    tol1 = xatol / 3.0
    tol2 = 2.0 * tol1
    for _ in range(500):
        if abs(xf - xm) <= tol2 - 0.5 * (b - a):
            break
        golden = True
        if abs(e) > tol1:  # try a parabola through the three best points
            golden = False
            r = (xf - nfc) * (fx - ffulc)
            q = (xf - fulc) * (fx - fnfc)
            p = (xf - fulc) * q - (xf - nfc) * r
            q = 2.0 * (q - r)
            if q > 0.0:
                p = -p
            q = abs(q)
            r = e
            e = rat
            if abs(p) < abs(0.5 * q * r) and p > q * (a - xf) and p < q * (b - xf):
                rat = p / q
                x = xf + rat
                if (x - a) < tol2 or (b - x) < tol2:
                    rat = tol1 if xm >= xf else -tol1
            else:
                golden = True
        if golden:
            e = (a - xf) if xf >= xm else (b - xf)
            rat = cg * e
        step = max(abs(rat), tol1)
        x = xf + (step if rat >= 0.0 else -step)
        fu = _value(f, theta, mode, math.exp(x), args)
        if fu <= fx:
            if x >= xf:
                a = xf
            else:
                b = xf
            fulc, ffulc = nfc, fnfc
            nfc, fnfc = xf, fx
            xf, fx = x, fu
        else:
            if x < xf:
                a = x
            else:
                b = x
            if fu <= fnfc or nfc == xf:
                fulc, ffulc = nfc, fnfc
                nfc, fnfc = x, fu
            elif fu <= ffulc or fulc == xf or fulc == nfc:
                fulc, ffulc = x, fu
        xm = 0.5 * (a + b)
        tol1 = xatol / 3.0
        tol2 = 2.0 * tol1
    bn, bv = min(max(math.exp(xf), nlo), nhi), fx
    if vlo <= bv:
        bn, bv = nlo, vlo
    if vhi < bv:
        bn, bv = nhi, vhi
    return bn, bv


#
# Nothing about an arbitrary objective is unimodal: the accuracy route's log(1 - pass@k) can have one local
# optimum near the fixed-k optimum and another at the smallest model (most samples). So the search first
# SCANS designs spread over the whole feasible set, then POLISHES the best few with bounded Brent inside the
# cell between their scan neighbours (within one constant-k segment, so the objective is smooth there). The
# scan resolves any local minimum whose basin is wider than the scan's spacing; the tests compare it with an
# independent dense-grid solver (bayes_t2/reference.py) on populations that have two separated minima.

_SPLIT_GRID = 48      # log-spaced N over [min_params, hi], each at the k it affords
_SPLIT_FULL = 192     # scan every constant-k segment end when there are at most this many segments
_SMALL_K = 32         # otherwise every k up to kmin + _SMALL_K - 1 ...
_GEO_K = 64           # ... plus this many geometrically spaced k up to the largest, then refine by integer search
_POLISH = 4           # scan cells polished by Brent
_REFINE = 3           # local minima of a geometric k scan refined to the integer
_TOTAL_GRID = 16      # log-spaced N per k (total budget), plus the data wall and a few training shares
_TOTAL_FULL = 48      # total budget: every k when there are at most this many
_TOTAL_SMALL = 16
_TOTAL_GEO = 24
_GOLD = (math.sqrt(5.0) - 1.0) / 2.0  # golden ratio step (integer golden section on k)
_TRAIN_SHARES = (0.5, 0.2, 0.05, 0.01, 1e-3)  # training's share of C: resolves optima where inference dominates


@numba.njit(**_JIT)
def _top_indices(vals, n, m):
    """Indices of the (at most) m smallest finite values among vals[:n], best first."""
    out = np.full(m, -1, dtype=np.int64)
    for j in range(m):
        bi, bv = -1, np.inf
        for i in range(n):
            if vals[i] < bv:
                taken = False
                for q in range(j):
                    if out[q] == i:
                        taken = True
                if not taken:
                    bi, bv = i, vals[i]
        out[j] = bi
    return out


@numba.njit(**_JIT)
def _geometric_ks(k0, k1, m):
    """Up to m distinct integers from k0 to k1 (both included), geometrically spaced."""
    out = np.empty(m + 2)
    n = 0
    r = math.log(k1 / k0)
    for i in range(m):
        k = np.floor(k0 * math.exp(r * i / (m - 1)) + 0.5) if m > 1 else k0
        k = min(max(k, k0), k1)
        if n == 0 or k > out[n - 1]:
            out[n] = k
            n += 1
    if out[n - 1] < k1:
        out[n] = k1
        n += 1
    return out[:n]


@numba.njit(**_JIT)
def _k_value(f, theta, kind, p, k):
    """(N, value) of the best design found with exactly k samples; p[5:8] = query cost terms (n0, p, q0).

    kind 0 (split, p = [C_train, max_tokens, C_inf/s, lo, hi, ...]): the right end of k's segment, tight.
    kind 1 (total, p = [C, b1 = sQ, max_tokens, lo, hi, ...]): the global inner search over N.
    """
    if kind == 0:
        n = min(p[4], ds_.split_segment_end(p[2], p[5], p[6], p[7], k))
        return n, f(theta, n, ds_.split_D(p[0], p[1], n), k)
    return _total_inner(f, theta, p[0], p[1], p[5], p[6], p[7], p[2], p[3], p[4], k)


@numba.njit(**_JIT)
def _local_minima(vals, n):
    """vals[:n] where a value is no larger than both neighbours (a local minimum of the scan), else inf."""
    loc = np.full(n, np.inf)
    for i in range(n):
        left = vals[i - 1] if i > 0 else np.inf
        right = vals[i + 1] if i < n - 1 else np.inf
        if vals[i] <= left and vals[i] <= right:
            loc[i] = vals[i]
    return loc


@numba.njit(**_JIT)
def _k_golden(f, theta, kind, p, ka, kb):
    """Best integer k in [ka, kb] -> (k, N, value), by golden section on the integers.

    Used only between the scan neighbours of a local minimum of a geometric k scan, where the profile is
    locally unimodal at the scan's resolution."""
    a, b = ka, kb
    if b - a > 4.0:
        c = b - np.floor(_GOLD * (b - a) + 0.5)
        d = a + np.floor(_GOLD * (b - a) + 0.5)
        if d <= c:
            d = c + 1.0
        _, fc = _k_value(f, theta, kind, p, c)
        _, fd = _k_value(f, theta, kind, p, d)
        while b - a > 4.0:  # a < c < d < b throughout; one new evaluation per step
            if fc <= fd:
                b, d, fd = d, c, fc
                c = b - np.floor(_GOLD * (b - a) + 0.5)
                if c >= d:
                    c = d - 1.0
                if c <= a:
                    break
                _, fc = _k_value(f, theta, kind, p, c)
            else:
                a, c, fc = c, d, fd
                d = a + np.floor(_GOLD * (b - a) + 0.5)
                if d <= c:
                    d = c + 1.0
                if d >= b:
                    break
                _, fd = _k_value(f, theta, kind, p, d)
    bk, bn, bv = np.nan, np.nan, np.inf
    k = a
    while k <= b:
        n, v = _k_value(f, theta, kind, p, k)
        if v < bv:
            bk, bn, bv = k, n, v
        k += 1.0
    return bk, bn, bv


@numba.njit(**_JIT)
def _k_scan(f, theta, kind, p, k0, k1, nfull, nsmall, ngeo):
    """Scan k over the integers [k0, k1] -> (ks, Ns, values) of the designs visited.

    Every k when there are at most `nfull`; otherwise every k below k0 + nsmall, a geometric grid above, and
    the `_REFINE` best local minima of that grid refined to the integer by `_k_golden` between their grid
    neighbours (the refined k and its two neighbours are returned too)."""
    if k1 - k0 + 1.0 <= nfull:
        ks = np.arange(k0, k1 + 1.0)
    else:
        geo = _geometric_ks(k0 + nsmall, k1, ngeo)
        ks = np.concatenate((np.arange(k0, k0 + nsmall), geo))
    m = ks.shape[0]
    ns = np.empty(m + 3 * _REFINE)
    vs = np.empty(m + 3 * _REFINE)
    kk = np.empty(m + 3 * _REFINE)
    for i in range(m):
        kk[i] = ks[i]
        ns[i], vs[i] = _k_value(f, theta, kind, p, ks[i])
    n = m
    if k1 - k0 + 1.0 > nfull:
        # local minima of the scan (in k order), best first
        top = _top_indices(_local_minima(vs, m), m, _REFINE)
        for j in range(_REFINE):
            i = top[j]
            if i < 0 or ks[i] <= k0 + nsmall - 1.0:
                continue  # no minimum, or one among the exhaustively scanned small k
            ka = ks[i - 1] + 1.0 if i > 0 else k0
            kb = ks[i + 1] - 1.0 if i < m - 1 else k1
            kr, _, _ = _k_golden(f, theta, kind, p, ka, kb)
            if not kr >= k0:
                continue
            for dk in (-1.0, 0.0, 1.0):
                k = kr + dk
                if k0 <= k <= k1:
                    kk[n] = k
                    ns[n], vs[n] = _k_value(f, theta, kind, p, k)
                    n += 1
    return kk[:n], ns[:n], vs[:n]


@numba.njit(**_JIT)
def _sorted_unique(pts, ks, vs, n):
    """Sort the first n (N, k, value) triples by N (ties by k) and drop exact duplicates -> (pts, ks, vs)."""
    key = np.empty(n)
    for i in range(n):
        key[i] = pts[i]
    order = np.argsort(key, kind="mergesort")
    out_n = np.empty(n)
    out_k = np.empty(n)
    out_v = np.empty(n)
    m = 0
    for i in range(n):
        N, k = pts[order[i]], ks[order[i]]
        if m > 0 and out_n[m - 1] == N and out_k[m - 1] == k:
            continue
        out_n[m] = N
        out_k[m] = k
        out_v[m] = vs[order[i]]
        m += 1
    return out_n[:m], out_k[:m], out_v[:m]


@numba.njit(**_JIT)
def _split_search(f, theta, Ct, Ci, T, Dmax, lo, maxN, kmax):
    """Minimise f over the split budget (C_train, C_inf per query, T tokens/sample, a query costing 2NkT)
    -> (N, D, k, value); see `_split_search_q`."""
    return _split_search_q(f, theta, Ct, Ci / (2.0 * T), 0.0, 0.0, 0.0, Dmax, lo, maxN, kmax)


@numba.njit(**_JIT)
def _split_search_q(f, theta, Ct, c, n0, pp, q0, Dmax, lo, maxN, kmax):
    """Minimise f over the split budget -> (N, D, k, value); c = C_inf/s and (n0, pp, q0) the query cost
    terms (`designs.query_terms`).

    Scan: a log grid in N (each point at the k it affords), the data wall, and the right end of constant-k
    segments (all of them, or small k + a geometric subset refined to the integer around its local minima);
    polish: bounded Brent over the `_POLISH` best scan points' cells (between their scan neighbours, inside
    their own segment, ends included)."""
    hi = min(maxN, ds_.split_segment_end(c, n0, pp, q0, 1.0))
    if not lo <= hi:
        return np.nan, np.nan, np.nan, np.nan
    kmin = ds_.split_k(c, n0, pp, q0, hi, kmax)
    K = ds_.split_k(c, n0, pp, q0, lo, kmax)
    p = np.array([Ct, Dmax, c, lo, hi, n0, pp, q0])
    ks, kn, kv = _k_scan(f, theta, 0, p, kmin, K, float(_SPLIT_FULL), float(_SMALL_K), _GEO_K)
    nmax = _SPLIT_GRID + 3 + ks.shape[0]
    pts = np.empty(nmax)
    pk = np.empty(nmax)
    pv = np.empty(nmax)
    n = 0
    ul, uh = math.log(lo), math.log(hi)
    for i in range(_SPLIT_GRID + 3):
        if i < _SPLIT_GRID:
            N = min(max(math.exp(ul + (uh - ul) * i / (_SPLIT_GRID - 1.0)), lo), hi)
        elif i == _SPLIT_GRID:
            N = lo
        elif i == _SPLIT_GRID + 1:
            N = hi
        else:
            N = ds_.split_n_wall(Ct, Dmax)  # the data wall
            if not lo < N < hi:
                continue
        k = ds_.split_k(c, n0, pp, q0, N, kmax)
        pts[n], pk[n], pv[n] = N, k, f(theta, N, ds_.split_D(Ct, Dmax, N), k)
        n += 1
    for i in range(ks.shape[0]):
        pts[n], pk[n], pv[n] = kn[i], ks[i], kv[i]
        n += 1
    pts, pk, vals = _sorted_unique(pts, pk, pv, n)
    n = pts.shape[0]
    bi = _top_indices(vals, n, 1)[0]
    if bi < 0:
        return np.nan, np.nan, np.nan, np.nan
    bn, bk, bv = pts[bi], pk[bi], vals[bi]
    top = _top_indices(vals, n, _POLISH)
    for j in range(_POLISH):
        i = top[j]
        if i < 0:
            continue
        k = pk[i]
        seg_lo = lo if k >= kmax else max(lo, ds_.split_segment_end(c, n0, pp, q0, k + 1.0))
        seg_hi = min(hi, ds_.split_segment_end(c, n0, pp, q0, k))
        left = max(pts[i - 1] if i > 0 else lo, seg_lo)
        right = min(pts[i + 1] if i < n - 1 else hi, seg_hi)
        left, right = min(left, pts[i]), max(right, pts[i])
        N, v = _brent(f, theta, 0, (Ct, Dmax, k, 0.0, 0.0, 0.0, 0.0), left, right)
        if v < bv:
            bn, bk, bv = N, k, v
    # a point polished onto its segment's left end affords one more sample there
    k_tight = ds_.split_k(c, n0, pp, q0, bn, kmax)
    if k_tight > bk:
        v = f(theta, bn, ds_.split_D(Ct, Dmax, bn), k_tight)
        if v < bv:
            bk, bv = k_tight, v
    return bn, ds_.split_D(Ct, Dmax, bn), bk, bv


@numba.njit(**_JIT)
def _total_inner(f, theta, C, b1, n0, pp, q0, Dmax, lo, hi, k):
    """Best N for a fixed k under the total budget -> (N, value); f = None selects the exact loss path
    (a query costing s N k only: n0 = pp = q0 = 0).

    Generic objectives: a log grid in N, the data wall and the N at a few training shares of C, then
    bounded Brent over the cells of the two best local minima of that scan."""
    if f is None:
        n = _total_inner_loss_n(theta, C, b1 * k, Dmax, lo, hi)
        return n, _total_loss_value(theta, C, b1, Dmax, n, k)
    nhi = min(hi, ds_.total_n_top(C, b1, n0, pp, q0, k))
    if not lo < nhi:
        return np.nan, np.inf
    m = _TOTAL_GRID + 1 + len(_TRAIN_SHARES)
    pts = np.empty(m)
    ones = np.zeros(m)
    n = 0
    ul, uh = math.log(lo), math.log(nhi)
    for i in range(_TOTAL_GRID):
        pts[n] = min(max(math.exp(ul + (uh - ul) * i / (_TOTAL_GRID - 1.0)), lo), nhi)
        n += 1
    nw = ds_.total_n_wall(C, b1, n0, pp, q0, Dmax, k)
    if lo < nw < nhi:
        pts[n] = nw
        n += 1
    for x in _TRAIN_SHARES:
        N = ds_.total_n_at_share(C, b1, n0, pp, q0, k, x)
        if lo < N < nhi:
            pts[n] = N
            n += 1
    pts, _, _ = _sorted_unique(pts, ones, ones, n)
    n = pts.shape[0]
    q = (C, b1, n0, pp, q0, Dmax, k)
    vals = np.empty(n)
    for i in range(n):
        vals[i] = _value(f, theta, 2, pts[i], q)
    loc = _local_minima(vals, n)
    bi = _top_indices(vals, n, 1)[0]
    if bi < 0:
        return np.nan, np.inf
    bn, bv = pts[bi], vals[bi]
    top = _top_indices(loc, n, 2)
    for j in range(2):
        i = top[j]
        if i < 0:
            continue
        left = pts[i - 1] if i > 0 else lo
        right = pts[i + 1] if i < n - 1 else nhi
        N, v = _brent(f, theta, 2, q, left, right)
        if v < bv:
            bn, bv = N, v
    return bn, bv


@numba.njit(**_JIT)
def _total_profile_slope(theta, C, b1, Dmax, lo, hi, v):
    """d/dv of the profile loss min_N L(N, D, k = e^v) under the total budget (envelope theorem)."""
    A, a, B, b, G, g = theta[1], theta[2], theta[3], theta[4], theta[5], theta[6]
    k = math.exp(v)
    bk = b1 * k
    n = _total_inner_loss_n(theta, C, bk, Dmax, lo, hi)
    nwall = ds_.total_n_wall(C, b1, 0.0, 0.0, 0.0, Dmax, k)
    if n < nwall * (1.0 - 1e-12):  # N pinned at max_params with D capped: compute to spare, only k matters
        return -g * G * k ** (-g)
    if n <= nwall * (1.0 + 1e-12):  # at the data wall N = C / (6 Dmax + bk) moves with k
        return a * A * n ** (-a) * bk / (6.0 * Dmax + bk) - g * G * k ** (-g)
    d = ds_.total_D(C, b1, 0.0, 0.0, 0.0, n, k)  # otherwise (interior or at a bound on N) D moves with k
    return b * B * d ** (-b - 1.0) * bk / 6.0 - g * G * k ** (-g)


@numba.njit(**_JIT)
def _total_k_bracket_loss(theta, C, b1, Dmax, lo, hi, vmax):
    """Bracket [a, b] in v = log k around the minimum of the (convex) profile loss, narrowed until it holds
    at most one integer step: Illinois (bracketed secant) on the monotone profile slope."""
    a, b = 0.0, vmax
    if not b > a:
        return a, a
    ga = _total_profile_slope(theta, C, b1, Dmax, lo, hi, a)
    if ga >= 0.0:
        return a, a
    gb = _total_profile_slope(theta, C, b1, Dmax, lo, hi, b)
    if gb <= 0.0:
        return b, b
    side = 0
    for it in range(200):
        if b - a <= 1e-12 * max(1.0, b) or math.exp(b) - math.exp(a) <= 1.0:
            break
        x = (a * gb - b * ga) / (gb - ga)
        if it % 4 == 3 or not (a < x < b):  # guarantee progress
            x = 0.5 * (a + b)
        gx = _total_profile_slope(theta, C, b1, Dmax, lo, hi, x)
        if gx > 0.0:
            b, gb = x, gx
            if side == -1:
                ga *= 0.5
            side = -1
        elif gx < 0.0:
            a, ga = x, gx
            if side == 1:
                gb *= 0.5
            side = 1
        else:
            return x, x
    return a, b


@numba.njit(**_JIT)
def _total_search(f, theta, C, T, Q, Dmax, lo, maxN, kmax):
    """Total budget, a query costing 2NkT -> (N, D, k, value); see `_total_search_q`."""
    return _total_search_q(f, theta, C, 2.0 * T * Q, 0.0, 0.0, 0.0, Dmax, lo, maxN, kmax)


@numba.njit(**_JIT)
def _total_search_q(f, theta, C, b1, n0, pp, q0, Dmax, lo, maxN, kmax):
    """Total budget (b1 = sQ and query cost terms n0, pp, q0 as `designs`) -> (N, D, k, value); f = None
    selects the exact path for the loss law (n0 = pp = q0 = 0 only).

    Loss law: Illinois on the (monotone) profile slope in log k brackets k*, then the integers around it.
    Generic objectives: a scan over k (every integer up to `_TOTAL_FULL` values, else small k, a geometric
    grid and integer refinement around its best local minima), each k with the global inner search over N
    (`_total_inner`); no unimodality in k is assumed."""
    hi = min(maxN, ds_.total_n_top(C, b1, n0, pp, q0, 1.0))
    if not lo < hi:
        return np.nan, np.nan, np.nan, np.nan
    K = ds_.total_k_top(C, b1, n0, pp, q0, lo, kmax)
    bn, bk, bv = np.nan, np.nan, np.inf
    if f is None:
        a, b = _total_k_bracket_loss(theta, C, b1, Dmax, lo, hi, math.log(K))
        # every integer in the bracket, plus one on each side (at most 8 near the middle if k is
        # astronomically large and integers are below float resolution)
        k0 = max(1.0, np.floor(math.exp(a)) - 1.0)
        k1 = min(K, np.ceil(math.exp(b)) + 1.0)
        if k1 - k0 > 7.0:
            k0 = max(1.0, np.floor(math.exp(0.5 * (a + b))) - 3.0)
            k1 = min(K, k0 + 7.0)
        k = k0
        while k <= k1:
            n, v = _total_inner(f, theta, C, b1, 0.0, 0.0, 0.0, Dmax, lo, hi, k)
            if v < bv:
                bn, bk, bv = n, k, v
            k += 1.0
    else:
        p = np.array([C, b1, Dmax, lo, hi, n0, pp, q0])
        ks, ns, vs = _k_scan(f, theta, 1, p, 1.0, K, float(_TOTAL_FULL), float(_TOTAL_SMALL), _TOTAL_GEO)
        for i in range(ks.shape[0]):
            if vs[i] < bv:
                bn, bk, bv = ns[i], ks[i], vs[i]
    if not bv < np.inf:
        return np.nan, np.nan, np.nan, np.nan
    return bn, min(ds_.total_D(C, b1, n0, pp, q0, bn, bk), Dmax), bk, bv


@numba.njit(**_JIT)
def total_optimum_loss(theta, C, T, Q, Dmax, lo, maxN, kmax):
    """Total-budget optimum of the loss law, exact inner solve over N -> (N, D, k, loss)."""
    return _total_search(None, theta, C, T, Q, Dmax, lo, maxN, kmax)


# ----------------------------------------------------------------------------------------------------------
# Sweep over draws x budgets
# ----------------------------------------------------------------------------------------------------------


def _sweep(f, exact, thetas, budgets, chinchilla, Dmax, lo, maxN, kmax, out):
    """Fill out[6, P, B] (rows: OUTPUTS) for every draw (row of thetas) and budget (row of budgets).

    budgets[j] = (kind 0 split / 1 total, C_train or C, C_inf or Q, t, n0, p, q0) with the query cost terms
    of `designs.query_terms`; chinchilla[j] = (N, D, k). The exact loss path needs a query costing s N k
    (n0 = p = q0 = 0: its segment ends and first-order conditions are written for that, s = 2t); otherwise the
    generic search runs on the same objective.
    """
    P = thetas.shape[0]
    nb = budgets.shape[0]
    for idx in numba.prange(P * nb):
        i = idx // nb
        j = idx - i * nb
        theta = thetas[i]
        kind, c1, c2, t = budgets[j, 0], budgets[j, 1], budgets[j, 2], budgets[j, 3]
        n0, pp, q0 = budgets[j, 4], budgets[j, 5], budgets[j, 6]
        plain = exact and n0 == 0.0 and pp == 0.0 and q0 == 0.0
        if kind == 0.0:
            if plain:
                n, d, k, v = _split_loss(theta, c1, c2 / (2.0 * t), Dmax, lo, maxN, kmax)
            else:
                n, d, k, v = _split_search_q(f, theta, c1, c2 / (2.0 * t), n0, pp, q0, Dmax, lo, maxN, kmax)
        else:
            if plain:
                n, d, k, v = _total_search_q(None, theta, c1, 2.0 * t * c2, 0.0, 0.0, 0.0, Dmax, lo, maxN, kmax)
            else:
                n, d, k, v = _total_search_q(f, theta, c1, 2.0 * t * c2, n0, pp, q0, Dmax, lo, maxN, kmax)
        out[0, i, j] = n
        out[1, i, j] = d
        out[2, i, j] = k
        out[3, i, j] = v
        cn, cd, ck = chinchilla[j, 0], chinchilla[j, 1], chinchilla[j, 2]
        if exact:
            at_k1 = loss_law_nb(theta[0], theta[1], theta[2], theta[3], theta[4], theta[5], theta[6], cn, cd, 1.0)
            out[4, i, j] = at_k1 if ck == 1.0 else at_k1 - theta[5] + theta[5] * ck ** (-theta[6])
            out[5, i, j] = at_k1
        else:
            out[4, i, j] = f(theta, cn, cd, ck)
            out[5, i, j] = f(theta, cn, cd, 1.0)


_SWEEP_SIGNATURE = types.void(OBJECTIVE_TYPE, types.boolean, types.float64[:, ::1], types.float64[:, ::1],
                              types.float64[:, ::1], types.float64, types.float64, types.float64, types.float64,
                              types.float64[:, :, ::1])
_sweep_kernel = None


def sweep_kernel():
    """The parallel sweep kernel (compiled, or loaded from the on-disk cache, on first use).

    kernel(objective, exact, thetas[P, ncoef], budgets[B, 7], chinchilla[B, 3],
           max_tokens, min_params, max_params, k_max, out[6, P, B]) with inf for "no constraint".
    """
    global _sweep_kernel
    if _sweep_kernel is None:
        _sweep_kernel = numba.njit(_SWEEP_SIGNATURE, parallel=True, **_JIT)(_sweep)
    return _sweep_kernel


_PROBLEM_SIGNATURE = types.UniTuple(types.float64, 4)(OBJECTIVE_TYPE, types.float64[::1], *([types.float64] * 7))
_PUBLIC_KERNELS = {
    # split_optimum(f, theta, C_train, C_inf, T, max_tokens, min_params, max_params, k_max) -> (N, D, k, value)
    "split_optimum": "_split_search",
    # total_optimum(f, theta, C, T, Q, max_tokens, min_params, max_params, k_max) -> (N, D, k, value)
    "total_optimum": "_total_search",
}


def __getattr__(name: str) -> Any:
    """`split_optimum` / `total_optimum`: the single-problem generic kernels, typed for first-class objective
    functions (so any njit objective can be passed from Python without recompiling); built on first use to
    keep the import light."""
    if name in _PUBLIC_KERNELS:
        kernel = numba.njit(_PROBLEM_SIGNATURE, **_JIT)(globals()[_PUBLIC_KERNELS[name]].py_func)
        globals()[name] = kernel
        return kernel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ----------------------------------------------------------------------------------------------------------
# Python API
# ----------------------------------------------------------------------------------------------------------


def budget_table(budgets: Sequence[Budget], constraints: Constraints = Constraints()) -> tuple[np.ndarray, np.ndarray]:
    """Kernel inputs for a list of budgets: (budgets[B, 7], chinchilla designs[B, 3]); checks feasibility.

    A Chinchilla design the budget cannot afford (`budget.chinchilla_baseline`) is a row of NaN, so its
    metrics come out NaN."""
    if len(budgets) == 0:
        raise InputError("at least one budget is required")
    table = np.empty((len(budgets), 7))
    chin = np.empty((len(budgets), 3))
    for j, bud in enumerate(budgets):
        check_feasible(bud, constraints)
        if isinstance(bud, SplitBudget):
            table[j] = (SPLIT, bud.train_flops, bud.inference_flops, *bud.query_terms())
        elif isinstance(bud, TotalBudget):
            table[j] = (TOTAL, bud.total_flops, bud.queries, *bud.query_terms())
        else:
            raise InputError(f"unknown budget type {type(bud).__name__}")
        chin[j] = chinchilla_design(bud, constraints)
    return table, chin


def _resolve_objective(objective: Any, theta_names: Sequence[str], method: str) -> tuple[Any, bool]:
    is_loss = objective is loss_law_nb or objective is loss_objective_nb
    if is_loss:
        if tuple(theta_names) != LOSS_COEFFICIENTS:
            raise ValueError(f"the loss objective needs theta_names = {LOSS_COEFFICIENTS}")
        objective = loss_objective_nb
    if method not in ("auto", "exact", "search"):
        raise ValueError(f"method must be 'auto', 'exact' or 'search', got {method!r}")
    if method == "exact" and not is_loss:
        raise ValueError("method='exact' is only available for the loss law")
    return objective, (is_loss and method != "search")


def optimize_array(thetas: np.ndarray, budgets: Sequence[Budget], constraints: Constraints = Constraints(),
                   objective: Any = loss_law_nb, theta_names: Sequence[str] = LOSS_COEFFICIENTS,
                   method: str = "auto") -> np.ndarray:
    """Optimum for every row of thetas[P, ncoef] and every budget -> array[6, P, B] with rows `OUTPUTS`."""
    objective, exact = _resolve_objective(objective, theta_names, method)
    thetas = np.ascontiguousarray(thetas, dtype=np.float64)
    if thetas.ndim != 2 or thetas.shape[1] != len(theta_names):
        raise ValueError(f"thetas must have shape (P, {len(theta_names)}), got {thetas.shape}")
    table, chin = budget_table(budgets, constraints)
    return _run(objective, exact, thetas, table, chin, constraints)


def _valid_rows(thetas: np.ndarray, exact: bool) -> np.ndarray:
    """Draws the kernels can take: finite, and for the loss law A, alpha, B, beta, gamma > 0 and G >= 0."""
    ok = np.all(np.isfinite(thetas), axis=1)
    if exact:
        ok &= np.all(thetas[:, [1, 2, 3, 4, 6]] > 0, axis=1) & (thetas[:, 5] >= 0)
    return ok


def _run(objective: Any, exact: bool, thetas: np.ndarray, table: np.ndarray, chin: np.ndarray,
         constraints: Constraints) -> np.ndarray:
    """The sweep on thetas[P, ncoef] -> out[6, P, B]; draws the law does not define (non-finite or
    out-of-domain coefficients) give NaN rather than reaching the kernel."""
    out = np.full((len(OUTPUTS), thetas.shape[0], table.shape[0]), np.nan)
    ok = _valid_rows(thetas, exact)
    if ok.any():
        good = thetas if ok.all() else np.ascontiguousarray(thetas[ok])
        res = out if ok.all() else np.empty((len(OUTPUTS), good.shape[0], table.shape[0]))
        sweep_kernel()(objective, exact, good, table, chin, constraints.max_tokens_f, constraints.min_params_f,
                       constraints.max_params_f, constraints.k_max_f, res)
        if not ok.all():
            out[:, ok, :] = res
    return out


def _budget_coords(budgets: Sequence[Budget]) -> dict[str, Any]:
    def col(name: str) -> np.ndarray:
        return np.array([float(getattr(b, name, np.nan)) for b in budgets])

    return {
        "budget": np.arange(len(budgets)),
        "kind": ("budget", np.array([b.kind for b in budgets])),
        "label": ("budget", np.array([b.label() for b in budgets])),
        "train_flops": ("budget", col("train_flops")),
        "inference_flops": ("budget", col("inference_flops")),
        "total_flops": ("budget", col("total_flops")),
        "queries": ("budget", col("queries")),
        "tokens_per_sample": ("budget", col("tokens_per_sample")),
        # what a query costs (budget._Serving); prices NaN without a cost file
        **{name: ("budget", np.array([getattr(b, name) for b in budgets])) for name in SERVING_DEFAULTS},
        **{f"{name}_price": ("budget", np.array([getattr(b.prices, name) if b.prices is not None else np.nan
                                                 for b in budgets])) for name in ("train", "prefill", "decode")},
    }


def optimize_posterior(coefficients: xr.Dataset, budgets: Sequence[Budget],
                       constraints: Constraints = Constraints(), objective: Any = loss_law_nb,
                       theta_names: Sequence[str] = LOSS_COEFFICIENTS, method: str = "auto") -> xr.Dataset:
    """Compute-optimal (N*, D*, k*) for every posterior draw, task and budget.

    coefficients: Dataset with one variable per name in `theta_names` (sample dims such as chain, draw,
    task; variables are broadcast against each other; dask-chunked input stays lazy).
    objective: a numba function objective(theta, N, D, k) -> float to minimise, of type `OBJECTIVE_TYPE`;
    the loss law `loss_law_nb` (default) is mapped to `loss_objective_nb`.
    method: "auto" (exact path for the loss law, search otherwise), "exact" or "search".

    Returns a Dataset with dims (*sample dims, budget): N, D, k, tokens_per_param, metric (objective at the
    optimum), chinchilla_metric and chinchilla_metric_k1 (objective at the Chinchilla design, and at its N, D
    with k = 1; NaN where that design is infeasible), plus chinchilla_N, chinchilla_D, chinchilla_k and
    chinchilla_feasible with dim budget alone (the baseline does not depend on the draw). Non-dim coords on budget describe each budget (NaN where not applicable); the
    constraints are in attrs.
    """
    objective, exact = _resolve_objective(objective, theta_names, method)
    missing = [n for n in theta_names if n not in coefficients.data_vars]
    if missing:
        raise InputError(f"posterior coefficients are missing {', '.join(missing)}")
    budgets = list(budgets)
    table, chin = budget_table(budgets, constraints)
    nb = len(budgets)
    stacked = coefficients[list(theta_names)].to_dataarray("coefficient").astype(np.float64)
    if stacked.chunks is not None:
        stacked = stacked.chunk({"coefficient": -1})
    sweep_kernel()  # compile (or load) before any dask worker needs it

    def run(theta: np.ndarray) -> tuple[np.ndarray, ...]:
        shape = theta.shape[:-1]
        flat = np.ascontiguousarray(theta.reshape(-1, theta.shape[-1]), dtype=np.float64)
        out = _run(objective, exact, flat, table, chin, constraints)
        return tuple(out[m].reshape(shape + (nb,)) for m in range(len(OUTPUTS)))

    results = xr.apply_ufunc(
        run, stacked,
        input_core_dims=[["coefficient"]],
        output_core_dims=[["budget"]] * len(OUTPUTS),
        dask="parallelized",
        output_dtypes=[np.float64] * len(OUTPUTS),
        dask_gufunc_kwargs={"output_sizes": {"budget": nb}},
    )
    ds = xr.Dataset({name: res for name, res in zip(OUTPUTS, results)})
    ds = ds.assign_coords(_budget_coords(budgets))
    ds["tokens_per_param"] = ds["D"] / ds["N"]
    ds["chinchilla_N"] = ("budget", chin[:, 0])
    ds["chinchilla_D"] = ("budget", chin[:, 1])
    ds["chinchilla_k"] = ("budget", chin[:, 2])
    ds["chinchilla_feasible"] = ("budget", np.isfinite(chin[:, 0]))
    order = ["N", "D", "k", "tokens_per_param", "metric", "chinchilla_N", "chinchilla_D", "chinchilla_k",
             "chinchilla_feasible", "chinchilla_metric", "chinchilla_metric_k1"]
    ds = ds[order]
    ds.attrs = {
        "constraints": constraints.to_json(),
        "max_tokens": constraints.max_tokens_f,
        "max_params": constraints.max_params_f,
        "k_max": constraints.k_max_f,
        "min_params": constraints.min_params_f,
        "budgets": json.dumps([b.as_dict() for b in budgets]),
        "objective": getattr(getattr(objective, "py_func", objective), "__name__", str(objective)),
        "method": "exact" if exact else "search",
    }
    return ds


# ----------------------------------------------------------------------------------------------------------
# The law's discrepancy beyond the data, inherited by the optimizer (the "bend")
# ----------------------------------------------------------------------------------------------------------
#
# A fit whose spec carries a discrepancy scale s > 0 (routes/extrapolation.py: sd per e-fold beyond the
# fitted data's range, of log loss on the loss route and of the logit of the mean success mu on the accuracy
# route) predicts a new checkpoint with an extra error s * z * efolds(N, D) on that scale. The optimizer
# inherits it: per posterior draw one standard normal z (seeded, the same for every task, budget and design:
# common random numbers) bends that draw's law beyond the data,
#     loss:      objective(N, D, k) = law(N, D, k) * exp(z * s * efolds(N, D))   (log loss + z s efolds),
#     accuracy:  logit mu(N, D) + z * s * efolds(N, D) inside log(1 - pass@k)     (`neg_pass_at_k_bent_nb`),
# so N*, D*, k* and the metric carry the law's own uncertainty beyond the data. The bend rides in theta right
# after the law's coefficients: [law coefficients..., z*s, then (min, max) of log N, log D, log 6ND and log D/N]
# (`RANGE_AXES` order). `bent_objective` bends a loss-like objective multiplicatively; a route whose bend acts
# inside its law names its own (`objective_bent_nb`); `route_bent_objective` picks. With repeated data
# (`bayes_t2.repetition`) the bent law is what the data-constrained law evaluates at the effective design
# (N', D'): theta = [law..., bend..., repetition numbers...] and the distance is that of (N', D'), as in `predict`.

#: theta entries appended to a route's coefficients by the bend (posterior-view variables of `bent_fit`)
BEND_NAMES: tuple[str, ...] = ("discrepancy_bend",) + tuple(f"range_{axis}_{end}" for axis in RANGE_AXES
                                                              for end in ("min", "max"))
#: stream of the bend's z, kept apart from the checkpoint effects drawn with the same seed
_BEND_STREAM = 0xD15C

_wrapped_objectives: dict[tuple[str, int, int], tuple[Any, Any]] = {}


def wrapped_objective(kind: str, base: Any, n: int, build: Any) -> Any:
    """`build(base, n)`, a numba objective wrapping the objective `base` of a route's n coefficients (the bend,
    or the repetition's effective design), compiled once per (kind, base, n) and process. numba compiles a
    closure anew for each call, so the wrappers are kept here; `base` is kept alive with them (its id is in
    the key)."""
    key = (kind, id(base), int(n))
    if key not in _wrapped_objectives:
        _wrapped_objectives[key] = (base, build(base, int(n)))
    return _wrapped_objectives[key][1]


def bent_objective(base: Any, at: int) -> Any:
    """The optimizer objective f(theta, N, D, k) = base(theta[:at], N, D, k) * exp(z s x(N, D)) of any route's
    objective `base` (an `OBJECTIVE_TYPE` function of the route's `at` coefficients), with the bend in
    theta[at:at + 9] (`BEND_NAMES`: z*s, then the data's range) and x the e-folds (N, D) lies beyond it
    (`routes.extrapolation.extrapolation_efolds_nb`). z*s = 0 returns base's value itself (not times exp(0)), so an
    unbent draw scores exactly as the route's own objective."""
    return wrapped_objective("bend", base, at, _build_bent_objective)


def _build_bent_objective(base: Any, n: int) -> Any:
    @numba.njit(OBJECTIVE_SIGNATURE, nogil=True, fastmath=False, error_model="numpy")
    def objective(theta, N, D, k):
        value = base(theta[:n], N, D, k)
        bend = theta[n]
        if bend == 0.0:
            return value
        return value * math.exp(bend * extrapolation_efolds_nb(theta, n + 1, N, D))

    return objective


def discrepancy_z(seed: int, chains: int, draws: int) -> np.ndarray:
    """The bend's standard normal z per posterior draw, shape (chains, draws): seeded, on its own stream."""
    return np.random.default_rng([int(seed), _BEND_STREAM]).standard_normal((chains, draws))


class BentRoute:
    """A route whose law carries the discrepancy: its objective and metric are bent by the draw's
    `discrepancy_bend` (z * scale) beyond the data range in its coefficients; everything else is the route's.

    `zero=True`: the same view with z = 0 (the law alone, no discrepancy anywhere: the metric of a new run
    then has no random discrepancy either), for the share of interval width the discrepancy makes."""

    def __init__(self, route: Any, zero: bool = False) -> None:
        self.bent_from = route
        self.zero = zero
        if not zero:
            self.coefficient_names = tuple(route.coefficient_names) + BEND_NAMES
            self.objective_nb = route_bent_objective(route)

    def __getattr__(self, name: str) -> Any:  # name, metric_name, lower_is_better, noise_names, ...
        if name.startswith("__") or name == "bent_from":
            raise AttributeError(name)
        return getattr(self.bent_from, name)

    def metric(self, coefficients: xr.Dataset, N: Any, D: Any, k: Any, *, rng: Any = None,
               spec: dict[str, Any] | None = None) -> Any:
        """The route's metric without its random discrepancy, with the draw's bend on the discrepancy's scale
        (log loss, logit mu) instead (z = 0: none)."""
        spec0 = with_discrepancy(dict(spec or {}), 0.0)
        base = [n for n in coefficients.data_vars if n not in BEND_NAMES]
        c = coefficients[base]
        route = self.bent_from
        bend = 0.0
        if not self.zero and "discrepancy_bend" in coefficients:
            bend = coefficients["discrepancy_bend"] * bend_efolds(coefficients, N, D)
        if rng is None:
            return route.metric(c, N, D, k, bend=bend)
        return route.metric(c, N, D, k, rng=rng, spec=spec0, bend=bend)


def route_bent_objective(route: Any) -> Any:
    """The numba objective of a route's law bent beyond the data: the route's own `objective_bent_nb` when its
    bend acts inside the law (accuracy: on logit mu), `bent_objective` of its objective for the loss law (a
    factor on the loss); None for a route without one, or one bent already or wrapped (repeated data: its law
    is bent, `bend_route`)."""
    if route is None or "bent_from" in getattr(route, "__dict__", {}) or hasattr(route, "base"):
        return None
    own = getattr(route, "objective_bent_nb", None)
    if own is not None:
        return own
    if getattr(route, "metric_name", None) == "loss":  # the loss law, plain or at effective tokens (warm-up)
        objective, _ = _resolve_objective(route.objective_nb, route.coefficient_names, "search")
        return bent_objective(objective, len(route.coefficient_names))
    return None


def bend_efolds(coefficients: xr.Dataset, N: Any, D: Any) -> Any:
    """`extrapolation_efolds` of (N, D) for the range carried in a bent view's coefficients."""
    from .routes.loss import extrapolation_efolds

    bounds = np.array([[float(np.ravel(coefficients[f"range_{axis}_{end}"].values)[0]) for end in ("min", "max")]
                       for axis in RANGE_AXES])
    return extrapolation_efolds(bounds, N, D)


def bend_scale(fit: Any) -> Any:
    """The discrepancy scale the optimizer inherits from a fit (or its repeated-data view): the spec's -- a
    DataArray over the fit's tasks when they have scales of their own (`discrepancy_scales`), else one float
    -- when the fit kept its data range and its law has a bent objective (loss, accuracy), else 0."""
    from .repetition import RepeatedRoute
    from .routes.extrapolation import discrepancy_scales

    base = getattr(fit, "unbent", fit)
    post = getattr(base, "posterior", {})
    if "data_log_range" not in post:
        return 0.0
    scale = discrepancy_scales(getattr(base, "spec", None), post)
    if not np.any(np.asarray(scale) > 0):
        return 0.0  # decided before asking for the bent objective, which compiles it
    route = getattr(base, "route", None)
    law = route.base if isinstance(route, RepeatedRoute) else route  # the law a repeated view evaluates
    return scale if route_bent_objective(law) is not None else 0.0


def bend_route(route: Any, zero: bool = False) -> Any:
    """`route` with its law bent (`BentRoute`). A repeated-data route (`repetition.RepeatedRoute`) keeps the
    repetition outside: the data-constrained law evaluates the bent law at the effective design (N', D'), so
    the bend's distance is that of (N', D') -- as `predict` draws the discrepancy of a point with unique
    tokens (`RepeatedRoute.metric` hands (N', D') to the loss route's metric). theta is then
    [law..., `BEND_NAMES`..., `repetition.REPEAT_NAMES`...]."""
    from .repetition import RepeatedRoute

    if isinstance(route, RepeatedRoute):
        return RepeatedRoute(BentRoute(route.base, zero=zero))
    return BentRoute(route, zero=zero)


def bent_fit(fit: Any, seed: int = 0, zero: bool = False) -> Any:
    """A view of `fit` (or of its repeated-data view) whose law inherits the discrepancy (`bend_route`; z from
    `discrepancy_z(seed)`, the same per draw with or without repeated data), or `fit` itself when it has none
    (scale 0: every number as without the bend). A bent view stays bent (same z) when asked again; `zero=True`
    gives the z = 0 view of the same fit."""
    import copy

    base = getattr(fit, "unbent", fit)
    scale = bend_scale(base)
    if not np.any(np.asarray(scale) > 0):  # no task's law is bent
        return base
    if getattr(fit, "bend_seed", None) == seed and getattr(fit.route, "zero", None) == zero:
        return fit
    post = base.posterior
    shape = (post.sizes["chain"], post.sizes["draw"])
    extra = {}
    if not zero:
        lr = post["data_log_range"].isel(chain=0, draw=0)
        z = xr.DataArray(discrepancy_z(seed, *shape), dims=("chain", "draw"),
                         coords={d: post[d] for d in ("chain", "draw")})
        extra["discrepancy_bend"] = z * scale  # (chain, draw), or (chain, draw, task) per task
        kept = [str(a) for a in lr["range_axis"].values]
        for axis in RANGE_AXES:  # a fit saved before an axis existed: that axis never counts (an open range)
            for end, open_end in (("min", -np.inf), ("max", np.inf)):
                value = float(lr.sel(range_axis=axis, range_end=end)) if axis in kept else open_end
                extra[f"range_{axis}_{end}"] = xr.full_like(extra["discrepancy_bend"], value)
    tree = base.tree.copy()
    tree["posterior"] = xr.DataTree(post.assign(extra))
    view = copy.copy(base)
    view.tree = tree
    view.route = bend_route(base.route, zero=zero)
    view.unbent = base
    view.bend_seed = seed
    return view


#: per-draw quantities `add_extrapolation` also solves with z = 0 (suffix `_no_discrepancy`)
NO_DISCREPANCY = ("N", "D", "k", "tokens_per_param", "metric")


def extrapolation_distances(log_range: Any, N: Any, D: Any) -> dict[str, Any]:
    """How far (N, D) lies beyond the fitted data: decades outside the data's range in params, tokens and
    compute 6ND (each alone, either side; 0 inside), and `efolds`, the discrepancy's own distance
    (`extrapolation_efolds`: the farthest of the three, in e-folds)."""
    from .routes.extrapolation import RANGE_AXES, extrapolation_efolds_by_axis

    by_axis = extrapolation_efolds_by_axis(np.asarray(log_range, dtype=float), N, D)
    out = {"efolds": functools.reduce(np.maximum, by_axis)}
    for axis, efolds in zip(RANGE_AXES, by_axis):  # a fit saved with fewer axes: those it has
        out[axis] = efolds / math.log(10.0)
    return out


def add_extrapolation(fit: Any, opt: xr.Dataset, budgets: Sequence[Budget], constraints: Constraints, *,
                      law: bool = False, seed: int = 0) -> xr.Dataset:
    """`opt` (Fit.optimize's result for `fit`, bent or not, repeated-data view or not) plus where its optimum
    lies relative to the data and what the discrepancy does to it:

    * `extrapolation_params`, `extrapolation_tokens`, `extrapolation_compute` (decades beyond the data's
      range) and `extrapolation_efolds` (the discrepancy's distance), per draw, at each draw's optimum -- for a
      repeated-data view at the design the law sees, each draw's effective (N', D') (attrs
      `extrapolation_design` = "effective"), the distance the bend grows with (`bend_route`);
    * with a bend (`bent_fit`), the optimum of the same draws with z = 0 (same seed, same checkpoint effects,
      same repetition numbers): `<name>_no_discrepancy` for `NO_DISCREPANCY`; `summary.discrepancy_shares`
      turns the two into the share of each interval's width that the discrepancy makes (docs/decisions.md).
    Without the fitted data's range (a hand-made posterior) `opt` is returned unchanged."""
    from .baselines import add_decision_quantities
    from .fit import route_optimum
    from .repetition import REPEAT_NAMES, effective_design, is_repeated

    base = getattr(fit, "unbent", fit)
    if "data_log_range" not in base.posterior:
        return opt
    lr = base.posterior["data_log_range"].isel(chain=0, draw=0).transpose("range_axis", "range_end").values
    N, D = opt["N"], opt["D"]
    if is_repeated(base):  # the law is evaluated (and bent) at the effective design
        N, D = effective_design(base.posterior[list(REPEAT_NAMES)], N, D)
    dist = extrapolation_distances(lr, N, D)
    out = opt.copy()
    for name, value in dist.items():
        out[f"extrapolation_{name}"] = value.transpose(*opt["N"].dims)
    if is_repeated(base):
        out.attrs["extrapolation_design"] = "effective"
    scale = bend_scale(base)
    if isinstance(scale, xr.DataArray):  # a scale per task; "discrepancy_scale" is the tasks' population's
        from .routes.extrapolation import discrepancy_scale

        out.attrs["discrepancy_scale"] = discrepancy_scale(base.spec)
        out.attrs["discrepancy_scale_by_task"] = json.dumps(
            {str(t): float(v) for t, v in zip(scale["task"].values, scale.values)}, sort_keys=True)
    else:
        out.attrs["discrepancy_scale"] = float(scale)
    if fit is not base:  # bent: the same draws with z = 0
        zero = bent_fit(base, seed, zero=True)
        opt0 = route_optimum(zero.route, zero.coefficients(), budgets, constraints)
        opt0 = add_decision_quantities(zero, opt0, list(budgets), constraints, law=law, seed=seed)
        for name in NO_DISCREPANCY:
            out[f"{name}_no_discrepancy"] = opt0[name].transpose(*opt[name].dims)
        out.attrs["discrepancy_seed"] = int(seed)
    return out
