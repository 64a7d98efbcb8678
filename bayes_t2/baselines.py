"""What a per-draw optimum is compared with: the baselines, the design one commits to, P(beats), bounds.

The optimizer (`optimum.py`) gives one optimum per posterior draw. A user trains one model, so the numbers a
decision rests on are about fixed designs, scored draw by draw:

* ``recommended``: the design at the posterior-median optimum (median N*, and for a total budget median k*),
  made feasible under the budget (`budget.design_at`).
* ``chinchilla``: the largest D = 20 N model the budget and constraints allow, with the samples its
  inference budget affords (`budget.chinchilla_baseline`); infeasible (NaN) where no such design exists.
* ``train_optimal``: the fitted law's own compute-optimal design for training alone: per draw, the k = 1
  optimum under the same budget (the optimizer with k_max = 1), then ONE design, the posterior median of
  those N, with the k its inference budget affords. It separates the gain from sampling from the gain
  from the right tokens-per-parameter ratio.
* ``P(beats <baseline>)``: the share of posterior draws in which the recommended design does strictly
  better than the baseline design, both evaluated on the same draw (and, by default, the same fresh
  checkpoint effect).
* ``bounds``: the share of draws whose optimum sits on each active bound (min_params, max_params, k_max,
  max_tokens) or at k beyond the largest k in the data.

Metrics include the fitted checkpoint-to-checkpoint scatter by default (`predict.metric_draws`), or the law
alone with law=True.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import xarray as xr

from .budget import Budget, Constraints, chinchilla_baseline, design_at
from .predict import metric_draws

__all__ = ["BOUND_NAMES", "add_decision_quantities", "bound_shares", "data_k_max", "resolve_constraints",
           "sample_view", "smallest_model"]

SAMPLE_DIMS = ("chain", "draw")
BOUND_NAMES = ("min_params", "max_params", "k_max", "max_tokens", "k_beyond_data")
#: a draw's optimum is "on" a bound within this relative distance
BOUND_RTOL = 1e-9


def _observed(fit: Any):
    try:
        return fit.route.observed_points(fit.tree)
    except Exception:  # noqa: BLE001 - a hand-made or foreign posterior without constant data
        return None


def smallest_model(fit: Any) -> float | None:
    """The smallest model (parameters) in the fit's data; None if the fit does not record its data."""
    pts = _observed(fit)
    if pts is None or len(pts) == 0:
        return None
    return float(np.min(pts["params"]))


def data_k_max(fit: Any) -> float | None:
    """The largest k (samples per query) the fit's data observe; None if unknown."""
    pts = _observed(fit)
    if pts is None or len(pts) == 0 or "k" not in pts:
        return None
    return float(np.max(pts["k"]))


def resolve_constraints(fit: Any, constraints: Constraints | None) -> Constraints:
    """`constraints` with the default smallest model taken from the fit's data (a tenth of its smallest
    model) unless the user set --min-params."""
    return (constraints or Constraints()).resolve_min_params(smallest_model(fit))


def sample_view(ds: xr.Dataset) -> xr.Dataset:
    """`ds` with its sample dims (chain, draw) flattened into one plain dim `sample` (chain-major)."""
    dims = [d for d in SAMPLE_DIMS if d in ds.dims]
    S = int(np.prod([ds.sizes[d] for d in dims]))
    out = {}
    for name, da in ds.data_vars.items():
        other = [d for d in da.dims if d not in dims]
        v = np.asarray(da.transpose(*dims, *other).values)
        out[name] = (("sample", *other), v.reshape((S, *v.shape[len(dims):])))
    coords = {name: ds[name].values for name in ds.dims if name not in dims and name in ds.coords}
    return xr.Dataset(out, coords=coords)


def bound_shares(N: np.ndarray, D: np.ndarray, k: np.ndarray, constraints: Constraints,
                 k_data: float | None) -> dict[str, float]:
    """Share of draws (finite ones) whose optimum (N, D, k) sits on each active bound; bounds no draw
    touches are left out."""
    ok = np.isfinite(N) & np.isfinite(D) & np.isfinite(k)
    n = int(ok.sum())
    if n == 0:
        return {}
    N, D, k = N[ok], D[ok], k[ok]
    on = {"min_params": N <= constraints.min_params_f * (1.0 + BOUND_RTOL)}
    if constraints.max_params is not None:
        on["max_params"] = N >= constraints.max_params * (1.0 - BOUND_RTOL)
    if constraints.k_max is not None:
        on["k_max"] = k >= constraints.k_max
    if constraints.max_tokens is not None:
        on["max_tokens"] = D >= constraints.max_tokens * (1.0 - BOUND_RTOL)
    if k_data is not None:
        on["k_beyond_data"] = k > k_data
    return {name: float(v.sum()) / n for name, v in on.items() if v.any()}


def _better(x: np.ndarray, y: np.ndarray, lower_is_better: bool) -> np.ndarray:
    return (x < y) if lower_is_better else (x > y)


def p_beats(x: np.ndarray, y: np.ndarray, lower_is_better: bool) -> float:
    """Share of draws in which metric x does strictly better than metric y (same draws, NaN pairs dropped);
    NaN if no draw has both."""
    ok = np.isfinite(x) & np.isfinite(y)
    if not ok.any():
        return math.nan
    return float(_better(x[ok], y[ok], lower_is_better).mean())


