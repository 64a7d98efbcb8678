"""Repeated data: a fit seen through the data-constrained law, for budgets with a limited supply of unique tokens.

With `unique_tokens` U set (``--unique-tokens``), training beyond U tokens repeats data, and every design is
scored at its effective tokens D' and effective parameters N' (`bayes_t2.laws.effective_tokens`,
`effective_params`; Muennighoff et al. 2023) instead of at D and N. `repeated_fit` returns a view of a `Fit`
whose route evaluates the law there and whose posterior carries, per draw and task, the four numbers the
transform needs (`REPEAT_NAMES`): U, R_D*, U_N (the compute-optimal model size for U tokens, from each draw's
own A, alpha, B, beta) and R_N*. R_D* and R_N* come from the posterior when the fit learned them (loss data with
a `unique_tokens` column), else from the published values' prior (`published_prior_draws`, seeded), so their
uncertainty reaches N*, D* and k*. Everything downstream (optimizer, baselines, decide, report) reads the view
like any fit: the optimizer's numba objective is the route's own, wrapped (`repeated_objective`), which also
sends it to the generic global search (the exact closed-form path of the loss law cannot take D'). A fit with a
discrepancy scale bends the law its view evaluates (`optimum.bent_fit` of the view: the same z per draw as
without repeated data), at the effective design, where `predict` also draws it (`optimum.bend_route`).
"""

from __future__ import annotations

import copy
from typing import Any

import numba
import numpy as np
import xarray as xr

from .laws import (PUBLISHED_R_D_STAR, PUBLISHED_R_N_STAR, effective_params, effective_params_nb,
                   effective_tokens, effective_tokens_nb, unique_params)

#: the variables a repeated view adds to the route's coefficients, in the order the objective unpacks them
REPEAT_NAMES: tuple[str, ...] = ("unique_tokens", "R_D_star", "U_N", "R_N_star")
#: the published values and the spread the package gives them (log-normal: median, sd of the log). The paper
#: reports point estimates only; log-sd 0.5 (a 90% interval of x/÷ 2.3) is this package's choice, wide enough to
#: cover refits on other corpora (docs/model.md, "Repeated data")
PUBLISHED_PRIOR: dict[str, dict[str, float]] = {
    "R_D_star": {"median": PUBLISHED_R_D_STAR, "log_sd": 0.5},
    "R_N_star": {"median": PUBLISHED_R_N_STAR, "log_sd": 0.5},
}
#: an R* that switches the decay off (R* (1 - e^(-R/R*)) = R to float precision) yet stays finite, which the
#: optimizer requires of every coefficient of a draw
R_STAR_OFF = 1e300
#: seed offset of the published-prior draws (kept apart from the checkpoint-scatter draws of the same seed)
_SEED_STREAM = 16


