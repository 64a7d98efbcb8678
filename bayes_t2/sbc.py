"""Simulation-based calibration from the model's own prior (Talts et al. 2018; Modrak et al. 2023).

`bayes_t2.calibrate` draws truths from a realistic population and asks whether the intervals hold as the
pipeline is used; that is not the SBC identity, and a population narrower than the prior makes intervals look
conservative. Here every replicate's truth is one draw of the route's own PyMC prior (`pm.sample_prior_predictive`
with a seed), on a fixed design, and its observations are that draw's prior predictive: no filter, no redraw.
If the sampler draws from the posterior, the rank of the truth among near-independent posterior draws is then
uniform for every quantity, whatever the prior. Pathological prior draws (a loss a hundred times the typical
one, a task whose counts are 0 everywhere) are kept, fitted and counted (`degenerate` in the summary): they are
a finding about the prior, not something to hide.

What is ranked, per task: every coefficient of the law (the optimizer's theta), the noise scales, and derived
quantities users read (Modrak et al. 2023: any function of parameters and data is ranked the same way): the
law's metric at an extrapolated design (`SBCDesign.extrapolate`: ten times the largest model of the design,
20 tokens per parameter), and the optimum N*, D*, k* and its metric at a budget. The truth's optimum comes from
the independent solver (`bayes_t2.reference`); the posterior's from the optimizer under test (`Fit.optimize`,
the law alone), so an optimizer that misses the global optimum shows as miscalibration.

Ranks: the posterior of each quantity is thinned evenly to L = min(99, ESS) draws (ESS the smaller of bulk and
tail, `arviz.ess`), so the kept draws are nearly independent; the rank r in 0..L (ties broken at random) becomes
the fractional rank u = (r + U) / (L + 1), U ~ Uniform(0, 1), which is Uniform(0, 1) under calibration for any
L, continuous or discrete quantity. Uniformity is tested per quantity two ways: chi-square on 10 bins of u, and
the ECDF test with simultaneous bands of Säilynoja, Bürkner & Vehtari (2022; the band's level is calibrated by
simulation with a seed). The figure shows ECDF(u) - u with the simultaneous 95% band per quantity.

The loss model is written relative to its data's typical loss L0 (a data-dependent reference point). SBC
needs the fit's prior to be the generating prior, so the compiled model of the design's template is kept and
only the observations are swapped in (nutpie's `with_data`): L0, N0, D0, k0 stay the template's. A user's fit
re-centres on its own L0, which SBC does not test (the population calibration does).
"""

from __future__ import annotations

import functools
import json
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from .budget import Budget, Constraints
from .errors import InputError
from .io import atomic_write, write_scores_bundle

#: at most this many thinned posterior draws per rank (fewer when the ESS is lower)
N_RANK_MAX = 99
#: the fewest thinned draws a rank is computed from (below, the replicate's quantity is scored NaN)
N_RANK_MIN = 9
RANK_BINS = 10
PROBS = (0.5, 0.9)
#: simulations calibrating the ECDF test's level (seeded)
ECDF_SIMULATIONS = 4000
#: flag a quantity when either uniformity test gives p below this
FLAG_P = 0.01
OPTIMUM = ("N", "D", "k", "metric")
#: k values of the default loss design (the example data have 1, 2, 4, ..., 64)
DEFAULT_KS = (1, 4, 16, 64)
#: a loss further than this factor from the template's typical loss L0 counts as degenerate (reported, kept)
LOSS_FACTOR = 100.0
#: accuracy design: 2 tasks on 20 Pythia-like checkpoints (14M-6.9B parameters x 67M-300B tokens), 64 problems x
#: 128 samples per checkpoint
ACCURACY_PARAMS = (14e6, 70e6, 410e6, 1.4e9, 6.9e9)
ACCURACY_TOKENS = (2_097_152.0 * 32, 2_097_152.0 * 1000, 2_097_152.0 * 10_000, 2_097_152.0 * 143_000)


