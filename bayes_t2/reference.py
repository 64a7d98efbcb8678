"""An independent reference solver for the per-draw optimum: dense grids + scipy polish, numpy only.

This is the "truth" the optimizer (bayes_t2/optimum.py) is tested against, and the solver calibration and the
simulators' filters take a simulation's true optimum from. It shares no code with the optimizer: it does not
import optimum.py or decide.py, and it evaluates the objective through the routes' numpy metric code (the loss
law `laws.loss_law`; the accuracy route's `accuracy_shapes` and `passk.log1m_beta_pass_at_k`), never through
the numba objective the optimizer minimises. It is slow (milliseconds to seconds per draw) and simple:

* split budget (D = min(C_train/(6N), max_tokens), k = min(k_max, the most samples whose query fits C_inf),
  N in [lo, hi]): every constant-k segment end (the largest N affording k) at its k, the data wall, and a
  dense log grid in N (each point at the k it affords); then `scipy.optimize.minimize_scalar(method=
  "bounded")` in log N over the cells of the best grid points (between their grid neighbours, inside their own
  constant-k segment, ends included).
* total budget (6ND + Q query(N, k) <= C): every integer k (a dense geometric set when there are very many),
  each on a coarse grid over N (log-spaced in N and in D); around the best local minima of that profile, every
  nearby integer k on a dense grid in N, then bounded polish of the best cells.

What a query costs is written here again, on its own (`_query_lines`), not taken from `designs.py`: 2NkT with
the paper's convention; with a prompt of P tokens, T-token samples and an attention term of F FLOPs per token
per token of context, the prompt's tokens attend to 1..P tokens and a sample's to P+1..P+T, and the prompt is
paid once per query (KV cache) or once per sample (no KV cache), at the budget's prefill / decode weights.

Designs are scored by the objective the optimizer minimises (loss, or log(1 - pass@k)), and the design with
the lowest value is returned with its value.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import xarray as xr
from scipy.optimize import minimize_scalar

from .budget import Budget, Constraints, SplitBudget, TotalBudget
from .laws import LOSS_COEFFICIENTS, WARMUP_N_REF, loss_law

__all__ = ["Objective", "numpy_objective", "reference_optimum", "reference_optimum_of", "reference_route_optimum"]

#: objective(theta[P, ncoef], N[P, M], D[P, M], k[P, M]) -> values[P, M] to minimise
Objective = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]

SPLIT_GRID = 2000      # log grid points in N (split)
FULL_K = 10000         # every integer k up to this many; beyond, the first half of them and a geometric set
TOTAL_COARSE = 64      # N points per k in the total budget's coarse profile (half log N, half log D)
TOTAL_DENSE = 300      # N points per k where the total budget's profile is refined
TOTAL_NEIGHBOURS = 3   # integers each side of a profile minimum refined (plus 2% of k)
POLISH = 3             # best cells polished per draw
XATOL = 1e-11          # bounded polish tolerance in log N
_CHUNK = 2_000_000     # objective evaluations per vectorised call (memory)


def _loss_objective(theta: np.ndarray, N: np.ndarray, D: np.ndarray, k: np.ndarray) -> np.ndarray:
    c = [theta[:, j, None] for j in range(7)]
    return loss_law(*c, N, D, k)


#: what a bend (the optimizer's `BentRoute`) appends to a law's theta: z * scale and the fitted data's range as
#: (min, max) of log N, log D, log 6ND and log D/N; the loss law bent beyond the data has theta `BENT_LOSS_THETA`
BEND_COLUMNS: tuple[str, ...] = (
    "discrepancy_bend", "range_params_min", "range_params_max", "range_tokens_min", "range_tokens_max",
    "range_compute_min", "range_compute_max", "range_tokens_per_param_min", "range_tokens_per_param_max")
BENT_LOSS_THETA: tuple[str, ...] = LOSS_COEFFICIENTS + BEND_COLUMNS


def _beyond(theta: np.ndarray, at: int, N: np.ndarray, D: np.ndarray) -> np.ndarray:
    """The e-folds (N, D) lies outside the data's range in log N, log D, log 6ND or log D/N (the farthest; 0
    inside), the range as (min, max) pairs in theta[:, at:at + 8]: written here on its own, not taken from
    routes/extrapolation.py or optimum.py."""
    x = np.zeros(np.broadcast(N, D).shape)
    for i, value in enumerate((np.log(N), np.log(D), np.log(6.0 * N * D), np.log(D / N))):
        lo, hi = theta[:, at + 2 * i, None], theta[:, at + 1 + 2 * i, None]
        x = np.maximum(x, np.maximum(value - hi, lo - value))
    return x


def _bent_objective(f: Objective, n: int) -> Objective:
    """f times exp(z s x) (a loss law bent beyond the data): theta[:, :n] f's coefficients, theta[:, n] = z * s,
    theta[:, n+1:n+9] the data's range; x the e-folds beyond it (`_beyond`)."""
    def g(theta: np.ndarray, N: np.ndarray, D: np.ndarray, k: np.ndarray) -> np.ndarray:
        return f(theta[:, :n], N, D, k) * np.exp(theta[:, n, None] * _beyond(theta, n + 1, N, D))
    return g