def _median(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(np.median(x)) if x.size else math.nan


def add_decision_quantities(fit: Any, opt: xr.Dataset, budgets: list[Budget], constraints: Constraints, *,
                            law: bool = False, seed: int = 0) -> xr.Dataset:
    """`opt` (Fit.optimize's per-draw optimum, dims chain, draw, task, budget) plus the baselines, the
    recommended design, P(beats) and the bound shares (module docstring).

    Adds, with dims (task, budget): recommended_N/D/k, train_optimal_N/D/k, p_beats_chinchilla,
    p_beats_train_optimal, bounds_<name> (share of draws, NaN = bound not active); with dims (chain, draw,
    task, budget): recommended_metric, train_optimal_metric, and replaces metric, chinchilla_metric and
    chinchilla_metric_k1 by their values for a new run (law plus a fresh checkpoint effect shared by all
    designs of a draw) unless law=True; law_metric keeps the law's metric at each draw's optimum.
    """
    route = fit.route
    budgets = list(budgets)
    tasks = [str(t) for t in opt["task"].values]
    nt, nb = len(tasks), len(budgets)
    dims = [d for d in SAMPLE_DIMS if d in opt.dims]
    shape = tuple(opt.sizes[d] for d in dims)
    S = int(np.prod(shape))
    # the train-only optimum of every draw (k = 1 law under the same budget)
    one = fit_route_optimum(fit, budgets, replace(constraints, k_max=1))
    k_data = data_k_max(fit)
    names = list(route.coefficient_names) + [v for v in route.noise_names if v in fit.posterior]
    post = sample_view(fit.posterior[names])
    lower = bool(route.lower_is_better)

    per_tb = {name: np.full((nt, nb), np.nan) for name in (
        "recommended_N", "recommended_D", "recommended_k", "train_optimal_N", "train_optimal_D",
        "train_optimal_k", "p_beats_chinchilla", "p_beats_train_optimal", *[f"bounds_{b}" for b in BOUND_NAMES])}
    per_draw = {name: np.full((S, nt, nb), np.nan) for name in (
        "metric", "law_metric", "chinchilla_metric", "chinchilla_metric_k1", "recommended_metric",
        "train_optimal_metric")}
    for i, task in enumerate(tasks):
        coefs = post.sel(task=task) if "task" in post.dims else post
        for j, budget in enumerate(budgets):
            o = opt.isel(budget=j).sel(task=task)
            N, D, k = (np.asarray(o[v].transpose(*dims).values, float).reshape(-1) for v in ("N", "D", "k"))
            rec = design_at(budget, constraints, _median(N), _median(k))
            n1 = np.asarray(one["N"].isel(budget=j).sel(task=task).transpose(*dims).values, float).reshape(-1)
            to = design_at(budget, constraints, _median(n1), 1.0)
            chin = chinchilla_baseline(budget, constraints)
            fixed = [rec, to, chin, replace(chin, k=1.0)]
            Nm = np.array([d.N for d in fixed])
            Dm = np.array([d.D for d in fixed])
            km = np.array([d.k for d in fixed])
            # column 0: each draw's own optimum; then the fixed designs (same effect per draw in every column)
            allN = np.column_stack([N, np.broadcast_to(Nm, (S, 4))])
            allD = np.column_stack([D, np.broadcast_to(Dm, (S, 4))])
            allk = np.column_stack([k, np.broadcast_to(km, (S, 4))])
            x = metric_draws(fit, coefs, np.nan_to_num(allN, nan=1.0), np.nan_to_num(allD, nan=1.0),
                             np.nan_to_num(allk, nan=1.0), law=law, seed=seed)
            x[~np.isfinite(allN)] = np.nan
            per_draw["law_metric"][:, i, j] = np.asarray(o["metric"].transpose(*dims).values, float).reshape(-1)
            for col, name in enumerate(("metric", "recommended_metric", "train_optimal_metric",
                                        "chinchilla_metric", "chinchilla_metric_k1")):
                per_draw[name][:, i, j] = x[:, col]
            for name, d in (("recommended", rec), ("train_optimal", to)):
                per_tb[f"{name}_N"][i, j], per_tb[f"{name}_D"][i, j], per_tb[f"{name}_k"][i, j] = d.as_tuple()
            per_tb["p_beats_chinchilla"][i, j] = p_beats(x[:, 1], x[:, 3], lower)
            per_tb["p_beats_train_optimal"][i, j] = p_beats(x[:, 1], x[:, 2], lower)
            shares = bound_shares(N, D, k, constraints, k_data)
            for b in BOUND_NAMES:
                per_tb[f"bounds_{b}"][i, j] = shares.get(b, np.nan)
    out = opt.copy()
    for name, v in per_tb.items():
        out[name] = (("task", "budget"), v)
    for name, v in per_draw.items():
        out[name] = ((*dims, "task", "budget"), v.reshape(*shape, nt, nb))
    out = out.transpose(*dims, "task", "budget")
    out.attrs.update({"law": int(bool(law)), "seed": int(seed), "data_k_max": np.nan if k_data is None else k_data,
                      "min_params_source": constraints.min_params_source})
    return out


def fit_route_optimum(fit: Any, budgets: list[Budget], constraints: Constraints) -> xr.Dataset:
    """The per-draw optimum of the fit's law (no extrapolation notes, no decision quantities)."""
    from .fit import route_optimum

    return route_optimum(fit.route, fit.coefficients(), budgets, constraints)
