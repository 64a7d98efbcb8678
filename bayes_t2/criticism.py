"""How far to trust a fit: LOO comparison of model variants, prior sensitivity of N*, extrapolation warnings.

* `compare_fits`: PSIS-LOO (ArviZ) of fits of the same data under different model variants (with/without the
  k term: `k_term = "off"`; Student-t vs normal noise: `likelihood.family`), ranked, with Pareto-k counts.
* `prior_sensitivity`: power-scaling of the prior. The posterior under prior^alpha is the current one
  reweighted by prior^(alpha - 1) (Pareto-smoothed importance sampling), so the N* interval under wider
  (alpha < 1) and narrower (alpha > 1) priors costs no refit; the Pareto k of the weights says whether the
  reweighting can be trusted (k > 0.7: refit with the scaled prior instead). ArviZ's `psense` gradient
  diagnostic on N* is reported beside it.
* `extrapolation_notes`: a budget whose training compute is far beyond the largest 6ND in the data, or whose
  optimum trains far more (or fewer) tokens per parameter than any run in the data.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from .errors import InputError

#: Pareto k above which PSIS estimates are unreliable (Vehtari et al. 2024, for S >= 2200 draws ~0.7).
PARETO_K_BAD = 0.7
#: A budget is an extrapolation when its training compute exceeds the data's largest 6ND by this factor.
EXTRAPOLATION_FACTOR = 100.0
#: ... or when the optimum's tokens per parameter lie beyond the data's range by this factor. Extrapolating
#: the data term is what fails first on real runs: on Gadre et al.'s, a law fitted up to 20 tokens/param
#: under-predicted the loss by 2% at 40 and 13% at 640 tokens/param (README, validate_real).
TOKENS_PER_PARAM_FACTOR = 2.0
DEFAULT_ALPHAS = (0.5, 2.0)


class ExtrapolationWarning(UserWarning):
    """The asked budget lies far beyond the compute range the law was fitted on."""


# ------------------------------------------------------------------------------------------------ LOO
def compare_fits(fits: Mapping[str, Any]) -> tuple[pd.DataFrame, list[str]]:
    """PSIS-LOO comparison of fits of the same observations -> (table ranked best first, warnings).

    The table has ArviZ's columns (elpd, p, elpd_diff <= 0 to the best, weight, se, dse, ...) plus `n_bad_k`,
    the number of observations with Pareto k > 0.7 (their LOO estimate is unreliable; the elpd difference is
    then an approximation)."""
    import arviz as az

    if len(fits) < 2:
        raise InputError("compare needs at least two fit files")
    hashes = {name: f.tree.attrs.get("data_sha256") for name, f in fits.items()}
    if len(set(hashes.values())) > 1:
        raise InputError("the fits were made on different data (data_sha256 differ); LOO compares models of the "
                         "same observations: " + ", ".join(f"{n}={h[:10] if h else '?'}" for n, h in hashes.items()))
    notes: list[str] = []
    loos = {}
    for name, f in fits.items():
        if "log_likelihood" not in f.tree.children:
            raise InputError(f"{name}: the fit has no log_likelihood group (fitted with pointwise=False); refit")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loos[name] = az.loo(f.tree, pointwise=True)
        k = np.asarray(loos[name].pareto_k).ravel()
        n_bad = int(np.sum(k > PARETO_K_BAD))
        if n_bad:
            notes.append(f"{name}: {n_bad} of {k.size} observations have Pareto k > {PARETO_K_BAD} "
                         f"(max {k.max():.2f}); their LOO estimates are unreliable")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = az.compare(loos, round_to="none")
    table["n_bad_k"] = [int(np.sum(np.asarray(loos[n].pareto_k) > PARETO_K_BAD)) for n in table.index]
    return table, notes


def variant_label(fit: Any) -> str:
    """A short description of a loss-route variant from the spec stored in the fit."""
    spec = fit.spec
    lik = spec.get("likelihood", {})
    has_k = float(np.abs(fit.posterior["G"]).max()) > 0 if "G" in fit.posterior else False
    family = lik.get("family", "?") + (f"(nu={lik['nu']:g})" if lik.get("family") == "student_t" else "")
    warmup = ", warm-up" if "warmup" in fit.posterior else ""
    return f"{fit.route.name}, {'k term' if has_k else 'no k term'}{warmup}, {family}"


# ------------------------------------------------------------------------------------------------ priors
def power_scale_log_weights(log_prior: xr.DataArray, alpha: float) -> tuple[xr.DataArray, float]:
    """PSIS log weights (normalised over chain, draw) turning the posterior into the one under prior^alpha,
    and their Pareto k."""
    from arviz_stats.base.array import array_stats

    lp = log_prior.stack(sample=("chain", "draw")).transpose("sample")
    lr = (alpha - 1.0) * np.asarray(lp.values, dtype=float)
    if np.ptp(lr) == 0:  # alpha = 1 (or a flat prior): the weights are uniform
        return xr.full_like(lp, -np.log(lr.size), dtype=float).unstack("sample"), float("-inf")
    lw, khat = array_stats.psislw(-(lr - lr.max()), r_eff=1.0, axis=-1)  # psislw takes minus the log ratios
    lw = np.asarray(lw, dtype=float)
    lw = lw - np.logaddexp.reduce(lw)
    return xr.DataArray(lw, dims="sample", coords=lp.coords).unstack("sample"), float(khat)


def base_log_prior(tree: xr.DataTree) -> xr.DataArray:
    """Sum of the top-level (base) priors' log densities per draw (dims chain, draw): the population means and
    spreads (`*_mu`, `*_sd`) and the noise scale (`sigma`), whose parameters are the user's numbers in the
    spec. The task-level terms are the hierarchy, not a prior choice, and are left alone (as priorsense
    advises); if no variable follows that naming, every prior term is scaled."""
    if "log_prior" not in tree.children:
        raise InputError("the fit has no log_prior group (fitted with pointwise=False); refit")
    ds = tree["log_prior"].to_dataset()
    names = [v for v in ds.data_vars if str(v).endswith(("_mu", "_sd")) or v == "sigma"] or list(ds.data_vars)
    return sum(ds[v].astype(float).sum([d for d in ds[v].dims if d not in ("chain", "draw")]) for v in names)


def weighted_interval(values: xr.DataArray, log_weights: xr.DataArray, prob: float) -> dict[str, float]:
    """Weighted median and equal-tailed interval over (chain, draw)."""
    x = np.asarray(values.transpose("chain", "draw").values, dtype=float).ravel()
    w = np.exp(np.asarray(log_weights.transpose("chain", "draw").values, dtype=float).ravel())
    ok = np.isfinite(x)
    x, w = x[ok], w[ok] / w[ok].sum()
    order = np.argsort(x)
    cdf = np.cumsum(w[order]) - 0.5 * w[order]
    q = np.interp([(1 - prob) / 2, 0.5, (1 + prob) / 2], cdf, x[order])
    return {"lower": float(q[0]), "median": float(q[1]), "upper": float(q[2]), "prob": prob}


def prior_sensitivity(fit: Any, budget: Any, constraints: Any = None, alphas: Sequence[float] = DEFAULT_ALPHAS,
                      prob: float = 0.9) -> list[dict[str, Any]]:
    """Per task: the N* interval under the fitted prior and under the base priors raised to alpha for each
    alpha (< 1 wider, > 1 narrower), how far its ends move (ratio to the fitted interval's ends; width_ratio of
    log widths, None when the fitted interval is a single value), the Pareto k of the weights, and ArviZ's
    power-scaling sensitivity of N* to the same priors (`psense`, > 0.05 reads as prior-sensitive)."""
    import arviz as az

    opt = fit.optimize([budget], constraints).isel(budget=0)
    n_star = opt["N"].reset_coords(drop=True)
    log_prior = base_log_prior(fit.tree)
    zero = xr.zeros_like(log_prior)
    weights = {a: power_scale_log_weights(log_prior, a) for a in alphas}
    tree = fit.tree.copy()
    post = tree["posterior"].to_dataset()
    post["N_star"] = n_star.transpose("chain", "draw", "task")
    tree["posterior"] = xr.DataTree(post)
    tree["log_prior"] = xr.DataTree(xr.Dataset({"base": log_prior}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sens = az.psense(tree, var_names=["N_star"], group="prior")
    sens = sens["N_star"] if isinstance(sens, xr.Dataset) else sens
    records = []
    for task in n_star["task"].values:
        x = n_star.sel(task=task)
        base = weighted_interval(x, zero - np.log(zero.size), prob)
        rec: dict[str, Any] = {"task": str(task), "N": base, "psense": float(sens.sel(task=task)), "scaled": []}
        for a, (lw, k) in weights.items():
            iv = weighted_interval(x, lw, prob)
            rec["scaled"].append({"alpha": a, "N": iv, "pareto_k": k, "reliable": k <= PARETO_K_BAD,
                                  "lower_ratio": iv["lower"] / base["lower"], "upper_ratio": iv["upper"] / base["upper"],
                                  "width_ratio": _log_width(iv) / _log_width(base) if _log_width(base) > 0 else None})
        records.append(rec)
    return records


def _log_width(iv: dict[str, float]) -> float:
    return float(np.log(iv["upper"] / iv["lower"]))


# ------------------------------------------------------------------------------------------------ extrapolation
def data_compute_range(fit: Any) -> tuple[float, float]:
    """Smallest and largest training compute 6ND over the fit's checkpoints."""
    n, d = _checkpoints(fit)
    return float((6.0 * n * d).min()), float((6.0 * n * d).max())