def _accuracy_objective(theta: np.ndarray, N: np.ndarray, D: np.ndarray, k: np.ndarray,
                        logit_shift: Any = 0.0) -> np.ndarray:
    """log(1 - pass@k) of the accuracy law, its (floored) logit mu shifted by `logit_shift` (0: the law)."""
    from .passk import log1m_beta_pass_at_k
    from .routes.accuracy import T2_COEFFICIENTS, accuracy_shapes

    coefs = {name: theta[:, j, None] for j, name in enumerate(T2_COEFFICIENTS)}
    a, b = accuracy_shapes(coefs, N, D, logit_shift=logit_shift)
    return np.asarray(log1m_beta_pass_at_k(a, b, np.asarray(k, dtype=float)), dtype=float)


def _bent_accuracy_objective(theta: np.ndarray, N: np.ndarray, D: np.ndarray, k: np.ndarray) -> np.ndarray:
    """The accuracy law whose logit mu is shifted by z s x, x the e-folds beyond the data (`_beyond`);
    theta = T2 coefficients, z s, range."""
    from .routes.accuracy import T2_COEFFICIENTS

    n = len(T2_COEFFICIENTS)
    return _accuracy_objective(theta, N, D, k, logit_shift=theta[:, n, None] * _beyond(theta, n + 1, N, D))


#: the repetition numbers a repeated route appends to theta (unique tokens U, R_D*, U_N, R_N*), in this order
REPEAT_COLUMNS = ("unique_tokens", "R_D_star", "U_N", "R_N_star")


def _repeated_amount(x: np.ndarray, unique: np.ndarray, r_star: np.ndarray) -> np.ndarray:
    """What x units (tokens or parameters) are worth when only `unique` of them are fresh: x itself up to
    `unique` (or with no limit, NaN); beyond it, unique + unique R* (1 - exp(-R/R*)) with R = x/unique - 1
    (Muennighoff et al. 2023), R* = inf meaning no decay and R* = 0 a hard cap at `unique`. Written here
    again, in its own numpy, so that the optimizer's version (bayes_t2.laws) is checked, not copied."""
    with np.errstate(all="ignore"):
        reps = x / unique - 1.0
        decayed = unique + unique * r_star * (1.0 - np.exp(-reps / r_star))
        value = np.where(np.isinf(r_star), x, np.where(r_star == 0.0, unique, decayed))
        return np.where(np.isnan(unique) | (x <= unique), x, value)


def _repeated_objective(f: Objective, n: int) -> Objective:
    """f at the effective design: theta[:, :n] the route's coefficients, theta[:, n:n+4] `REPEAT_COLUMNS`."""
    def g(theta: np.ndarray, N: np.ndarray, D: np.ndarray, k: np.ndarray) -> np.ndarray:
        U, rd, un, rn = (theta[:, n + j, None] for j in range(4))
        return f(theta[:, :n], _repeated_amount(N, un, rn), _repeated_amount(D, U, rd), k)
    return g


#: what the warm-up law appends to the loss law's theta: w, the warm-up tokens per parameter
WARMUP_COLUMNS = ("warmup",)


