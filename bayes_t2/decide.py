"""Risk-aware decisions: the one design (N, D, k) to commit to under a budget, chosen over posterior draws.

`optimize` gives a distribution of per-draw optima; a team has to train one model. `decide` searches the
designs the budget buys (exactly the design space of `optimum.py`) for the one that maximises a utility of
the metric's posterior at that design:

* ``mean``        the expected metric;
* ``quantile:q``  the metric in the worst q tail's boundary: the m-th worst draw, m = ceil(q S) of S draws
                  (the q-lower quantile of accuracy, the (1-q) upper quantile of loss);
* ``cvar:q``      the mean of those m worst draws (CVaR); so CVaR is never better than the quantile or the mean;
* ``prob``        P(metric reaches --target) (loss <= target, accuracy >= target); ties go to the better mean.

Design space (as `optimum.py`): split budget, one free N with D = min(C_train/(6N), max_tokens) and
k = min(k_max, floor(C_inf/(2NT))); total budget, N and an integer k free with D = min((C - 2NkTQ)/(6N),
max_tokens). The utility is evaluated over draws x designs by one parallel numba kernel (route objective,
theta packed in `route.coefficient_names` order, turned into the metric by `route.metric_from_objective`).

Search: a log-grid over N (split) or over (k, N) (total), then every constant-k segment (split) or integer k
(total) next to the best grid point is probed and the best few are refined by a zooming grid in log N
(33 points, bracket shrunk 16x per level, `_LEVELS` levels). The final bracket in log N is below
`LOG_N_TOL`, so for a utility unimodal within a segment (mean and CVaR of the convex loss law are) N is exact
to that relative tolerance; quantile and prob are piecewise and the answer is the best on that fine grid.

The inverse question, `min_budget`: the cheapest budget at which some design reaches the target with
probability >= confidence. The budget is scaled along one axis: the training budget C_train with the
per-query inference budget fixed (split), or the total C with the number of queries fixed (total). More of
either buys every design more data, so the best P is monotone in the scale; bisection in log budget.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, replace
from typing import Any

import numba
import numpy as np
import xarray as xr
from numba import types

from . import designs as rules
from .baselines import data_k_max, resolve_constraints, sample_view
from .budget import Budget, Constraints, SplitBudget, check_feasible, chinchilla_baseline
from .errors import InputError
from .optimum import OBJECTIVE_TYPE, _resolve_objective, bent_fit
from .predict import metric_draws
from .repetition import repeated_view
from .summary import SAMPLE_DIMS

__all__ = ["DESIGNS", "LOG_N_TOL", "Risk", "decide", "decision_records", "evaluate_designs", "min_budget",
           "parse_risk"]

DESIGNS = ("chosen", "chinchilla", "train_optimal", "median_optimum")
#: a raw regret below -(this x |optimal metric|) means the per-draw optimum was not optimal: reported, not hidden
REGRET_RTOL = 1e-8
RISK_KINDS = ("mean", "quantile", "cvar", "prob")
_GRID = 256  # coarse log-grid over N (split)
_ZOOM_POINTS = 33
_LEVELS = 9
LOG_N_TOL = 20.0 * (2.0 / (_ZOOM_POINTS - 1)) ** (_LEVELS - 1)  # final bracket in log N (<= 20 e-folds wide)
_JIT = dict(cache=True, nogil=True, fastmath=False, error_model="numpy")


# ------------------------------------------------------------------------------------------------ risk
@dataclass(frozen=True)
class Risk:
    """A utility of the metric's posterior at one design; q is the tail mass for quantile and cvar."""

    kind: str = "mean"
    q: float | None = None

    def label(self) -> str:
        return self.kind if self.q is None else f"{self.kind}:{self.q:g}"


def parse_risk(text: str | Risk) -> Risk:
    """`mean`, `quantile:Q`, `cvar:Q` or `prob`, Q in (0, 1)."""
    if isinstance(text, Risk):
        return text
    usage = f"--risk must be mean, quantile:Q, cvar:Q or prob with Q in (0, 1), got '{text}'"
    kind, _, q = str(text).strip().partition(":")
    if kind in ("mean", "prob"):
        if q:
            raise InputError(usage)
        return Risk(kind)
    if kind not in ("quantile", "cvar"):
        raise InputError(usage)
    try:
        value = float(q)
    except ValueError:
        raise InputError(usage) from None
    if not 0.0 < value < 1.0:
        raise InputError(usage)
    return Risk(kind, value)


# ------------------------------------------------------------------------------------------------ kernel
def _evaluate(f, thetas, designs, out):
    """out[m, s] = f(theta_s, N_m, D_m, k_m): every draw at every design, parallel over designs."""
    S = thetas.shape[0]
    for m in numba.prange(designs.shape[0]):
        N, D, k = designs[m, 0], designs[m, 1], designs[m, 2]
        for s in range(S):
            out[m, s] = f(thetas[s], N, D, k)