@dataclass(frozen=True)
class SBCDesign:
    """A fixed design: the route and a template of its observations (what `route.build_model` takes: loss rows,
    or one count cell of weight 1 per problem). The template's values only set the model's reference point;
    every replicate replaces them. `extrapolate` = (N, D, k) of the extrapolated metric."""

    route: str
    template: pd.DataFrame = field(repr=False)
    extrapolate: tuple[float, float, float]

    @property
    def n_tasks(self) -> int:
        return int(self.template["task"].nunique())

    @property
    def n_checkpoints(self) -> int:
        return len(self.template[["params", "tokens"]].drop_duplicates())

    def describe(self) -> str:
        t = self.template
        if self.route == "loss":
            per = f"k in {sorted(int(k) for k in t['k'].unique())}"
        else:
            per = (f"{len(t) // max(1, self.n_tasks * self.n_checkpoints)} problems x samples in "
                   f"{sorted(int(n) for n in t['n_samples'].unique())}")
        return f"{self.n_checkpoints} checkpoints x {self.n_tasks} tasks x {per} ({len(t)} observations)"


def _extrapolation(template: pd.DataFrame) -> tuple[float, float, float]:
    n = 10.0 * float(template["params"].max())
    return n, 20.0 * n, 1.0


def sbc_design(route: str = "loss", data: Any = None, n_tasks: int | None = None,
               ks: Sequence[int] | None = None) -> SBCDesign:
    """The design of `data` (EvalData: loss rows, or per-problem samples for the accuracy route), or the default:
    the embedded example loss data's 72 checkpoints at k in {1, 4, 16, 64} with its first 2 tasks (loss), or 2
    tasks on a 20-checkpoint Pythia-like grid, 64 problems x 128 samples each (accuracy). `n_tasks` keeps the
    first tasks (sorted) of the design, `ks` these k values (loss)."""
    if route == "loss":
        if data is None:
            from .api import example_data
            from .data import read_data

            data = read_data(example_data("loss"))
            n_tasks, ks = (2 if n_tasks is None else n_tasks), (DEFAULT_KS if ks is None else ks)
        if data.kind != "loss":
            raise InputError(f"SBC of the loss route needs loss data for its design (got kind '{data.kind}')")
        from .routes.loss import LossRoute

        frame = LossRoute.observations(data)
        if ks is not None:
            frame = frame[frame["k"].isin([float(k) for k in ks])]
            if frame.empty:
                raise InputError(f"the design has no rows at k in {list(ks)}")
    elif route == "accuracy":
        if data is None:
            ckpt = [(n, d) for n in ACCURACY_PARAMS for d in ACCURACY_TOKENS]
            tasks = [f"task_{c}" for c in "abcdefgh"[: (2 if n_tasks is None else max(1, min(8, n_tasks)))]]
            frame = pd.DataFrame([(t, n, d, 128, 0) for t in tasks for n, d in ckpt for _ in range(64)],
                                 columns=["task", "params", "tokens", "n_samples", "n_correct"])
        else:
            if data.kind != "samples":
                raise InputError(f"SBC of the accuracy route needs samples data (problem, n_samples, n_correct) "
                                 f"for its design (got kind '{data.kind}')")
            frame = data.frame[["task", "params", "tokens", "n_samples", "n_correct"]].copy()
        frame = frame.assign(weight=1)  # one cell per problem: the prior predictive draws its count
    else:
        raise InputError(f"SBC of route '{route}' is not available (loss, accuracy)")
    tasks = sorted(frame["task"].astype(str).unique())
    if n_tasks is not None:
        if n_tasks < 1:
            raise InputError(f"--n-tasks must be >= 1, got {n_tasks}")
        frame = frame[frame["task"].astype(str).isin(tasks[:n_tasks])]
    frame = frame.reset_index(drop=True)
    return SBCDesign(route, frame, _extrapolation(frame))


# ------------------------------------------------------------------------------------------- ranks and tests
def fractional_ranks(draws: np.ndarray, truth: float, rng: np.random.Generator,
                     n_keep: int = N_RANK_MAX) -> tuple[float, int, float]:
    """(rank, L, u) of `truth` among `n_keep` draws thinned evenly from `draws` (1-D, in sampling order), ties
    broken at random: rank in 0..L, u = (rank + U) / (L + 1) ~ Uniform(0, 1) under calibration."""
    x = np.asarray(draws, dtype=float)
    L = int(min(n_keep, x.size))
    thin = x[np.linspace(0, x.size - 1, L).round().astype(int)]
    ties = int(np.sum(thin == truth))
    r = int(np.sum(thin < truth)) + int(rng.integers(0, ties + 1))
    return float(r), L, (r + float(rng.uniform())) / (L + 1)