def _warmup_amount(D: np.ndarray, W: np.ndarray) -> np.ndarray:
    """Tokens at the peak learning rate that D tokens are worth when the rate rises linearly over the first W:
    the area under min(t/W, 1) from 0 to D, as the warm-up's part min(D, W)^2/(2W) plus the rest at the peak
    (W = 0: D). Written here again, in its own form, so that bayes_t2.laws' version is checked, not copied."""
    with np.errstate(all="ignore"):
        ramp = np.minimum(D, W) ** 2 / (2.0 * W)
        return np.where(W > 0, ramp + np.maximum(D - W, 0.0), D)


def _warmup_objective(f: Objective, n: int) -> Objective:
    """f at the tokens left after a warm-up of w N tokens: theta[:, :n] f's coefficients, theta[:, n] = w."""
    def g(theta: np.ndarray, N: np.ndarray, D: np.ndarray, k: np.ndarray) -> np.ndarray:
        return f(theta[:, :n], N, _warmup_amount(D, theta[:, n, None] * N), k)
    return g


#: what the power-warm-up law appends: w, then the exponent of the warm-up's growth with the size (w is the
#: warm-up tokens per parameter at laws.WARMUP_N_REF: a definition, not a formula, so it is imported)
WARMUP_POWER_COLUMNS = ("warmup", "warmup_exponent")


def _warmup_power_objective(f: Objective, n: int) -> Objective:
    """f at the tokens left after a warm-up of w n_ref (N/n_ref)^e tokens: theta[:, n] = w, theta[:, n+1] = e."""
    def g(theta: np.ndarray, N: np.ndarray, D: np.ndarray, k: np.ndarray) -> np.ndarray:
        W = theta[:, n, None] * np.exp(np.log(WARMUP_N_REF) + theta[:, n + 1, None] * np.log(N / WARMUP_N_REF))
        return f(theta[:, :n], N, _warmup_amount(D, W), k)
    return g


def numpy_objective(route: Any) -> tuple[Objective, tuple[str, ...]]:
    """(objective, theta names) of a route, through its numpy code: a name ("loss", "loss_warmup", "accuracy",
    "loss_bent", "loss_warmup_bent", "accuracy_bent", each optionally with "+repeated": "loss_bent+repeated" is
    the bent law at the effective design) or a route object (named by its `law_name`, else its `name`): a repeated route (`base` attribute) scores designs at the effective (N', D') of
    its base; a bent route (`bent_from` attribute, not `zero`) bends its route's law beyond the data (the loss
    by a factor, the accuracy law on logit mu)."""
    if not isinstance(route, str):
        own = vars(route) if hasattr(route, "__dict__") else {}
        if "base" in own:
            f, names = numpy_objective(route.base)
            return _repeated_objective(f, len(names)), names + REPEAT_COLUMNS
        if "bent_from" in own:
            if own.get("zero"):
                return numpy_objective(route.bent_from)
            return numpy_objective(f"{getattr(route.bent_from, 'law_name', route.bent_from.name)}_bent")
        route = getattr(route, "law_name", route.name)
    if route.endswith("+repeated"):
        f, names = numpy_objective(route.removesuffix("+repeated"))
        return _repeated_objective(f, len(names)), names + REPEAT_COLUMNS
    if route == "loss_bent":
        return _bent_objective(_loss_objective, len(LOSS_COEFFICIENTS)), BENT_LOSS_THETA
    if route in ("loss_warmup_power", "loss_warmup_power_bent"):
        f = _warmup_power_objective(_loss_objective, len(LOSS_COEFFICIENTS))
        names = LOSS_COEFFICIENTS + WARMUP_POWER_COLUMNS
        return (_bent_objective(f, len(names)), names + BEND_COLUMNS) if route.endswith("_bent") else (f, names)
    if route in ("loss_warmup", "loss_warmup_bent"):
        f, names = _warmup_objective(_loss_objective, len(LOSS_COEFFICIENTS)), LOSS_COEFFICIENTS + WARMUP_COLUMNS
        return (_bent_objective(f, len(names)), names + BEND_COLUMNS) if route.endswith("_bent") else (f, names)
    if route == "accuracy_bent":
        from .routes.accuracy import T2_COEFFICIENTS

        return _bent_accuracy_objective, tuple(T2_COEFFICIENTS) + BEND_COLUMNS
    if route == "loss":
        return _loss_objective, LOSS_COEFFICIENTS
    if route == "accuracy":
        from .routes.accuracy import T2_COEFFICIENTS

        return _accuracy_objective, tuple(T2_COEFFICIENTS)
    raise ValueError(f"no reference objective for route {route!r}")