_EVAL_SIGNATURE = types.void(OBJECTIVE_TYPE, types.float64[:, ::1], types.float64[:, ::1], types.float64[:, ::1])
_kernels: dict[bool, Any] = {}
#: below this many draws x designs the serial kernel is used: waking the thread pool costs more (~15 ms on a
#: busy 2-core machine) than the work (~0.1 us per evaluation)
PARALLEL_MIN_WORK = 200_000


def _kernel(parallel: bool = True):
    """The draws x designs kernel (compiled, or loaded from numba's on-disk cache, on first use)."""
    if parallel not in _kernels:
        _kernels[parallel] = numba.njit(_EVAL_SIGNATURE, parallel=parallel, **_JIT)(_evaluate)
    return _kernels[parallel]


def evaluate_designs(route: Any, thetas: np.ndarray, designs: np.ndarray) -> np.ndarray:
    """The route's optimizer objective for every design (rows N, D, k of designs[M, 3]) and draw (rows of
    thetas[S, p], packed in `route.coefficient_names` order) -> [M, S]. Turn it into the metric with
    `route.metric_from_objective`."""
    f, _ = _resolve_objective(route.objective_nb, route.coefficient_names, "search")
    thetas = np.ascontiguousarray(thetas, dtype=np.float64)
    designs = np.ascontiguousarray(designs, dtype=np.float64)
    out = np.empty((designs.shape[0], thetas.shape[0]))
    _kernel(out.size >= PARALLEL_MIN_WORK)(f, thetas, designs, out)
    return out