def chi2_uniformity(u: np.ndarray, bins: int = RANK_BINS) -> float:
    """p-value of the chi-square test of `bins` equal bins of u in (0, 1) (NaN with fewer than 5 per bin)."""
    from scipy.stats import chisquare

    u = np.asarray(u, dtype=float)
    if u.size < 5 * bins:
        return float("nan")
    counts = np.histogram(u, bins=bins, range=(0.0, 1.0))[0]
    return float(chisquare(counts).pvalue)


def _ecdf_grid(n: int) -> np.ndarray:
    k = int(min(n, 100))
    return np.arange(1, k) / k


def _ecdf_stat(sorted_u: np.ndarray, z: np.ndarray) -> np.ndarray:
    """min over z of the two-sided binomial tail probability of n ECDF(z) (rows: samples)."""
    from scipy.stats import binom

    n = sorted_u.shape[-1]
    counts = np.stack([np.searchsorted(row, z, side="right") for row in np.atleast_2d(sorted_u)])
    lo, hi = binom.cdf(counts, n, z), binom.sf(counts - 1, n, z)
    return np.min(2.0 * np.minimum(lo, hi), axis=-1)


@functools.lru_cache(maxsize=64)
def ecdf_null(n: int, seed: int = 0, n_sim: int = ECDF_SIMULATIONS) -> np.ndarray:
    """The ECDF statistic of `n_sim` uniform samples of size n (its null distribution; seeded)."""
    rng = np.random.default_rng([seed, n, 17])
    return _ecdf_stat(np.sort(rng.uniform(size=(n_sim, n)), axis=1), _ecdf_grid(n))


def ecdf_uniformity(u: np.ndarray, seed: int = 0, n_sim: int = ECDF_SIMULATIONS) -> float:
    """p-value of the ECDF test with simultaneous bands (Säilynoja et al. 2022): the smallest two-sided
    binomial tail probability of n ECDF(z) over a grid of z, against its null distribution by simulation."""
    u = np.sort(np.asarray(u, dtype=float))
    if u.size < 5:
        return float("nan")
    obs = float(_ecdf_stat(u, _ecdf_grid(u.size))[0])
    null = ecdf_null(u.size, seed, n_sim)
    return float((1 + np.sum(null <= obs)) / (1 + null.size))