def published_prior_draws(name: str, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Seeded draws of R_D* or R_N* from the published prior (log-normal around the published value)."""
    prior = PUBLISHED_PRIOR[name]
    rng = np.random.default_rng([int(seed), _SEED_STREAM, list(PUBLISHED_PRIOR).index(name)])
    return np.exp(np.log(prior["median"]) + prior["log_sd"] * rng.standard_normal(shape))


def repetition_coefficients(posterior: xr.Dataset, unique_tokens: Any, seed: int = 0) -> xr.Dataset:
    """U, R_D*, U_N and R_N* per draw (and task; U may carry a dim of its own, e.g. `point`, NaN = no
    repetition there): the fitted R* where the posterior has it, else seeded draws from the published prior
    (one per draw, shared by the tasks) -- except R_N* of a fit that learned R_D* but not R_N* (its data did
    not inform it, `routes.loss.repetition_terms`): off, as in the fitted law."""
    sample = {d: posterior.sizes[d] for d in ("chain", "draw")}
    coords = {d: posterior[d] for d in sample if d in posterior.coords}
    out = {"unique_tokens": unique_tokens if isinstance(unique_tokens, xr.DataArray)
           else xr.DataArray(float(unique_tokens))}
    for name in ("R_D_star", "R_N_star"):
        if name in posterior:
            out[name] = posterior[name]
        elif name == "R_N_star" and "R_D_star" in posterior:  # fitted without R_N*: as the fit had it
            out[name] = xr.DataArray(R_STAR_OFF)
        else:
            out[name] = xr.DataArray(published_prior_draws(name, tuple(sample.values()), seed), dims=tuple(sample),
                                     coords=coords)
    p = posterior
    out["U_N"] = unique_params(p["A"], p["alpha"], p["B"], p["beta"], out["unique_tokens"])
    # every variable per draw and task, as the route's coefficients are (a per-point U keeps its dim)
    return xr.Dataset({name: out[name].broadcast_like(p["A"]) for name in REPEAT_NAMES})


def effective_design(coefficients: xr.Dataset, N: Any, D: Any) -> tuple[Any, Any]:
    """(N', D'): the effective parameters and tokens of designs (N, D) under each draw's repetition numbers."""
    c = coefficients
    return (effective_params(N, c["U_N"], c["R_N_star"]),
            effective_tokens(D, c["unique_tokens"], c["R_D_star"]))


def repeated_objective(base: Any, n_coefficients: int) -> Any:
    """The optimizer objective f(theta, N, D, k) = base(theta[:n], N', D', k) for theta = the route's
    coefficients followed by `REPEAT_NAMES`: the route's own objective at the effective design (compiled
    once per objective and process, `optimum.wrapped_objective`)."""
    from .optimum import wrapped_objective

    return wrapped_objective("repetition", base, n_coefficients, _build_repeated_objective)


def _build_repeated_objective(base: Any, n: int) -> Any:
    from .optimum import OBJECTIVE_SIGNATURE

    @numba.njit(OBJECTIVE_SIGNATURE, nogil=True, error_model="numpy")
    def objective(theta, N, D, k):
        return base(theta[:n], effective_params_nb(N, theta[n + 2], theta[n + 3]),
                    effective_tokens_nb(D, theta[n], theta[n + 1]), k)

    return objective


class RepeatedRoute:
    """A route whose law is evaluated at the effective design (N', D'): the base route's interface, with
    `REPEAT_NAMES` appended to its coefficients and its metric and objective wrapped."""

    def __init__(self, base: Any) -> None:
        from .optimum import _resolve_objective

        self.base = base
        self.coefficient_names = tuple(base.coefficient_names) + REPEAT_NAMES
        objective, _ = _resolve_objective(base.objective_nb, base.coefficient_names, "search")
        self.objective_nb = repeated_objective(objective, len(base.coefficient_names))

    def __getattr__(self, name: str) -> Any:  # name, metric_name, lower_is_better, noise_names, ...
        return getattr(self.base, name)

    def metric(self, coefficients: xr.Dataset, N: Any, D: Any, k: Any, **kwargs: Any) -> xr.DataArray:
        """The base route's metric at the effective design."""
        N_eff, D_eff = effective_design(coefficients, N, D)
        return self.base.metric(coefficients, N_eff, D_eff, k, **kwargs)


def is_repeated(fit: Any) -> bool:
    return isinstance(getattr(fit, "route", None), RepeatedRoute)


def repeated_fit(fit: Any, unique_tokens: Any, seed: int = 0) -> Any:
    """A view of `fit` for data limited to `unique_tokens` U (a number, or a DataArray of one per point with
    NaN where there is no limit): its route scores designs at (N', D') and its posterior carries the
    repetition numbers (`repetition_coefficients`, R* drawn with `seed` where the fit has none). The view's
    `base_fit` is the fit itself (a bent view's unbent fit: `optimum.bent_fit` bends the repeated view)."""
    fit = getattr(fit, "unbent", fit)
    if is_repeated(fit):
        fit = fit.base_fit
    post = fit.posterior
    extra = repetition_coefficients(post, unique_tokens, seed)
    tree = fit.tree.copy()
    tree["posterior"] = xr.DataTree(post.assign({name: extra[name] for name in REPEAT_NAMES}))
    view = copy.copy(fit)
    view.tree = tree
    view.route = RepeatedRoute(fit.route)
    view.base_fit = fit
    return view


def repeated_view(fit: Any, constraints: Any, seed: int = 0) -> Any:
    """`fit` as a budget sees it: with `constraints.unique_tokens` set, seen through the data-constrained law
    (`repeated_fit`, R* drawn with `seed` where the fit has none); else (or when already a view) `fit`."""
    U = getattr(constraints, "unique_tokens", None)
    return repeated_fit(fit, U, seed) if U is not None and not is_repeated(fit) else fit


def repetition_source(fit: Any) -> dict[str, str]:
    """Where each R* of a (repeated view of a) fit comes from: "fitted" (the posterior learned it from data
    with a unique_tokens column) or "published prior" (Muennighoff et al. 2023, `PUBLISHED_PRIOR`)."""
    post = getattr(fit, "base_fit", fit).posterior
    out = {name: "fitted" if name in post else "published prior" for name in ("R_D_star", "R_N_star")}
    if "R_D_star" in post and "R_N_star" not in post:
        out["R_N_star"] = "off (not fitted: the data have too few runs beyond U_N)"
    return out


#: default sweep of `optimum_vs_unique_tokens`: U from twice the unlimited optimum's D* down by this factor
U_SWEEP_RANGE = 300.0
U_SWEEP_POINTS = 12


def optimum_vs_unique_tokens(fit: Any, budget: Any, constraints: Any, unique_tokens: Any = None,
                             seed: int = 0) -> tuple[xr.Dataset, xr.Dataset]:
    """How the per-draw optimum moves as the unique data shrink: (optimum with a dim `unique_tokens`, the
    optimum without a limit). N, D, k, metric per (chain, draw, task, unique_tokens) plus epochs = D/U.
    Default U values: `U_SWEEP_POINTS` from twice the largest median D* without a limit down by
    `U_SWEEP_RANGE`. The same seed draws the same R* at every U, and the same bend z per draw (a fit with a
    discrepancy: `optimum.bent_fit`, as `optimize`), so the curves differ by U alone."""
    from dataclasses import replace

    from .baselines import resolve_constraints
    from .fit import route_optimum
    from .optimum import bent_fit

    base = getattr(fit, "unbent", fit)
    base = getattr(base, "base_fit", base)
    constraints = resolve_constraints(base, replace(constraints, unique_tokens=None))
    bent = bent_fit(base, seed)
    free = route_optimum(bent.route, bent.coefficients(), [budget], constraints).isel(budget=0)
    if unique_tokens is None:
        top = 2.0 * float(free["D"].median(dim=("chain", "draw")).max())
        unique_tokens = np.geomspace(top / U_SWEEP_RANGE, top, U_SWEEP_POINTS)
    parts = []
    for U in np.asarray(unique_tokens, dtype=float):
        view = bent_fit(repeated_fit(base, float(U), seed), seed)
        opt = route_optimum(view.route, view.coefficients(), [budget], constraints).isel(budget=0)
        parts.append(opt[["N", "D", "k", "metric"]].assign(epochs=opt["D"] / U))
    swept = xr.concat(parts, dim=xr.DataArray(np.asarray(unique_tokens, float), dims="unique_tokens",
                                               name="unique_tokens"))
    return swept, free[["N", "D", "k", "metric"]]