# ------------------------------------------------------------------------------------------------ one task
class _Problem:
    """One task's decision problem: valid draws, the budget's design space, the utility."""

    def __init__(self, thetas: np.ndarray, route: Any, budget: Budget, constraints: Constraints, risk: Risk,
                 target: float | None, *, fit: Any = None, coefs: xr.Dataset | None = None, law: bool = True,
                 seed: int = 0) -> None:
        """thetas[S, p]: the valid draws packed for the numba kernel (the law). With law=False, `fit` and
        `coefs` (the same draws, dim `sample`, with the route's noise variables) score designs by a new
        run's metric instead (`predict.metric_draws`: one fresh checkpoint effect per draw, the same for
        every design, drawn with `seed`)."""
        self.thetas = np.ascontiguousarray(thetas, dtype=np.float64)
        self.route, self.budget, self.constraints, self.risk, self.target = route, budget, constraints, risk, target
        self.law = law or fit is None or coefs is None
        self.fit, self.coefs, self.seed = fit, coefs, seed
        self.lower = bool(route.lower_is_better)
        S = self.thetas.shape[0]
        self.m_tail = max(1, math.ceil(risk.q * S - 1e-9)) if risk.q is not None else 0
        c = constraints
        self.lo, self.maxn, self.dmax, self.kmax = c.min_params_f, c.max_params_f, c.max_tokens_f, c.k_max_f
        t, *self.terms = budget.query_terms()  # the query's cost terms (designs.query_terms)
        if isinstance(budget, SplitBudget):
            self.ct, self.c = budget.train_flops, budget.inference_flops / (2.0 * t)
            self.hi = min(self.maxn, self.segment_end(1.0))
        else:
            self.C, self.b1 = budget.total_flops, 2.0 * t * budget.queries
            self.hi = min(self.maxn, rules.total_n_top(self.C, self.b1, *self.terms, 1.0))
            self.K = rules.total_k_top(self.C, self.b1, *self.terms, self.lo, self.kmax)

    # ---- designs (the rules of `designs`, as `rules`) ------------------------------------------------------------------
    def segment_end(self, k: float) -> float:
        """Largest N that affords k samples per query (split)."""
        return rules.split_segment_end(self.c, *self.terms, k)

    def split_designs(self, N: np.ndarray, k: np.ndarray | float | None = None) -> np.ndarray:
        N = np.ascontiguousarray(N, dtype=float).reshape(-1)
        k = np.ascontiguousarray(np.broadcast_to(np.nan if k is None else np.asarray(k, dtype=float), N.shape))
        return rules.split_designs(self.ct, self.c, *self.terms, self.dmax, self.kmax, N, k)

    def total_designs(self, N: np.ndarray, k: np.ndarray | float) -> np.ndarray:
        N = np.ascontiguousarray(N, dtype=float).reshape(-1)
        k = np.ascontiguousarray(np.broadcast_to(np.asarray(k, dtype=float), N.shape))
        return rules.total_designs(self.C, self.b1, *self.terms, self.dmax, N, k)

    # ---- utility -------------------------------------------------------------------------------------------
    def law_metrics(self, designs: np.ndarray) -> np.ndarray:
        """The law's metric [M, S] of every draw at every design (numba kernel)."""
        out = evaluate_designs(self.route, self.thetas, np.atleast_2d(designs))
        return np.asarray(self.route.metric_from_objective(out), dtype=float)

    def metrics(self, designs: np.ndarray) -> np.ndarray:
        """Metric [M, S] of every draw at every design: the law's, or a new run's (law=False)."""
        designs = np.atleast_2d(designs)
        if self.law:
            return self.law_metrics(designs)
        ok = np.all(np.isfinite(designs), axis=1) & (designs[:, 1] > 0.0)
        safe = np.where(ok[:, None], designs, 1.0)
        x = metric_draws(self.fit, self.coefs, safe[:, 0], safe[:, 1], safe[:, 2], law=False, seed=self.seed).T
        x[~ok] = np.nan
        return x

    def utility(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(primary, secondary, utility) for metric rows x[M, S]; the best design minimises (primary,
        secondary) lexicographically; utility is in the metric's units (or a probability for prob)."""
        bad = x if self.lower else -x  # oriented: smaller is better
        mean_bad = bad.mean(axis=1)
        kind = self.risk.kind
        if kind == "mean":
            primary = mean_bad
        elif kind in ("quantile", "cvar"):
            S = x.shape[1]
            tail = np.partition(bad, S - self.m_tail, axis=1)[:, S - self.m_tail:]
            primary = tail.min(axis=1) if kind == "quantile" else tail.mean(axis=1)
        else:
            p = self.p_target(x)
            return -p, mean_bad, p
        return primary, mean_bad, (primary if self.lower else -primary)

    def p_target(self, x: np.ndarray) -> np.ndarray:
        return ((x <= self.target) if self.lower else (x >= self.target)).mean(axis=-1)

    def scores(self, designs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        primary, secondary, _ = self.utility(self.metrics(designs))
        # a design outside the budget (D <= 0) can never win
        bad = ~(designs[:, 1] > 0.0)
        primary = np.where(bad | ~np.isfinite(primary), np.inf, primary)
        return primary, np.where(np.isfinite(secondary), secondary, np.inf)

    # ---- search --------------------------------------------------------------------------------------------
    def _zoom(self, make, brackets: list[tuple[float, float]],
              levels: int = _LEVELS) -> list[tuple[np.ndarray, float, float]]:
        """Zooming grid search in u = log N, all brackets at once (one kernel call per level).

        make(i, N) -> designs of bracket i at model sizes N. Each level evaluates `_ZOOM_POINTS` points and
        keeps the two cells around the best; returns per bracket (design, primary, secondary)."""
        best: list[tuple[Any, float, float]] = [(None, np.inf, np.inf)] * len(brackets)
        ab = [(a, b) for a, b in brackets]
        n = _ZOOM_POINTS
        for _ in range(levels):
            us = [np.linspace(a, b, n) if b > a else np.full(n, a) for a, b in ab]
            d = np.concatenate([make(i, np.exp(u)) for i, u in enumerate(us)])
            p, s = self.scores(d)
            for i, u in enumerate(us):
                pi, si = p[i * n:(i + 1) * n], s[i * n:(i + 1) * n]
                j = int(np.lexsort((si, pi))[0])
                if (pi[j], si[j]) < best[i][1:]:
                    best[i] = (d[i * n + j], float(pi[j]), float(si[j]))
                ab[i] = (u[max(j - 1, 0)], u[min(j + 1, n - 1)])
            if all(b - a <= 0.0 for a, b in ab):
                break
        return best

    @staticmethod
    def _pick(cands: list[tuple[Any, float, float]]) -> tuple[Any, float, float]:
        return min(cands, key=lambda c: c[1:])

    def search(self) -> np.ndarray:
        """The design [N, D, k] that optimises the utility."""
        return self._split_search() if isinstance(self.budget, SplitBudget) else self._total_search()

    def _segment(self, k: float) -> tuple[float, float] | None:
        """N range where the inference budget affords exactly k samples (k_max: everything below)."""
        nlo = self.lo if k >= self.kmax else max(self.lo, self.segment_end(k + 1.0))
        nhi = min(self.hi, self.segment_end(k))
        return (nlo, nhi) if nlo <= nhi else None

    def _split_search(self) -> np.ndarray:
        """Two families of candidates: the right ends N = C_inf/(2kT) of the k segments (just left of one,
        one more sample becomes affordable, so the metric jumps there and the optimum sits at an end when
        samples pay) and interior points. The ends' envelope is searched over k by narrowing geometric
        subsets of k until every integer between the best end's neighbours is listed; a log-grid over N
        finds the best interior segment. Those segments are probed and the best four refined."""
        K = rules.split_k(self.c, *self.terms, self.lo, self.kmax)
        a, b = 1.0, K
        while True:
            ks = np.arange(a, b + 1.0) if b - a < 512 else np.unique(np.round(np.geomspace(a, b, _GRID)))
            ends_n = np.array([self.segment_end(k) for k in ks])
            keep = (ends_n <= self.hi) | (ks >= K)  # ends above max_params are not designs
            ks, ends_n = ks[keep], ends_n[keep]
            if ks.size == 0:
                ks, ends_n = np.array([K]), np.array([self.segment_end(K)])
            ends = self.split_designs(np.minimum(ends_n, self.hi), ks)
            p, s = self.scores(ends)
            e = int(np.lexsort((s, p))[0])
            if b - a < 512:
                break
            a, b = ks[max(e - 1, 0)], ks[min(e + 1, ks.size - 1)]
        best = (ends[e], float(p[e]), float(s[e]))
        seg_ks = set(ks[max(e - 2, 0):e + 3].tolist())
        N = np.geomspace(self.lo, self.hi, _GRID) if self.hi > self.lo else np.array([self.lo])
        grid = self.split_designs(N)
        p, s = self.scores(grid)
        i = int(np.lexsort((s, p))[0])
        best = self._pick([best, (grid[i], float(p[i]), float(s[i]))])
        seg_ks |= {grid[i, 2] - 1.0, grid[i, 2], grid[i, 2] + 1.0}
        segs = [(k, seg) for k in sorted(seg_ks) if 1.0 <= k <= K and (seg := self._segment(k)) is not None]
        # probe each segment at its ends and middle, refine the best four
        probe = np.concatenate([self.split_designs(np.geomspace(a, b, 3), k) for k, (a, b) in segs])
        pp, ps = self.scores(probe)
        pp, ps = pp.reshape(-1, 3), ps.reshape(-1, 3)
        jj = np.lexsort((ps, pp), axis=1)[:, 0]
        rows = np.arange(len(segs))
        order = np.lexsort((ps[rows, jj], pp[rows, jj]))[:4]
        chosen = [segs[o] for o in order]
        cands = self._zoom(lambda j, n: self.split_designs(np.minimum(n, chosen[j][1][1]), chosen[j][0]),
                           [(math.log(a), math.log(b)) for _, (a, b) in chosen])
        return self._pick([best, *cands])[0]

    def _total_nhi(self, k: float) -> float:
        """Largest N with D > 0 at k samples (and within max_params)."""
        return min(self.hi, rules.total_n_top(self.C, self.b1, *self.terms, k)) * (1.0 - 1e-12)

    def _total_profiles(self, ks: np.ndarray, levels: int) -> list[tuple[Any, float, float]]:
        """Best design per integer k in ks (each with D > 0 possible), zooming over N for all at once."""
        return self._zoom(lambda j, n: self.total_designs(n, ks[j]),
                          [(math.log(self.lo), math.log(self._total_nhi(k))) for k in ks], levels)

    def _total_search(self) -> np.ndarray:
        ks = np.unique(np.round(np.geomspace(1.0, self.K, 40)))
        ks = ks[[self._total_nhi(k) > self.lo for k in ks]]
        grid = np.concatenate([self.total_designs(np.geomspace(self.lo, self._total_nhi(k), 32), k) for k in ks])
        p, s = self.scores(grid)
        p, s = p.reshape(ks.size, -1), s.reshape(ks.size, -1)
        jj = np.lexsort((s, p), axis=1)[:, 0]
        rows = np.arange(ks.size)
        j = int(np.lexsort((s[rows, jj], p[rows, jj]))[0])
        best = (grid[j * 32 + jj[j]], float(p[j, jj[j]]), float(s[j, jj[j]]))
        a, b = ks[max(j - 1, 0)], ks[min(j + 1, ks.size - 1)]
        # narrow the integer range around the best k, 16 candidates a round (coarse zoom over N), until
        # every integer left is a candidate; the best three of those get the full zoom
        while True:
            cand = np.arange(a, b + 1.0)
            final = cand.size <= 16
            if not final:
                cand = np.unique(np.round(np.geomspace(a, b, 16)))
            prof = self._total_profiles(cand, 3)
            order = sorted(range(len(prof)), key=lambda r: prof[r][1:])
            best = self._pick([best, prof[order[0]]])
            if final:
                full = self._total_profiles(cand[order[:3]], _LEVELS)
                return self._pick([best, *full])[0]
            i = order[0]
            a, b = cand[max(i - 1, 0)], cand[min(i + 1, cand.size - 1)]

    def best_p_target(self) -> float:
        """The best P(target) any design reaches (the prob utility's optimum)."""
        saved = self.risk
        self.risk = Risk("prob")
        try:
            return float(self.p_target(self.metrics(self.search()))[0])
        finally:
            self.risk = saved


# ------------------------------------------------------------------------------------------------ API
def _draws(fit: Any, task: str | None) -> tuple[xr.Dataset, list[str]]:
    coefs = fit.coefficients()
    if task is not None:
        if task not in fit.tasks:
            raise InputError(f"--task '{task}' is not in the fit (tasks: {', '.join(fit.tasks)})")
        coefs = coefs.sel(task=[task])
    if any(coefs.sizes.get(d, 0) == 0 for d in (*SAMPLE_DIMS, "task")):
        raise InputError("the fit's posterior is empty (no draws); refit with --draws > 0")
    return coefs, [str(t) for t in coefs["task"].values]


def _check_options(budget: Budget, constraints: Constraints, risk: Risk, target: float | None,
                   prob: float) -> None:
    check_feasible(budget, constraints)
    if risk.kind == "prob" and target is None:
        raise InputError("--risk prob needs --target (the metric value to reach)")
    if target is not None and not math.isfinite(float(target)):
        raise InputError(f"--target must be a finite number, got {target}")
    if not 0.0 < prob < 1.0:
        raise InputError(f"--prob must be in (0, 1), got {prob:g}")


def _warn_prior_only(fit: Any) -> None:
    """A prior-only fit says so here too: the optimize call above silences its notes (extrapolation notes
    belong to `optimize`), but intervals that are the prior's must be said in every output."""
    tree = getattr(fit, "tree", None)
    if tree is None:
        return
    from .criticism import ExtrapolationWarning
    from .fit import prior_only_notes

    for note in prior_only_notes(tree):
        warnings.warn(note, ExtrapolationWarning, stacklevel=3)


def decide(fit: Any, budget: Budget, constraints: Constraints | None = None, *, risk: str | Risk = "mean",
           target: float | None = None, task: str | None = None, prob: float = 0.9, law: bool = False,
           seed: int = 0) -> xr.Dataset:
    """The design to commit to, per task, under one budget.

    fit: a `Fit` (anything with `route`, `tasks`, `posterior`, `coefficients()` and `optimize`).
    constraints: an unset min_params becomes a tenth of the smallest model in the data.
    law: score designs on the law alone; default False, a new run's metric (law plus the fitted checkpoint
    scatter: one fresh effect per draw, drawn with `seed`, shared by every design).
    Returns a Dataset with dims (task, design = chosen | chinchilla | train_optimal | median_optimum) and, per
    draw, (chain, draw, task, design): N, D, k, tokens_per_param, flops_per_query, utility, p_target,
    expected_regret, metric_median/mean/lower/upper (equal-tailed `prob` interval), metric and regret per
    draw (regret NOT clipped: metric at the design minus metric at the draw's own optimum, oriented so that
    positive is worse), optimal_metric, p_beats_chinchilla and p_beats_train_optimal (task; P(chosen design
    beats the baseline design), negative_regret_share and negative_regret_min (task, design; on the law, a
    negative regret beyond `REGRET_RTOL` means the per-draw optimum was not optimal), bounds_<name> (task;
    share of draws whose optimum sits on that bound) and n_draws; attrs say risk, target, budget, constraints.
    """
    risk = parse_risk(risk)
    fit = repeated_view(fit, constraints, seed)  # unique_tokens: the law at the effective design
    fit = bent_fit(fit, seed)  # the law with its discrepancy, the same z per draw as `optimize`'s
    constraints = resolve_constraints(fit, constraints)
    _check_options(budget, constraints, risk, target, prob)
    coefs, tasks = _draws(fit, task)
    route = fit.route
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the extrapolation notes belong to `optimize`
        opt = fit.optimize([budget], constraints, law=law, seed=seed).isel(budget=0).sel(task=tasks)
    _warn_prior_only(fit)
    names = list(route.coefficient_names) + [v for v in route.noise_names if v in fit.posterior]
    post = sample_view(fit.posterior[names].sel(task=tasks))
    per_task = []
    for t in tasks:
        per_task.append(_decide_task(fit, coefs.sel(task=t), post.sel(task=t), opt.sel(task=t), t, route, budget,
                                     constraints, risk, target, prob, law, seed))
    ds = xr.concat(per_task, dim="task").transpose(*SAMPLE_DIMS, "task", "design")
    ds.attrs = _attrs(route, budget, constraints, risk, target, prob)
    ds.attrs.update({"law": int(bool(law)), "seed": int(seed), "scatter": int(_has_scatter(fit, law))})
    return ds


def _has_scatter(fit: Any, law: bool) -> bool:
    """Whether metrics include a checkpoint scatter: not with --law, nor for a fit without noise variables."""
    return not law and any(v in fit.posterior for v in fit.route.noise_names)


def _stack(coefs: xr.Dataset, names: tuple[str, ...]) -> np.ndarray:
    arr = coefs[list(names)].to_dataarray("coefficient").transpose(*SAMPLE_DIMS, "coefficient")
    return np.asarray(arr.values, dtype=float).reshape(-1, len(names))


def _flat(da: xr.DataArray) -> np.ndarray:
    return np.asarray(da.transpose(*SAMPLE_DIMS).values, dtype=float).reshape(-1)


def _decide_task(fit: Any, coefs: xr.Dataset, post: xr.Dataset, opt: xr.Dataset, task: str, route: Any,
                 budget: Budget, constraints: Constraints, risk: Risk, target: float | None, prob: float,
                 law: bool, seed: int) -> xr.Dataset:
    thetas = _stack(coefs, route.coefficient_names)
    opt_law = _flat(opt["law_metric"])
    valid = np.all(np.isfinite(thetas), axis=1) & np.isfinite(opt_law)
    if not valid.any():
        raise InputError(f"task '{task}': no posterior draw has finite coefficients (all-NaN posterior)")
    problem = _Problem(thetas[valid], route, budget, constraints, risk, target, fit=fit,
                       coefs=post.isel(sample=np.flatnonzero(valid)), law=not _has_scatter(fit, law), seed=seed)
    opt_N, opt_D, opt_k = (_flat(opt[v])[valid] for v in ("N", "D", "k"))
    opt_designs = np.stack([opt_N, opt_D, opt_k], axis=-1)
    if target is not None:
        # what each draw's own optimum reaches (a new run's metric unless law)
        reach_metric = _flat(opt["metric"])[valid]
        reach = (reach_metric <= target) if problem.lower else (reach_metric >= target)
        if not reach.any():
            best = np.nanmin(reach_metric) if problem.lower else np.nanmax(reach_metric)
            word = "<=" if problem.lower else ">="
            raise InputError(
                f"--target {target:g}: no design under this budget reaches {route.metric_name} {word} {target:g} "
                f"for task '{task}' in any posterior draw (best achievable P = 0; best per-draw optimum "
                f"{route.metric_name} {best:.4g}); relax the target or raise the budget")
    chosen = problem.search()
    chin = np.array(chinchilla_baseline(budget, constraints).as_tuple(), dtype=float)
    to = np.array([float(opt[f"train_optimal_{v}"]) for v in ("N", "D", "k")])
    median = np.array([float(opt[f"recommended_{v}"]) for v in ("N", "D", "k")])
    designs = np.stack([chosen, chin, to, median])
    x = problem.metrics(designs)  # [4, S_valid]
    _, _, utility = problem.utility(x)
    utility = np.where(np.all(np.isfinite(x), axis=1), utility, np.nan)
    # regret against each draw's own optimum, on the same draw and the same checkpoint effect; never clipped
    x_opt = _own_optimum_metrics(problem, opt_designs, opt_law[valid])
    regret = (x - x_opt) if problem.lower else (x_opt - x)
    # on the law, a design better than the draw's optimum means the optimizer missed: say so
    law_x = problem.law_metrics(designs)
    law_regret = (law_x - opt_law[valid]) if problem.lower else (opt_law[valid] - law_x)
    tol = REGRET_RTOL * np.maximum(np.abs(opt_law[valid]), 1e-300)
    negative = law_regret < -tol
    finite = np.isfinite(law_regret)
    neg_share = np.where(finite.any(axis=1), negative.sum(axis=1) / np.maximum(finite.sum(axis=1), 1), np.nan)
    neg_min = np.array([float(np.min(r[f])) if f.any() else np.nan for r, f in zip(law_regret, finite)])
    S = thetas.shape[0]
    M = len(DESIGNS)
    metric_full = np.full((M, S), np.nan)
    metric_full[:, valid] = x
    regret_full = np.full((M, S), np.nan)
    regret_full[:, valid] = regret
    opt_full = np.full(S, np.nan)
    opt_full[valid] = x_opt
    q = np.full((3, M), np.nan)
    ok_rows = np.all(np.isfinite(x), axis=1)
    if ok_rows.any():
        q[:, ok_rows] = np.quantile(x[ok_rows], [(1 - prob) / 2, 0.5, (1 + prob) / 2], axis=1)
    shape = (coefs.sizes["chain"], coefs.sizes["draw"])
    sample_coords = {d: coefs[d].values for d in SAMPLE_DIMS}
    per_design = ("design",)
    from .baselines import BOUND_NAMES, bound_shares, p_beats

    shares = bound_shares(opt_N, opt_D, opt_k, constraints, data_k_max(fit))
    data = {
        "N": (per_design, designs[:, 0]),
        "D": (per_design, designs[:, 1]),
        "k": (per_design, designs[:, 2]),
        "tokens_per_param": (per_design, designs[:, 1] / designs[:, 0]),
        **{key: (per_design, np.asarray(v, dtype=float)) for key, v in
           budget.design_costs(designs[:, 0], designs[:, 1], designs[:, 2]).items()},
        "utility": (per_design, utility),
        "p_target": (per_design, np.where(ok_rows, problem.p_target(x), np.nan) if target is not None
                     else np.full(M, np.nan)),
        "expected_regret": (per_design, regret.mean(axis=1)),
        "negative_regret_share": (per_design, neg_share),
        "negative_regret_min": (per_design, neg_min),
        "metric_median": (per_design, q[1]),
        "metric_mean": (per_design, x.mean(axis=1)),
        "metric_lower": (per_design, q[0]),
        "metric_upper": (per_design, q[2]),
        "metric": (("design", *SAMPLE_DIMS), metric_full.reshape(M, *shape)),
        "regret": (("design", *SAMPLE_DIMS), regret_full.reshape(M, *shape)),
        "optimal_metric": (SAMPLE_DIMS, opt_full.reshape(shape)),
        "p_beats_chinchilla": ((), p_beats(x[0], x[1], problem.lower)),
        "p_beats_train_optimal": ((), p_beats(x[0], x[2], problem.lower)),
        "chinchilla_feasible": ((), bool(np.isfinite(chin[0]))),
        "n_draws": ((), int(valid.sum())),
    }
    for b in BOUND_NAMES:
        data[f"bounds_{b}"] = ((), shares.get(b, np.nan))
    ds = xr.Dataset(data, coords={"design": list(DESIGNS), **sample_coords})
    return ds.assign_coords(task=task)


def _own_optimum_metrics(problem: "_Problem", opt_designs: np.ndarray, law_opt: np.ndarray) -> np.ndarray:
    """Each draw's metric at its own optimum (a per-draw design), on the same footing as `problem.metrics`
    (law, or a new run with the same checkpoint effect per draw)."""
    if problem.law:
        return law_opt
    ok = np.all(np.isfinite(opt_designs), axis=1)
    safe = np.where(ok[:, None], opt_designs, 1.0)
    x = metric_draws(problem.fit, problem.coefs, safe[:, 0:1], safe[:, 1:2], safe[:, 2:3], law=False,
                     seed=problem.seed)[:, 0]
    return np.where(ok, x, np.nan)


def _attrs(route: Any, budget: Budget, constraints: Constraints, risk: Risk, target: float | None,
           prob: float) -> dict[str, Any]:
    if risk.kind == "prob":
        better = "higher"
    else:
        better = "lower" if route.lower_is_better else "higher"
    return {
        "risk": risk.label(),
        "target": float("nan") if target is None else float(target),
        "budget": json.dumps(budget.as_dict()),
        "budget_label": budget.label(),
        "constraints": constraints.to_json(),
        "metric_name": route.metric_name,
        "lower_is_better": int(bool(route.lower_is_better)),
        "utility_better": better,
        "prob": float(prob),
        "log_n_tolerance": LOG_N_TOL,
    }


# ------------------------------------------------------------------------------------------------ min budget
def _scaled(budget: Budget, scale: float) -> Budget:
    if isinstance(budget, SplitBudget):
        return replace(budget, train_flops=budget.train_flops * scale)
    return replace(budget, total_flops=budget.total_flops * scale)


def _scaled_name(budget: Budget) -> str:
    return "train_flops" if isinstance(budget, SplitBudget) else "total_flops"


def min_budget(fit: Any, budget: Budget, constraints: Constraints | None = None, *, target: float,
               confidence: float = 0.9, task: str | None = None, prob: float = 0.9,
               rtol: float = 1e-3, law: bool = False, seed: int = 0) -> xr.Dataset:
    """The cheapest budget at which some design reaches `target` with probability >= `confidence`, per task.

    Scales C_train with C_inf fixed (split) or C with Q fixed (total), starting from `budget`; bisection in
    log budget until the bracket is narrower than `rtol` (relative). Returns `decide(..., risk="prob")` at
    each task's budget, concatenated over task, with the scaled budget as the variable `min_flops` (task)
    and attrs `scaled` (which budget field) and `confidence`.
    """
    if target is None:
        raise InputError("--min-budget needs --target")
    if not 0.0 < confidence < 1.0:
        raise InputError(f"--confidence must be in (0, 1), got {confidence:g}")
    fit = repeated_view(fit, constraints, seed)  # unique_tokens: the law at the effective design
    fit = bent_fit(fit, seed)  # the law with its discrepancy, the same z per draw as `optimize`'s
    constraints = resolve_constraints(fit, constraints)
    _check_options(budget, constraints, Risk("prob"), target, prob)
    coefs, tasks = _draws(fit, task)
    route = fit.route
    names = list(route.coefficient_names) + [v for v in route.noise_names if v in fit.posterior]
    post = sample_view(fit.posterior[names].sel(task=tasks))
    results = []
    for t in tasks:
        thetas = _stack(coefs.sel(task=t), route.coefficient_names)
        finite = np.all(np.isfinite(thetas), axis=1)
        thetas = thetas[finite]
        draws_t = post.sel(task=t).isel(sample=np.flatnonzero(finite))
        if thetas.shape[0] == 0:
            raise InputError(f"task '{t}': no posterior draw has finite coefficients (all-NaN posterior)")

        def best_p(scale: float) -> float:
            b = _scaled(budget, scale)
            try:
                check_feasible(b, constraints)
            except InputError:  # too small to buy the smallest model at all
                return 0.0
            return _Problem(thetas, route, b, constraints, Risk("prob"), target, fit=fit, coefs=draws_t,
                            law=not _has_scatter(fit, law), seed=seed).best_p_target()

        lo, hi = _bracket(best_p, confidence, t, target, route, budget)
        while hi / lo > 1.0 + rtol:
            mid = math.sqrt(lo * hi)
            if best_p(mid) >= confidence:
                hi = mid
            else:
                lo = mid
        b = _scaled(budget, hi)
        ds = decide(fit, b, constraints, risk="prob", target=target, task=t, prob=prob, law=law, seed=seed)
        ds["min_flops"] = ("task", [getattr(b, _scaled_name(b))])
        results.append(ds)
    out = xr.concat(results, dim="task", combine_attrs="drop_conflicts")
    out.attrs.update(_attrs(route, budget, constraints, Risk("prob"), target, prob))
    out.attrs.update({"scaled": _scaled_name(budget), "confidence": float(confidence), "rtol": float(rtol)})
    return out


def _bracket(best_p, confidence: float, task: str, target: float, route: Any, budget: Budget,
             decades: int = 30) -> tuple[float, float]:
    """(lo, hi) scales with best P < confidence at lo and >= confidence at hi (factors of 10 from 1)."""
    field = _scaled_name(budget)
    if best_p(1.0) >= confidence:
        hi = 1.0
        for _ in range(decades):
            lo = hi / 10.0
            if best_p(lo) < confidence:
                return lo, hi
            hi = lo
        raise InputError(f"task '{task}': even --{field.replace('_', '-')} {getattr(budget, field) * hi:g} "
                         f"reaches the target; nothing to minimise")
    lo = 1.0
    p = 0.0
    for _ in range(decades):
        hi = lo * 10.0
        p = best_p(hi)
        if p >= confidence:
            return lo, hi
        lo = hi
    word = "<=" if route.lower_is_better else ">="
    raise InputError(f"--target {target:g}: task '{task}' does not reach {route.metric_name} {word} {target:g} "
                     f"with probability {confidence:g} at any --{field.replace('_', '-')} up to "
                     f"{getattr(budget, field) * lo:g} (best P = {p:.3g}); the other budget limits it")


# ------------------------------------------------------------------------------------------------ records
def decision_records(ds: xr.Dataset) -> list[dict]:
    """One JSON-ready record per task: budget (with T), constraints, risk, target, what the metric includes,
    per design (chosen, chinchilla, train_optimal, median_optimum) N, D, k, tokens/param, FLOPs per query
    (with prices also dollars per query and for training), metric {median, mean, lower, upper, prob}, p_target, expected_regret, utility and negative_regret
    {share, min}; p_beats_chinchilla, p_beats_train_optimal (P(chosen design beats the baseline)), and the
    bounds {name: share of draws whose optimum sits on it}."""
    from .baselines import BOUND_NAMES

    attrs = ds.attrs
    target = attrs.get("target", float("nan"))
    target = None if target is None or not np.isfinite(target) else float(target)
    records = []
    for t in ds["task"].values:
        row = ds.sel(task=t)
        budget = json.loads(attrs["budget"])
        if "min_flops" in ds:
            budget[attrs["scaled"]] = float(row["min_flops"])
        rec: dict[str, Any] = {"task": str(t), "budget": budget, "constraints": json.loads(attrs["constraints"]),
                               "risk": attrs["risk"], "target": target, "metric_name": attrs["metric_name"],
                               "metric_includes": "law and checkpoint scatter (a new run)"
                               if attrs.get("scatter") else "law"}
        if "confidence" in attrs:
            rec["confidence"] = float(attrs["confidence"])
        for d in DESIGNS:
            r = row.sel(design=d)
            p = float(r["p_target"])
            rec[d] = {
                "N": float(r["N"]), "D": float(r["D"]), "k": float(r["k"]),
                "tokens_per_param": float(r["tokens_per_param"]),
                "flops_per_query": float(r["flops_per_query"]),
                **{key: float(r[key]) for key in ("money_per_query", "train_money") if key in r},
                "metric": {"median": float(r["metric_median"]), "mean": float(r["metric_mean"]),
                           "lower": float(r["metric_lower"]), "upper": float(r["metric_upper"]),
                           "prob": float(attrs["prob"])},
                "p_target": None if not np.isfinite(p) else p,
                "expected_regret": float(r["expected_regret"]),
                "negative_regret": {"share": float(r["negative_regret_share"]),
                                    "min": float(r["negative_regret_min"])},
                "utility": float(r["utility"]),
            }
        rec["chinchilla"]["feasible"] = bool(row["chinchilla_feasible"])
        rec["p_beats_chinchilla"] = float(row["p_beats_chinchilla"])
        rec["p_beats_train_optimal"] = float(row["p_beats_train_optimal"])
        shares = {b: float(row[f"bounds_{b}"]) for b in BOUND_NAMES if f"bounds_{b}" in row}
        rec["bounds"] = {b: v for b, v in shares.items() if np.isfinite(v) and v > 0}
        records.append(rec)
    return records