def ecdf_band(n: int, level: float = 0.95, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(z, lower, upper): the simultaneous `level` band of ECDF(z) - z for n uniform fractional ranks."""
    from scipy.stats import binom

    z = _ecdf_grid(n)
    gamma = float(np.quantile(ecdf_null(n, seed), 1 - level))
    return z, binom.ppf(gamma / 2, n, z) / n - z, binom.ppf(1 - gamma / 2, n, z) / n - z


def uniformity(u: np.ndarray, seed: int = 0, probs: Sequence[float] = PROBS) -> dict[str, Any]:
    """Per quantity: both uniformity tests, the coverage of the central `probs` by rank (Wilson 95% interval),
    the mean fractional rank (0.5 unbiased; above 0.5 the truth sits high in its posterior: the posterior
    under-estimates) and `flagged` (either p below `FLAG_P`)."""
    from .calibrate import wilson

    u = np.asarray(u, dtype=float)
    u = u[np.isfinite(u)]
    rec: dict[str, Any] = {"n": int(u.size), "chi2_pvalue": chi2_uniformity(u), "ecdf_pvalue": ecdf_uniformity(u, seed),
                           "mean_rank": float(np.mean(u)) if u.size else float("nan"),
                           "histogram": np.histogram(u, bins=RANK_BINS, range=(0, 1))[0].astype(int).tolist()}
    for p in probs:
        hits = int(np.sum(np.abs(u - 0.5) <= p / 2))
        lo, hi = wilson(hits, u.size)
        rec[f"coverage_{round(100 * p)}"] = {"coverage": hits / u.size if u.size else float("nan"),
                                             "wilson_lower": lo, "wilson_upper": hi}
    rec["flagged"] = bool(any(np.isfinite(p) and p < FLAG_P for p in (rec["chi2_pvalue"], rec["ecdf_pvalue"])))
    return rec


def score_draws(post: xr.DataArray, truth: xr.DataArray, rng: np.random.Generator) -> xr.Dataset:
    """Ranks of the truth per (quantity, task). post: dims (chain, draw, quantity, task); truth: (quantity,
    task). Each cell's draws are thinned to min(99, ESS) (ESS: the smaller of bulk and tail); non-finite draws
    are counted (`nonfinite`) and dropped; a cell with fewer than `N_RANK_MIN` usable draws scores NaN."""
    import arviz as az

    post = post.transpose("chain", "draw", "quantity", "task")
    truth = truth.transpose("quantity", "task")
    x = np.asarray(post.values, dtype=float)
    t = np.asarray(truth.values, dtype=float)
    shape = t.shape
    out = {name: np.full(shape, np.nan) for name in ("rank", "n_rank", "u", "ess", "nonfinite", "median")}
    finite = np.isfinite(x)
    # ESS of every cell at once (non-finite draws set to the cell's median; a constant cell has no ESS: its
    # draws are an atom, each as good as independent)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        fill = np.where(finite, x, np.nanmedian(np.where(finite, x, np.nan), axis=(0, 1), keepdims=True))
        fill = np.where(np.isfinite(fill), fill, 0.0)
        ess = np.minimum(np.asarray(az.ess(fill, method="bulk", chain_axis=0, draw_axis=1)),
                         np.asarray(az.ess(fill, method="tail", prob=(0.05, 0.95), chain_axis=0, draw_axis=1)))
    constant = np.ptp(fill, axis=(0, 1)) == 0
    ess = np.where(constant, float(x.shape[0] * x.shape[1]), ess)
    for q, j in np.ndindex(shape):
        chains = x[:, :, q, j]
        ok = finite[:, :, q, j]
        out["nonfinite"][q, j] = float(np.sum(~ok))
        if not np.isfinite(t[q, j]) or not ok.any():
            continue
        flat = chains.ravel()[ok.ravel()]
        out["median"][q, j] = float(np.median(flat))
        out["ess"][q, j] = float(ess[q, j])
        n_keep = int(min(N_RANK_MAX, math.floor(ess[q, j]) if np.isfinite(ess[q, j]) else 0, flat.size))
        if n_keep < N_RANK_MIN:
            continue
        out["rank"][q, j], out["n_rank"][q, j], out["u"][q, j] = fractional_ranks(flat, t[q, j], rng, n_keep)
    coords = {"quantity": truth["quantity"].values, "task": truth["task"].values}
    ds = xr.Dataset({k: (("quantity", "task"), v) for k, v in out.items()}, coords=coords)
    ds["truth"] = (("quantity", "task"), t)
    return ds


# -------------------------------------------------------------------------------------------- prior draws
def _observed_name(route: str) -> tuple[str, list[str]]:
    """(observed variable, the data variables its values are swapped into)."""
    return ("log_loss", ["log_loss_observed"]) if route == "loss" else ("n_correct", ["n_correct_data", "log_choose"])


def _swap_values(route: str, values: np.ndarray, template: pd.DataFrame) -> dict[str, np.ndarray]:
    if route == "loss":
        return {"log_loss_observed": np.asarray(values, dtype=float)}
    from scipy.special import gammaln

    c = np.asarray(values, dtype=np.int64)
    n = template["n_samples"].to_numpy(float)
    return {"n_correct_data": c, "log_choose": gammaln(n + 1.0) - gammaln(c + 1.0) - gammaln(n - c + 1.0)}


def prior_draws(design: SBCDesign, spec: dict, n_sims: int, seed: int) -> tuple[Any, xr.Dataset, np.ndarray]:
    """(model, truths, observations): the model of the design's template, `n_sims` draws of its prior (dims
    replicate, and task for per-task variables) and their prior predictive observations [n_sims, n_obs]."""
    import pymc as pm

    from .fit import get_route

    route = get_route(design.route)
    model = route.build_model(design.template, spec)
    route = _model_route(route, model)
    obs_name, _ = _observed_name(design.route)
    names = [v for v in _ranked_variables(route, model) if v in model.named_vars]
    with model, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = pm.sample_prior_predictive(draws=n_sims, random_seed=seed, var_names=names + [obs_name])
    prior = idata["prior"].to_dataset()[names].isel(chain=0, drop=True).rename(draw="replicate")
    obs = np.asarray(idata["prior_predictive"].to_dataset()[obs_name].isel(chain=0).values)
    return model, prior, obs.reshape(n_sims, -1)


def _model_route(route: Any, model: Any) -> Any:
    """The route that reads `model`'s variables: the warm-up law's when the loss model fits one."""
    from .routes.loss import loss_route_for

    return loss_route_for(model.named_vars) if route.name == "loss" else route


def _ranked_variables(route: Any, model: Any) -> list[str]:
    """The law's coefficients and the noise scales (those the model has)."""
    noise = ["sigma", "checkpoint_sd"] if route.name == "loss" else ["checkpoint_sd_mu", "checkpoint_sd_nu"]
    return list(route.coefficient_names) + [n for n in noise if n in model.named_vars]