def data_tokens_per_param_range(fit: Any) -> tuple[float, float]:
    """Smallest and largest tokens per parameter D/N over the fit's checkpoints."""
    n, d = _checkpoints(fit)
    return float((d / n).min()), float((d / n).max())


def _checkpoints(fit: Any) -> tuple[np.ndarray, np.ndarray]:
    cd = fit.tree["constant_data"].to_dataset() if "constant_data" in fit.tree.children else xr.Dataset()
    if "checkpoint_params" not in cd or "checkpoint_tokens" not in cd:
        raise InputError("the fit file has no checkpoint_params/checkpoint_tokens in constant_data")
    return (np.asarray(cd["checkpoint_params"].values, float), np.asarray(cd["checkpoint_tokens"].values, float))


def extrapolation_notes(fit: Any, opt: xr.Dataset, factor: float = EXTRAPOLATION_FACTOR,
                        ratio_factor: float = TOKENS_PER_PARAM_FACTOR, prob: float = 0.9) -> list[str]:
    """One line per budget that extrapolates: its training compute exceeds `factor` x the data's largest 6ND,
    or the optimum's median tokens per parameter (any task) lies beyond the data's D/N range by more than
    `ratio_factor`; with how wide the N* interval is there (upper/lower, widest task)."""
    try:
        _, cmax = data_compute_range(fit)
        rmin, rmax = data_tokens_per_param_range(fit)
    except InputError:
        return []
    budgets = json.loads(opt.attrs.get("budgets", "[]"))
    notes = []
    for j, b in enumerate(budgets):
        reasons = []
        c = float(b.get("train_flops") or b.get("total_flops") or np.nan)
        if c > factor * cmax:
            reasons.append(f"{c / cmax:.0f}x the largest 6ND in the data, {cmax:.3g}")
        tpp = opt["tokens_per_param"].isel(budget=j).median(dim=("chain", "draw"))
        hi_tpp, lo_tpp = float(tpp.max()), float(tpp.min())
        if hi_tpp > ratio_factor * rmax:
            reasons.append(f"the optimum trains {hi_tpp:.3g} tokens per parameter, {hi_tpp / rmax:.3g}x the most "
                           f"in the data, {rmax:.3g}, so the data term is extrapolated")
        elif lo_tpp < rmin / ratio_factor:
            reasons.append(f"the optimum trains {lo_tpp:.3g} tokens per parameter, below the data's least, "
                           f"{rmin:.3g}")
        if not reasons:
            continue
        n = opt["N"].isel(budget=j)
        lo = n.quantile((1 - prob) / 2, dim=("chain", "draw"))
        hi = n.quantile((1 + prob) / 2, dim=("chain", "draw"))
        ratio = float((hi / lo).max())
        notes.append(f"budget {c:.3g} training FLOPs: an extrapolation ({'; '.join(reasons)}); the {prob:.0%} "
                     f"interval of N* spans a factor {ratio:.3g} (upper/lower)")
    return notes