def _eval(f: Objective, theta: np.ndarray, N: np.ndarray, D: np.ndarray, k: np.ndarray) -> np.ndarray:
    """f over [P, M] designs in chunks of rows; NaN (undefined) counts as +inf (never optimal)."""
    P, M = N.shape
    out = np.empty((P, M))
    step = max(1, _CHUNK // max(M, 1))
    for s in range(0, P, step):
        with np.errstate(all="ignore"):
            v = f(theta[s:s + step], N[s:s + step], D[s:s + step], k[s:s + step])
        out[s:s + step] = np.where(np.isnan(v), np.inf, v)
    return out


def _scalar(f: Objective, theta_row: np.ndarray, N: float, D: float, k: float) -> float:
    with np.errstate(all="ignore"):
        v = float(np.asarray(f(theta_row[None, :], np.array([[N]]), np.array([[D]]), np.array([[k]])))[0, 0])
    return math.inf if math.isnan(v) else v


def _int_ks(k0: float, k1: float, full: int = FULL_K) -> np.ndarray:
    """Every integer in [k0, k1], or (when there are more than `full`) the first full/2 and a geometric set."""
    k0, k1 = int(k0), int(k1)
    if k1 - k0 + 1 <= full:
        return np.arange(k0, k1 + 1, dtype=float)
    small = np.arange(k0, k0 + full // 2, dtype=float)
    geo = np.unique(np.round(np.geomspace(k0 + full // 2, k1, full // 2)))
    return np.unique(np.concatenate([small, geo, [float(k1)]]))


def _polish(fun: Callable[[float], float], a: float, b: float) -> tuple[float, float]:
    """Bounded minimisation of fun(u), u = log N, over N in [a, b], ends included -> (N, value). An end that
    wins is returned exactly as given (no exp(log N) round trip: segment ends are exact designs)."""
    best = min(((a, fun(math.log(a))), (b, fun(math.log(b)))), key=lambda t: t[1])
    if b > a:
        r = minimize_scalar(fun, bounds=(math.log(a), math.log(b)), method="bounded",
                            options={"xatol": XATOL, "maxiter": 500})
        if r.fun < best[1]:
            best = (min(max(math.exp(float(r.x)), a), b), float(r.fun))
    return best


def _query_lines(bud: Budget) -> tuple[float, float, float, float]:
    """(a0, a1, b0, b1): one query of k samples from N parameters costs (a0 + a1 N) + k (b0 + b1 N) in the
    budget's units: what is paid once per query plus what each sample pays, both linear in N."""
    P, T, F = bud.prompt_tokens, bud.tokens_per_sample, bud.context_flops
    attended_prompt = P * (1.0 + P) / 2.0               # tokens 1..P of context over the prompt's positions
    attended_sample = T * ((P + 1.0) + (P + T)) / 2.0   # P+1..P+T over one sample's positions
    prompt = (bud.prefill_weight * F * attended_prompt, bud.prefill_weight * 2.0 * P)
    sample = (bud.decode_weight * F * attended_sample, bud.decode_weight * 2.0 * T)
    if bud.kv_cache:
        return prompt[0], prompt[1], sample[0], sample[1]
    return 0.0, 0.0, prompt[0] + sample[0], prompt[1] + sample[1]


def _split(f: Objective, theta: np.ndarray, bud: SplitBudget, con: Constraints) -> np.ndarray:
    P = theta.shape[0]
    res = np.full((P, 4), np.nan)
    Ct, Ci = bud.train_flops, bud.inference_flops
    a0, a1, b0, b1 = _query_lines(bud)

    def end(k: Any) -> Any:
        """Largest N whose query of k samples fits C_inf."""
        return (Ci - a0 - k * b0) / (a1 + k * b1)

    lo, hi = con.min_params, min(con.max_params_f, end(1.0))
    Dmax, kmax = con.max_tokens_f, con.k_max_f
    if not lo <= hi:
        return res

    def k_of(N: np.ndarray) -> np.ndarray:
        return np.maximum(1.0, np.minimum(kmax, np.floor((Ci - a0 - a1 * N) / (b0 + b1 * N))))

    kmin, K = float(k_of(np.array(hi))), float(k_of(np.array(lo)))
    ks = _int_ks(kmin, K)
    grid = np.geomspace(lo, hi, SPLIT_GRID) if hi > lo else np.array([lo])
    extra = [lo, hi] + ([Ct / (6.0 * Dmax)] if lo < Ct / (6.0 * Dmax) < hi else [])
    pts = np.concatenate([grid, extra, np.minimum(hi, end(ks))])
    pk = np.concatenate([k_of(grid), k_of(np.array(extra)), ks])
    order = np.lexsort((pk, pts))
    pts, pk = pts[order], pk[order]
    keep = np.ones(pts.size, bool)
    keep[1:] = (pts[1:] != pts[:-1]) | (pk[1:] != pk[:-1])
    pts, pk = pts[keep], pk[keep]
    D = np.minimum(Ct / (6.0 * pts), Dmax)
    M = pts.size
    vals = _eval(f, theta, np.broadcast_to(pts, (P, M)), np.broadcast_to(D, (P, M)), np.broadcast_to(pk, (P, M)))
    for i in range(P):
        best = (math.inf, math.nan, math.nan)
        for j in np.argsort(vals[i], kind="stable")[:POLISH]:
            if not np.isfinite(vals[i, j]):
                continue
            k = pk[j]
            seg_lo = lo if k >= kmax else max(lo, end(k + 1.0))
            seg_hi = min(hi, end(k))
            a = max(pts[j - 1] if j > 0 else lo, seg_lo)
            b = min(pts[j + 1] if j < M - 1 else hi, seg_hi)
            a, b = min(a, pts[j]), max(b, pts[j])

            def fun(u: float, k: float = k) -> float:
                N = math.exp(u)
                return _scalar(f, theta[i], N, min(Ct / (6.0 * N), Dmax), k)

            N, v = _polish(fun, a, b)
            if vals[i, j] < v:
                N, v = pts[j], vals[i, j]
            if v < best[0]:
                best = (v, N, k)
        v, N, k = best
        if np.isfinite(v):
            res[i] = (N, min(Ct / (6.0 * N), Dmax), k, v)
    return res


def _total_grid(left: float, slope: float, lo: float, nhi: float, Dmax: float, m: int) -> np.ndarray:
    """N points for fixed k, where training gets D = (left - slope N) / (6N): half log-spaced in N over
    [lo, nhi], half log-spaced in D (dense where training gets a small share), plus the data wall."""
    half = m // 2
    gN = np.geomspace(lo, nhi, half)
    dlo, dhi = max((left / nhi - slope) / 6.0, 1e-300), (left / lo - slope) / 6.0
    if dhi > 0:
        gD = np.geomspace(max(dlo, dhi * 1e-12), dhi, half)
        gN = np.concatenate([gN, left / (6.0 * gD + slope)])
    wall = left / (6.0 * Dmax + slope)
    if lo < wall < nhi:
        gN = np.append(gN, wall)
    return np.unique(np.clip(gN, lo, nhi))


def _total(f: Objective, theta: np.ndarray, bud: TotalBudget, con: Constraints) -> np.ndarray:
    P = theta.shape[0]
    res = np.full((P, 4), np.nan)
    C, Q = bud.total_flops, bud.queries
    a0, a1, b0, b1 = _query_lines(bud)

    def split_k(k: float) -> tuple[float, float]:
        """At k samples 6ND = left - slope N: what the queries leave for training."""
        return C - Q * (a0 + k * b0), Q * (a1 + k * b1)

    def d_of(N: Any, k: float) -> Any:
        left, slope = split_k(k)
        return (left / N - slope) / 6.0

    lo, hi = con.min_params, min(con.max_params_f, split_k(1.0)[0] / split_k(1.0)[1])
    Dmax, kmax = con.max_tokens_f, con.k_max_f
    if not lo < hi:
        return res
    # largest k leaving D > 0 at N = lo: C - Q (a0 + a1 lo) > k Q (b0 + b1 lo)
    K = max(1.0, min(kmax, math.ceil((C - Q * (a0 + a1 * lo)) / (Q * (b0 + b1 * lo))) - 1.0))

    def designs(k: float, m: int) -> tuple[np.ndarray, np.ndarray]:
        left, slope = split_k(k)
        nhi = min(hi, left / slope)
        if not lo < nhi:
            return np.empty(0), np.empty(0)
        N = _total_grid(left, slope, lo, nhi, Dmax, m)
        D = np.minimum(d_of(N, k), Dmax)
        ok = D > 0
        return N[ok], D[ok]

    def scan(rows: np.ndarray, ks: np.ndarray, m: int) -> tuple[np.ndarray, list]:
        """Best grid value per (row, k) and the grids."""
        prof = np.full((rows.size, ks.size), np.inf)
        grids = []
        for q, k in enumerate(ks):
            N, D = designs(k, m)
            grids.append((N, D))
            if N.size:
                v = _eval(f, theta[rows], np.broadcast_to(N, (rows.size, N.size)),
                          np.broadcast_to(D, (rows.size, N.size)), np.full((rows.size, N.size), k))
                prof[:, q] = v.min(axis=1)
                grids[-1] = (N, D, v)
            else:
                grids[-1] = (N, D, np.empty((rows.size, 0)))
        return prof, grids

    def dense(i: int, kc: np.ndarray) -> dict[float, tuple[float, np.ndarray, np.ndarray, np.ndarray]]:
        """Every k in kc on a dense grid in N, in one vectorised call -> {k: (best value, N, D, values)}."""
        parts = [(k,) + designs(k, TOTAL_DENSE) for k in kc]
        parts = [p for p in parts if p[1].size]
        if not parts:
            return {}
        Ns = np.concatenate([p[1] for p in parts])
        Ds = np.concatenate([p[2] for p in parts])
        ks_ = np.concatenate([np.full(p[1].size, p[0]) for p in parts])
        vs = _eval(f, theta[i:i + 1], Ns[None, :], Ds[None, :], ks_[None, :])[0]
        out, s = {}, 0
        for k, N, D in parts:
            v = vs[s:s + N.size]
            s += N.size
            out[float(k)] = (float(v.min()), N, D, v)
        return out

    def polish(i: int, k: float, N: np.ndarray, v: np.ndarray, j: int) -> tuple[float, float]:
        left, slope = split_k(k)
        a = N[j - 1] if j > 0 else lo
        b = N[j + 1] if j < N.size - 1 else min(hi, left / slope)

        def fun(u: float) -> float:
            n = math.exp(u)
            d = d_of(n, k)
            return _scalar(f, theta[i], n, min(d, Dmax), k) if d > 0 else math.inf

        n, val = _polish(fun, a, b)
        return (N[j], v[j]) if v[j] < val else (n, val)

    ks = _int_ks(1.0, K)
    prof, _ = scan(np.arange(P), ks, TOTAL_COARSE)
    for i in range(P):
        # local minima of the coarse profile over k, best first: every integer near each on a dense grid,
        # the window widened while the best k sits near its edge
        pr = prof[i]
        left = np.concatenate([[np.inf], pr[:-1]])
        right = np.concatenate([pr[1:], [np.inf]])
        loc = np.where((pr <= left) & (pr <= right) & np.isfinite(pr))[0]
        loc = loc[np.argsort(pr[loc], kind="stable")][:POLISH]
        seen: dict[float, tuple] = {}
        for q in loc:
            k = ks[q]
            w = TOTAL_NEIGHBOURS + int(0.02 * k)
            k0 = max(1.0, min(k - w, ks[q - 1] if q > 0 else 1.0))
            k1 = min(K, max(k + w, ks[q + 1] if q < ks.size - 1 else K))
            for _ in range(20):
                todo = np.array([kk for kk in np.arange(k0, k1 + 1.0) if float(kk) not in seen])
                seen.update(dense(i, todo))
                window = {kk: seen[kk][0] for kk in np.arange(k0, k1 + 1.0) if float(kk) in seen}
                if not window:
                    break
                kb = min(window, key=window.get)
                if kb - k0 < TOTAL_NEIGHBOURS and k0 > 1.0:
                    k0 = max(1.0, k0 - w)
                elif k1 - kb < TOTAL_NEIGHBOURS and k1 < K:
                    k1 = min(K, k1 + w)
                else:
                    break
        if not seen:
            continue
        # polish: the best cell of each of the best few k, and the best cells overall
        order = sorted(seen, key=lambda kk: seen[kk][0])
        jobs = [(kk, int(np.argmin(seen[kk][3]))) for kk in order[:POLISH] if np.isfinite(seen[kk][0])]
        flat = sorted((v, kk, j) for kk in order[:3 * POLISH] for j, v in enumerate(seen[kk][3]) if np.isfinite(v))
        jobs += [(kk, j) for _, kk, j in flat[:POLISH]]
        best = (math.inf, math.nan, math.nan)
        for kk, j in dict.fromkeys(jobs):
            _, N, _D, v = seen[kk]
            n, val = polish(i, kk, N, v, j)
            if val < best[0]:
                best = (val, n, kk)
        val, N, k = best
        if np.isfinite(val):
            res[i] = (N, min(d_of(N, k), Dmax), k, val)
    return res


def reference_optimum(route: Any, thetas: np.ndarray, budget: Budget,
                      constraints: Constraints = Constraints()) -> np.ndarray:
    """Reference optimum for every row of thetas[P, ncoef] (the route's theta order) -> array[P, 4] with
    columns (N, D, k, objective value); NaN where no design is feasible."""
    f, names = numpy_objective(route)
    thetas = np.asarray(thetas, dtype=float)
    if thetas.ndim != 2 or thetas.shape[1] != len(names):
        raise ValueError(f"thetas must have shape (P, {len(names)}), got {thetas.shape}")
    return reference_optimum_of(f, thetas, budget, constraints)


def reference_optimum_of(f: Objective, thetas: np.ndarray, budget: Budget,
                         constraints: Constraints = Constraints()) -> np.ndarray:
    """The same search for any numpy objective f(theta[P, :], N, D, k) (e.g. a simulation's misspecified true
    law, which no route's objective is) -> array[P, 4] (N, D, k, objective value)."""
    thetas = np.asarray(thetas, dtype=float)
    if isinstance(budget, SplitBudget):
        return _split(f, thetas, budget, constraints)
    if isinstance(budget, TotalBudget):
        return _total(f, thetas, budget, constraints)
    raise ValueError(f"unknown budget type {type(budget).__name__}")


def objective_at(route: Any, thetas: np.ndarray, N: np.ndarray, D: np.ndarray, k: np.ndarray) -> np.ndarray:
    """The route's objective (numpy code) at one design per row of thetas -> values[P] (inf where undefined)."""
    f, _ = numpy_objective(route)
    thetas = np.asarray(thetas, dtype=float)
    col = [np.asarray(x, dtype=float).reshape(-1, 1) for x in (N, D, k)]
    return _eval(f, thetas, *col)[:, 0]


def reference_route_optimum(route: Any, coefficients: xr.Dataset, budgets: Sequence[Budget],
                            constraints: Constraints | None = None) -> xr.Dataset:
    """Reference optimum for every draw of a coefficient Dataset (e.g. a simulation's truth: dims draw, task)
    and budget -> Dataset with N, D, k, tokens_per_param and metric (the route's metric, e.g. pass@k), dims
    (*sample dims, budget). The independent twin of `fit.route_optimum` for the quantities it reports."""
    constraints = constraints or Constraints()
    _, names = numpy_objective(route)
    arr = coefficients[list(names)].to_dataarray("coefficient").transpose(..., "coefficient").astype(float)
    dims = [d for d in arr.dims if d != "coefficient"]
    shape = arr.shape[:-1]
    flat = np.ascontiguousarray(arr.values.reshape(-1, len(names)))
    out = np.stack([reference_optimum(route, flat, b, constraints) for b in budgets], axis=-1)  # [P, 4, B]
    coords = {d: arr.coords[d] for d in dims if d in arr.coords}
    ds = xr.Dataset({name: (dims + ["budget"], out[:, q, :].reshape(shape + (len(budgets),)))
                     for q, name in enumerate(("N", "D", "k", "objective"))},
                    coords={**coords, "budget": np.arange(len(budgets))})
    ds["tokens_per_param"] = ds["D"] / ds["N"]
    metric_from_objective = route.metric_from_objective if not isinstance(route, str) else (
        (lambda v: v) if route.startswith("loss") else (lambda v: -np.expm1(v)))
    ds["metric"] = metric_from_objective(ds["objective"])
    ds.attrs["solver"] = "reference (dense grid + scipy bounded polish)"
    return ds