def degenerate(design: SBCDesign, obs: np.ndarray, L0: float | None) -> dict[str, np.ndarray]:
    """Per replicate, which pathology its prior predictive data show (kept and fitted; counted in the summary):
    loss: non-finite, or some loss more than `LOSS_FACTOR` x from the template's typical loss L0;
    accuracy: some task with no success at all, or some task with every sample a success."""
    if design.route == "loss":
        with np.errstate(all="ignore"):
            far = np.any(np.abs(obs - math.log(L0)) > math.log(LOSS_FACTOR), axis=1)
        return {"nonfinite": ~np.all(np.isfinite(obs), axis=1), "loss_beyond_100x_typical": far}
    task = design.template["task"].astype(str).to_numpy()
    n = design.template["n_samples"].to_numpy()
    zero, full = np.zeros(len(obs), bool), np.zeros(len(obs), bool)
    for t in np.unique(task):
        m = task == t
        zero |= np.all(obs[:, m] == 0, axis=1)
        full |= np.all(obs[:, m] == n[m], axis=1)
    return {"task_all_zero": zero, "task_all_solved": full}


# ------------------------------------------------------------------------------------------------- sampling
class _SwapSampler:
    """nutpie sampling of one compiled model. Loss route: each replicate swaps only its observations in (the
    reference point L0 stays the template's). Accuracy route: each replicate's per-problem counts are collapsed
    to count cells and padded to one cell count (`calibrate.pad_cells`), and every data variable is swapped
    (`calibrate._CompiledSampler`; the reference point depends on the checkpoints only, the same in every
    replicate): the same likelihood as per-problem cells at a fraction of the cost."""

    def __init__(self, route: Any, model: Any, spec: dict, settings: Any, design: SBCDesign,
                 n_cells: int | None = None) -> None:
        from .calibrate import _CompiledSampler

        self.route, self.model, self.spec, self.settings, self.design = route, model, spec, settings, design
        self.n_cells = n_cells
        self.cells_sampler = _CompiledSampler(route, spec, settings) if route.name == "accuracy" else None
        self.compiled: Any = None

    def fit(self, obs: np.ndarray, seed: int, longer: int = 1):
        """Sample the posterior of `obs`; `longer`: draws and tuning steps times this factor."""
        from dataclasses import replace

        s = replace(self.settings, draws=self.settings.draws * longer, tune=self.settings.tune * longer)
        if self.cells_sampler is not None:
            from .calibrate import pad_cells

            return self.cells_sampler.fit(pad_cells(collapse_problems(self.design, obs), self.n_cells), seed, s)
        import nutpie

        from .fit import FIT_FORMAT, Fit
        from .priors import spec_to_json

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if self.compiled is None:
                self.compiled = nutpie.compile_pymc_model(self.model)
            started = time.perf_counter()
            tree = nutpie.sample(self.compiled.with_data(**_swap_values(self.route.name, obs, self.design.template)),
                                 draws=s.draws, tune=s.tune, chains=s.chains, seed=seed, adaptation="low_rank",
                                 target_accept=s.target_accept, progress_bar=False)
        scaling = getattr(self.model, "bayes_t2_scaling", None)
        tree.attrs.update({"bayes_t2_format": FIT_FORMAT, "route": self.route.name,
                           "model_spec": spec_to_json(self.spec),
                           "scaling": json.dumps(scaling.as_dict() if hasattr(scaling, "as_dict") else (scaling or {})),
                           "sampling_seconds": round(time.perf_counter() - started, 2)})
        return Fit(tree)


def collapse_problems(design: SBCDesign, obs: np.ndarray) -> pd.DataFrame:
    """One replicate's per-problem counts (in the template's order) as collapsed count cells."""
    from .data import collapse_counts

    frame = design.template.drop(columns=["weight"]).assign(n_correct=np.asarray(obs, dtype=np.int64))
    return collapse_counts(frame)


def _truth_of(prior: xr.Dataset, i: int, tasks: Sequence[str]) -> xr.Dataset:
    """Replicate i's truth with dims (draw, task) (scalars broadcast over tasks)."""
    one = prior.isel(replicate=i, drop=True)
    out = {}
    for name, v in one.data_vars.items():
        arr = np.asarray(v.values, dtype=float)
        out[name] = (("draw", "task"), np.broadcast_to(arr, (len(tasks),))[None, :].copy())
    return xr.Dataset(out, coords={"draw": [0], "task": list(tasks)})


#: a replicate whose chains disagree (max r-hat above this) is sampled again, RETRY_FACTOR times longer
RETRY_RHAT = 1.05
RETRY_FACTOR = 4


def replicate(sampler: _SwapSampler, design: SBCDesign, truth: xr.Dataset, obs: np.ndarray, seed: int,
              budget: Budget, constraints: Constraints, rng: np.random.Generator,
              retry: bool = True) -> xr.Dataset:
    """One fit of a prior draw's data and the truth's ranks: dims (quantity, task), plus fit diagnostics.

    retry: when the chains disagree (max r-hat > RETRY_RHAT) the same data are sampled again, RETRY_FACTOR
    times longer, with the same seed, and that fit is ranked (as a user would re-run a fit that did not mix).
    The rule depends on the sampler's behaviour, never on the truth, and keeps every replicate, so it selects
    nothing; `retried` says which replicates needed it."""
    from .fit import diagnose
    from .reference import reference_route_optimum

    route = sampler.route
    fit = sampler.fit(obs, seed)
    retried, seconds = False, float(fit.tree.attrs["sampling_seconds"])
    diag = diagnose(fit.tree, list(route.coefficient_names))
    if retry and diag.max_rhat > RETRY_RHAT:
        fit = sampler.fit(obs, seed, longer=RETRY_FACTOR)
        retried, seconds = True, seconds + float(fit.tree.attrs["sampling_seconds"])
        diag = diagnose(fit.tree, list(route.coefficient_names))
    post = fit.posterior
    tasks = [str(t) for t in post["task"].values]
    # a coefficient pinned by the parameterisation (the accuracy route's E = 0) carries no information
    names = [v for v in truth.data_vars if v in post and not (float(post[v].std()) == 0
                                                              and float(truth[v].std()) == 0)]
    q_post = {n: post[n] for n in names}
    q_true = {n: truth[n].isel(draw=0, drop=True) for n in names}
    N, D, k = design.extrapolate
    q_post["metric_extrapolated"] = route.metric(post[list(route.coefficient_names)], N, D, k)
    q_true["metric_extrapolated"] = route.metric(truth[list(route.coefficient_names)], N, D, k).isel(draw=0, drop=True)
    resolved = constraints.resolve_min_params(float(design.template["params"].min()))
    opt = fit.optimize([budget], resolved, law=True).isel(budget=0)
    true_opt = reference_route_optimum(route, truth[list(route.coefficient_names)], [budget],
                                       resolved).isel(budget=0, draw=0)
    for q in OPTIMUM:
        q_post[f"optimum_{q}"], q_true[f"optimum_{q}"] = opt[q], true_opt[q]
    quantities = list(q_post)

    def stack(parts: dict[str, xr.DataArray], dims: tuple[str, ...]) -> xr.DataArray:
        arrs = []
        for name in quantities:
            a = parts[name]
            a = a.drop_vars([c for c in a.coords if c not in dims])
            if "task" not in a.dims:  # a scalar (checkpoint_sd): the same in every task
                a = a.expand_dims(task=tasks)
            arrs.append(a.assign_coords(task=tasks).transpose(*dims))
        return xr.concat(arrs, dim=pd.Index(quantities, name="quantity"), coords="minimal", compat="override")

    ds = score_draws(stack(q_post, ("chain", "draw", "task")), stack(q_true, ("task",)), rng)
    ds["max_rhat"] = diag.max_rhat
    ds["divergences"] = diag.divergences
    ds["sampling_seconds"] = seconds
    ds["retried"] = retried
    return ds


def run_sbc(design: SBCDesign, *, n_sims: int = 100, seed: int = 0, budget: Budget | None = None,
            constraints: Constraints = Constraints(), priors: str | Path | dict | None = None,
            settings: Any = None,
            on_replicate: Callable[[xr.Dataset, int], Any] | None = None) -> xr.Dataset:
    """SBC of `design.route`: `n_sims` truths from the prior (seeded by `seed`), each fitted (chain seeds from
    seed + 1 + i) and ranked. Returns dims (replicate, quantity, task) with the degenerate-data flags per
    replicate. `on_replicate(scores_so_far, i)` after each (the benchmark saves partial results)."""
    from .fit import SamplerSettings, get_route
    from .priors import load_spec
    from .simulate import T2_BUDGET

    if n_sims < 1:
        raise InputError(f"--n-sims must be >= 1, got {n_sims}")
    budget = budget or T2_BUDGET
    settings = settings or SamplerSettings(draws=300, tune=300, chains=2)
    route = get_route(design.route)
    spec = load_spec(route.name, priors)
    model, prior, obs = prior_draws(design, spec, n_sims, seed)
    route = _model_route(route, model)
    scaling = getattr(model, "bayes_t2_scaling", None)
    flags = degenerate(design, obs, getattr(scaling, "L0", None))
    n_cells = (max(len(collapse_problems(design, o)) for o in obs if np.all(np.isfinite(o)))
               if design.route == "accuracy" else None)
    sampler = _SwapSampler(route, model, spec, settings, design, n_cells)
    tasks = [str(t) for t in model.coords["task"]]
    rng = np.random.default_rng([seed, 4243])
    done: list[xr.Dataset] = []
    scores = xr.Dataset()
    for i in range(n_sims):
        if not np.all(np.isfinite(obs[i])):  # nothing to fit: counted as degenerate, not ranked
            continue
        ds = replicate(sampler, design, _truth_of(prior, i, tasks), obs[i], seed + 1 + i, budget, constraints, rng)
        done.append(ds.expand_dims(replicate=[i]))
        scores = xr.concat(done, dim="replicate", join="outer")
        for name, v in flags.items():
            scores[f"degenerate_{name}"] = ("replicate", v[scores["replicate"].values])
        scores.attrs.update({"route": design.route, "n_sims": n_sims, "seed": seed, "design": design.describe(),
                             "budget": json.dumps(budget.as_dict()), "extrapolate": json.dumps(design.extrapolate),
                             "degenerate_counts": json.dumps({k: int(v.sum()) for k, v in flags.items()}),
                             "sampler_settings": json.dumps({"draws": settings.draws, "tune": settings.tune,
                                                             "chains": settings.chains})})
        if on_replicate is not None:
            on_replicate(scores, i)
    if not done:
        raise InputError("every prior draw gave non-finite data; nothing to rank")
    return scores


# ---------------------------------------------------------------------------------------------------- output
def sbc_summary(scores: xr.Dataset, seed: int = 0) -> dict[str, Any]:
    """The JSON summary: per quantity the uniformity tests and coverage by rank (tasks of a replicate pooled:
    they share hyper-parameters, so cells are not fully independent), degenerate draws, diagnostics."""
    rhat = np.asarray(scores["max_rhat"].values, dtype=float)
    quantities = {}
    for q in scores["quantity"].values:
        u = np.asarray(scores["u"].sel(quantity=q).values, dtype=float).ravel()
        rec = uniformity(u, seed)
        rec["nonfinite_draws"] = int(np.nansum(scores["nonfinite"].sel(quantity=q).values))
        rec["median_ess"] = float(np.nanmedian(scores["ess"].sel(quantity=q).values))
        ess = np.asarray(scores["ess"].sel(quantity=q).values, dtype=float)
        rec["unranked_low_ess"] = int(np.sum(np.isfinite(ess) & (ess < N_RANK_MIN)))
        quantities[str(q)] = rec
    # every test that could be run (chi-square needs 50 ranks; with fewer, the ECDF test alone)
    tests = [p for r in quantities.values() for p in (r["chi2_pvalue"], r["ecdf_pvalue"]) if np.isfinite(p)]
    pvals, n_tests = tests, len(tests)
    return {
        "route": scores.attrs.get("route"), "design": scores.attrs.get("design"),
        "n_sims": int(scores.attrs.get("n_sims", scores.sizes["replicate"])),
        "n_replicates_ranked": int(scores.sizes["replicate"]), "n_tasks": int(scores.sizes["task"]),
        "budget": json.loads(scores.attrs.get("budget", "{}")),
        "extrapolate": json.loads(scores.attrs.get("extrapolate", "null")),
        "sampler_settings": json.loads(scores.attrs.get("sampler_settings", "{}")),
        "degenerate": json.loads(scores.attrs.get("degenerate_counts", "{}")),
        "diagnostics": {"max_rhat_median": float(np.nanmedian(rhat)), "max_rhat_max": float(np.nanmax(rhat)),
                        "share_rhat_below_1.05": float(np.mean(rhat < 1.05)),
                        "divergences_total": int(np.nansum(scores["divergences"].values)),
                        "replicates_sampled_again_longer": (int(np.sum(scores["retried"].values))
                                                            if "retried" in scores else 0),
                        "seconds_per_replicate": float(np.nanmean(scores["sampling_seconds"].values))},
        "smallest_p": float(min(pvals)) if pvals else float("nan"),
        "bonferroni_tests": n_tests,
        "flagged": [q for q, r in quantities.items() if r["flagged"]],
        "passes": bool(pvals) and min(pvals) * n_tests >= 0.05,
        "quantities": quantities,
    }


def write_sbc(scores: xr.Dataset, out_dir: str | Path, *, overwrite: bool = False, seed: int = 0) -> dict[str, Path]:
    """sbc.nc, sbc.json, sbc.png and sbc.pdf in `out_dir` (each written atomically; none over a file without
    `overwrite`)."""
    return write_scores_bundle(scores, out_dir, "sbc", lambda s: sbc_summary(s, seed),
                               functools.partial(plot_sbc, seed=seed), overwrite=overwrite)


def plot_sbc(scores: xr.Dataset, summ: dict[str, Any], png: Path, pdf: Path, *, overwrite: bool = False,
             seed: int = 0) -> None:
    """ECDF(u) - u per quantity with its simultaneous 95% band (Säilynoja et al. 2022)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    quantities = list(summ["quantities"])
    ncol = min(5, len(quantities))
    nrow = math.ceil(len(quantities) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(2.6 * ncol, 2.1 * nrow + 0.6), squeeze=False)
    for ax in axes.ravel()[len(quantities):]:
        ax.axis("off")
    for ax, q in zip(axes.ravel(), quantities):
        u = np.sort(np.asarray(scores["u"].sel(quantity=q).values, dtype=float).ravel())
        u = u[np.isfinite(u)]
        rec = summ["quantities"][q]
        if u.size >= 5:
            z, lo, hi = ecdf_band(u.size, seed=seed)
            ax.fill_between(z, lo, hi, color="C0", alpha=0.2, lw=0)
            grid = np.linspace(0, 1, 201)
            ax.plot(grid, np.searchsorted(u, grid, side="right") / u.size - grid, color="C3" if rec["flagged"] else "k",
                    lw=1)
        ax.axhline(0, color="0.5", lw=0.5)
        ax.set_title(f"{q}\np = {rec['ecdf_pvalue']:.2g} (ECDF), {rec['chi2_pvalue']:.2g} (chi2)", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"SBC from the prior, {summ['route']} route: {summ['n_replicates_ranked']} replicates x "
                 f"{summ['n_tasks']} tasks; ECDF(rank) - uniform, 95% simultaneous band", fontsize=9)
    fig.tight_layout()
    atomic_write(png, lambda p: fig.savefig(p, format="png", dpi=110), overwrite=overwrite)
    atomic_write(pdf, lambda p: fig.savefig(p, format="pdf"), overwrite=overwrite)
    plt.close(fig)
