"""Simulation-based calibration (SBC) of the whole pipeline: simulate -> fit -> solve the optimum.

Each replicate draws true coefficients from the simulator's population (a realistic spread, not the model's
prior, so this checks the pipeline as used rather than the textbook SBC identity), simulates an evaluation
set with a fixed design (the user's checkpoints and k values, or the simulator's default testbed), fits it,
solves N*, D*, k* at a budget for every draw, and scores the posterior of every coefficient, N*, D*, k* and
the metric at the optimum against the truth: the rank of the truth among thinned draws, ties broken at
random (uniform when calibrated), and whether it lies inside the 50% / 90% equal-tailed intervals. The true
optimum comes from the independent reference solver (`bayes_t2.reference`), so an optimizer that misses the
global optimum shows as miscalibration instead of agreeing with itself.

Convention: coverage is judged by rank (the share of ranks in the central 50% / 90%). That is nominal under
calibration for every quantity, including the discrete ones: k* is an integer and at a split budget
N* = C_inf / (2 k* T) and D* follow it, so their posterior has atoms and an interval whose ends are atoms
holds more than its nominal mass. The inclusive interval coverage (truth inside [lower, upper], what a user
reads off `Fit.optimize`) is reported beside it; for discrete quantities it is conservative.

All replicates share one design, so the model is compiled once and each replicate swaps its data in
(nutpie's `with_data`); the route's model must therefore take everything data-dependent through `pm.Data`,
which `_CompiledSampler` verifies on the first swap. On the accuracy route the data are collapsed count cells
whose number varies between replicates; every replicate is padded to one cell count by splitting cells into
cells of fewer problems (`pad_cells`: the weighted likelihood is linear in the weight, so the log density is
unchanged), so the shapes match.

Accuracy route: the fit reports its T2 coefficients in a pinned normalisation (E = 0, unit log-slope of the
latent loss at the reference checkpoint); the truth is mapped to it (`standardize_coefficients`) before it is
scored. N*, D*, k* and pass@k at the optimum do not depend on the normalisation.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from .budget import Budget, Constraints
from .data import EvalData, from_frame
from .errors import InputError
from .fit import FIT_FORMAT, Fit, SamplerSettings, diagnose, get_route
from .io import atomic_write, write_scores_bundle
from .priors import load_spec, spec_to_json
from .reference import reference_route_optimum
from .simulate import T2_BUDGET, simulate, simulate_accuracy_population

#: The T2 paper's split budget: 2.56e19 training FLOPs, 2e9 inference FLOPs per query.
DEFAULT_BUDGET = T2_BUDGET
PROBS = (0.5, 0.9)
#: Draws the truth is ranked among (thinned evenly from the posterior), so ranks lie in 0..N_RANK.
N_RANK = 99
RANK_BINS = 10
#: Cells needed before the truths' 5-95% range means anything (the `identification` note).
MIN_CELLS_IDENTIFICATION = 20
#: Quantities of the optimum scored besides the law's coefficients (names as in Fit.optimize).
OPTIMUM_QUANTITIES = ("N", "D", "k", "metric")
#: Default calibration testbed: a smaller IsoFLOP suite than `simulate`'s default, three tasks.
DEFAULT_DESIGN_KW = dict(n_tasks=3, budgets=tuple(np.geomspace(1.25e16, 2.56e19, 6)), sizes_per_budget=5,
                         n_overtrained=3, ks=(1, 4, 16, 64))
#: Default accuracy testbed: 2 tasks on a Pythia-like grid subset (5 sizes 14M-6.9B x 4 token counts 67M-300B),
#: 64 problems x 128 samples per checkpoint.
ACCURACY_DESIGN = dict(n_tasks=2, params=(14e6, 70e6, 410e6, 1.4e9, 6.9e9),
                       tokens=(2_097_152.0 * 32, 2_097_152.0 * 1000, 2_097_152.0 * 10_000, 2_097_152.0 * 143_000),
                       n_problems=64, n_samples=(128,))


@dataclass(frozen=True)
class CalibrationDesign:
    """What every simulated replicate looks like: route, checkpoints, number of tasks, and per route the k
    values and log-loss noise (loss) or the problems per checkpoint and samples per problem (accuracy; `ks`
    holds the choices of samples per problem, each problem draws one uniformly; `deviation_nu` the Student-t
    degrees of freedom of the checkpoint deviations, None for normal ones — `calibrate` sets it from the
    model's specification, so the truth follows the model's generative process)."""

    route: str
    checkpoints: pd.DataFrame = field(repr=False)
    ks: tuple[int, ...]
    n_tasks: int
    noise: float = 0.01
    n_problems: int = 0
    deviation_nu: float | None = None

    def simulate(self, seed: int) -> tuple[pd.DataFrame, dict]:
        if self.route == "loss":
            return simulate(self.route, seed, n_tasks=self.n_tasks, ks=self.ks, noise=self.noise,
                            checkpoints=self.checkpoints)
        if self.route == "accuracy":
            ckpt = self.checkpoints[["params", "tokens"]].to_numpy(float)
            return simulate_accuracy_population(seed, ckpt, n_tasks=self.n_tasks, n_problems=self.n_problems,
                                                n_samples=self.ks, deviation_nu=self.deviation_nu)
        raise InputError(f"calibration of route '{self.route}' is not available (loss, accuracy)")


def default_design(route: str = "loss", seed: int = 0, noise: float = 0.01) -> CalibrationDesign:
    """Loss: the simulator's IsoFLOP + over-training testbed (built around the truth of `seed`), 3 tasks.
    Accuracy: `ACCURACY_DESIGN` (2 tasks, 20 Pythia-like checkpoints, 64 problems x 128 samples)."""
    if route == "accuracy":
        d = ACCURACY_DESIGN
        ckpt = pd.DataFrame([(n, t) for n in d["params"] for t in d["tokens"]], columns=["params", "tokens"])
        return CalibrationDesign(route, ckpt, tuple(d["n_samples"]), int(d["n_tasks"]), noise,
                                 n_problems=int(d["n_problems"]))
    if route != "loss":
        raise InputError(f"calibration of route '{route}' is not available (loss, accuracy)")
    frame, _ = simulate(route, seed, noise=noise, **DEFAULT_DESIGN_KW)
    return CalibrationDesign(route, frame[["params", "tokens"]].drop_duplicates(), tuple(DEFAULT_DESIGN_KW["ks"]),
                             int(DEFAULT_DESIGN_KW["n_tasks"]), noise)


def design_from_data(data: EvalData, route: str = "loss", noise: float = 0.01) -> CalibrationDesign:
    """The design of a user's data: its checkpoints, k values and number of tasks (loss route), or its
    checkpoints, number of tasks, problems per checkpoint (the largest count) and samples per problem (its
    distinct values; accuracy route, samples data)."""
    if route == "accuracy":
        if data.kind != "samples":
            raise InputError(f"accuracy calibration needs samples data (problem, n_samples, n_correct) for its "
                             f"design (got kind '{data.kind}')")
        frame = data.frame
        per_unit = frame.groupby(["task", "params", "tokens"], observed=True).size()
        return CalibrationDesign(route, frame[["params", "tokens"]].drop_duplicates().reset_index(drop=True),
                                 tuple(int(n) for n in sorted(frame["n_samples"].unique())), len(data.tasks),
                                 noise, n_problems=int(per_unit.max()))
    if data.kind != "loss":
        raise InputError(f"calibration needs loss data for its design (got kind '{data.kind}')")
    ks = tuple(int(k) for k in sorted(data.frame["k"].unique())) if "k" in data.frame else (1,)
    return CalibrationDesign(route, data.frame[["params", "tokens"]].drop_duplicates(), ks,
                             len(data.tasks), noise)


# ---------------------------------------------------------------------------------------------- scoring
def score(draws: xr.DataArray, truth: xr.DataArray, rng: np.random.Generator,
          probs: Sequence[float] = PROBS, n_rank: int = N_RANK) -> xr.Dataset:
    """Score posterior draws against the truth, per (quantity, task).

    draws: dims (sample, quantity, task); truth: dims (quantity, task). Returns truth, median, interval ends
    and `covered_<p>` (truth inside the equal-tailed interval, ends included) for each prob, and `rank`: the
    number of `n_rank` evenly thinned draws below the truth, ties broken at random (0..n_rank; uniform
    when calibrated). Non-finite draws are dropped; a cell without finite draws scores NaN.
    """
    draws = draws.transpose("sample", ...)
    x = np.asarray(draws.values, dtype=float)
    t = np.asarray(truth.transpose(*draws.dims[1:]).values, dtype=float)
    out: dict[str, np.ndarray] = {"truth": t, "median": np.full(t.shape, np.nan)}
    for p in probs:
        out[f"lower_{_pct(p)}"] = np.full(t.shape, np.nan)
        out[f"upper_{_pct(p)}"] = np.full(t.shape, np.nan)
        out[f"covered_{_pct(p)}"] = np.full(t.shape, np.nan)
    rank = np.full(t.shape, np.nan)
    for idx in np.ndindex(t.shape):
        col = x[(slice(None),) + idx]
        col = col[np.isfinite(col)]
        if col.size == 0 or not np.isfinite(t[idx]):
            continue
        out["median"][idx] = np.median(col)
        for p in probs:
            lo, hi = np.quantile(col, [(1 - p) / 2, (1 + p) / 2])
            out[f"lower_{_pct(p)}"][idx], out[f"upper_{_pct(p)}"][idx] = lo, hi
            out[f"covered_{_pct(p)}"][idx] = float(lo <= t[idx] <= hi)
        thin = col[np.linspace(0, col.size - 1, n_rank).round().astype(int)]
        ties = int(np.sum(thin == t[idx]))
        rank[idx] = np.sum(thin < t[idx]) + rng.integers(0, ties + 1)
    dims = draws.dims[1:]
    coords = {d: draws[d].values for d in dims}
    ds = xr.Dataset({name: (dims, value) for name, value in out.items()}, coords=coords)
    ds["rank"] = (dims, rank)
    ds.attrs["n_rank"] = n_rank
    return ds


def coverage_summary(scores: xr.Dataset, probs: Sequence[float] = PROBS, z: float = 1.96) -> dict[str, Any]:
    """Per quantity: coverage at each prob, judged two ways, a rank uniformity test and `flagged`.

    * `coverage_<p>` (the primary measure): the share of cells whose randomised rank lies in the central p of
      the n_rank + 1 possible ranks (SBC, Talts et al. 2018). With ties broken at random it is exactly nominal
      under calibration for continuous and discrete quantities alike (k*, and N*, D* on a k-segment end).
    * `inclusive_<p>`: the truth inside the equal-tailed interval, ends included, as `Fit.optimize` reports
      it. For a continuous quantity it agrees with the primary measure; for a discrete one it holds at least
      p of the posterior mass and covers more than p under calibration (conservative by construction).

    Both come with the binomial standard error and the 95% Wilson interval. `flagged` when the nominal p lies
    outside the primary measure's Wilson interval, or the ranks are not uniform (chi-square p < 0.01).
    `identification` compares the median width of the 90% intervals with the 5-95% range of the truths
    themselves: a ratio above 1 means the design barely informs the quantity (its posterior is about as wide as
    the prior-like spread), so with truths drawn from a population narrower than the prior its coverage runs
    high by construction; `note` says so. That is a property of the design and population, not a flag.
    Cells are (replicate, task) pairs; tasks of one replicate share the pooled posterior, so the cells are
    not fully independent and the error bars are a little optimistic."""
    from scipy.stats import chisquare

    n_rank = int(scores.attrs.get("n_rank", N_RANK))
    out: dict[str, Any] = {}
    for q in scores["quantity"].values:
        s = scores.sel(quantity=q)
        r = np.asarray(s["rank"].values, dtype=float).ravel()
        r = r[np.isfinite(r)]
        rec: dict[str, Any] = {}
        flagged = []
        for p in probs:
            c = np.asarray(s[f"covered_{_pct(p)}"].values, dtype=float).ravel()
            rec[f"coverage_{_pct(p)}"] = _binomial(rank_covered(r, n_rank, p), p, "rank", z)
            rec[f"inclusive_{_pct(p)}"] = _binomial(c[np.isfinite(c)], p, "inclusive interval", z)
            primary = rec[f"coverage_{_pct(p)}"]
            if primary["n"] and not primary["wilson_lower"] <= p <= primary["wilson_upper"]:
                flagged.append(f"{_pct(p)}% interval covers {primary['coverage']:.0%} by rank "
                               f"(95% CI {primary['wilson_lower']:.0%}-{primary['wilson_upper']:.0%})")
        counts = np.histogram(r, bins=RANK_BINS, range=(-0.5, n_rank + 0.5))[0] if r.size else np.zeros(RANK_BINS)
        pval = float(chisquare(counts).pvalue) if r.size >= 5 * RANK_BINS else float("nan")
        rec["rank"] = {"n_rank": n_rank, "histogram": counts.astype(int).tolist(), "chi2_pvalue": pval,
                       "mean_fraction": float(np.mean(r) / n_rank) if r.size else float("nan")}
        if np.isfinite(pval) and pval < 0.01:
            flagged.append(f"ranks not uniform (chi-square p = {pval:.2g})")
        rec["flagged"] = flagged
        rec["identification"], rec["note"] = _identification(s)
        out[str(q)] = rec
    return out


def _identification(s: xr.Dataset) -> tuple[dict[str, float], str]:
    """Median 90% interval width against the truths' 5-95% range (see `coverage_summary`)."""
    if "upper_90" not in s or "lower_90" not in s:
        return {}, ""
    width = np.asarray((s["upper_90"] - s["lower_90"]).values, dtype=float).ravel()
    truth = np.asarray(s["truth"].values, dtype=float).ravel()
    width, truth = width[np.isfinite(width)], truth[np.isfinite(truth)]
    if width.size == 0 or truth.size < MIN_CELLS_IDENTIFICATION:  # too few truths to have a range
        return {}, ""
    spread = float(np.subtract(*np.quantile(truth, [0.95, 0.05])))
    median_width = float(np.median(width))
    ratio = median_width / spread if spread > 0 else float("inf")
    rec = {"median_width_90": median_width, "truth_range_90": spread, "ratio": ratio}
    note = (f"hardly informed by the design: 90% intervals (median width {median_width:.3g}) are {ratio:.1f}x "
            f"the truths' 90% range, so coverage reflects prior vs population" if ratio > 1 else "")
    return rec, note


def _binomial(hits: np.ndarray, nominal: float, measure: str, z: float) -> dict[str, Any]:
    """Coverage record of 0/1 outcomes: share, binomial standard error, Wilson interval."""
    n, k = int(hits.size), int(np.sum(hits))
    cov = k / n if n else float("nan")
    lo, hi = wilson(k, n, z)
    return {"measure": measure, "nominal": nominal, "n": n, "covered": k, "coverage": cov,
            "se": math.sqrt(cov * (1 - cov) / n) if n else float("nan"), "wilson_lower": lo, "wilson_upper": hi}


def rank_covered(ranks: np.ndarray, n_rank: int, prob: float) -> np.ndarray:
    """1 where a rank lies among the central `prob` of the n_rank + 1 possible values (ranks 0..n_rank), else
    0: the truth inside the `prob` interval, judged by rank. With ties broken at random its mean is nominal
    under calibration even for discrete quantities, whose inclusive interval coverage is above nominal."""
    cut = (n_rank + 1) * (1 - prob) / 2
    return ((ranks >= cut - 0.5) & (ranks <= n_rank - cut + 0.5)).astype(float)


def wilson(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (well-behaved at 0 and 1, unlike the normal one)."""
    if n == 0:
        return float("nan"), float("nan")
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return min(p, max(0.0, centre - half)), max(p, min(1.0, centre + half))  # p inside despite rounding


# ---------------------------------------------------------------------------------------------- sampling
class _CompiledSampler:
    """nutpie sampling of one route's model, compiled once; later data sets of the same design are swapped in."""

    def __init__(self, route: Any, spec: dict, settings: SamplerSettings) -> None:
        self.route, self.spec, self.settings = route, spec, settings
        self.compiled: Any = None
        self.reference: Any = None
        self.checked = False

    def fit(self, frame: pd.DataFrame, seed: int, settings: SamplerSettings | None = None) -> Fit:
        """Sample the route's model of `frame` (what `route.build_model` takes: loss rows or count cells), with
        `settings` (default: the sampler's own)."""
        import nutpie

        s = settings or self.settings
        model = self.route.build_model(frame, self.spec)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning)
            warnings.filterwarnings("ignore", category=UserWarning)
            if self.compiled is None:
                self.compiled, self.reference = nutpie.compile_pymc_model(model), model
                compiled = self.compiled
            else:
                used = {v.name for v in self.compiled.shared_var_keys}  # data the log density reads
                updates = {v.name: v.get_value() for v in model.data_vars if v.name in used}
                if not self.checked:
                    self._check_swap(model, updates)
                compiled = self.compiled.with_data(**updates)
            started = time.perf_counter()
            tree = nutpie.sample(compiled, draws=s.draws, tune=s.tune, chains=s.chains, seed=seed,
                                 adaptation="low_rank", target_accept=s.target_accept, progress_bar=False)
        scaling = getattr(model, "bayes_t2_scaling", None)
        tree.attrs.update({"bayes_t2_format": FIT_FORMAT, "route": self.route.name,
                           "model_spec": spec_to_json(self.spec),
                           "scaling": json.dumps(scaling.as_dict() if hasattr(scaling, "as_dict") else (scaling or {})),
                           "sampling_seconds": round(time.perf_counter() - started, 2)})
        return Fit(tree)

    def _check_swap(self, model: Any, updates: dict[str, np.ndarray]) -> None:
        """The compiled model with swapped data must be the new data's model: compare log densities."""
        import pymc as pm

        ref = self.reference
        if {v.name for v in ref.free_RVs} != {v.name for v in model.free_RVs}:
            raise InputError("calibration replicates differ in model structure; the design must be fixed")
        point = model.initial_point(0)
        with ref:
            pm.set_data(updates)
        # one evaluation each, compiled by numba as nutpie does (the Python-mode FAST_COMPILE cannot run the
        # accuracy model's fused Elemwise of > 32 inputs)
        logp = [float(m.compile_logp(mode="NUMBA")(point)) for m in (ref, model)]
        same = np.isclose(logp[0], logp[1], rtol=1e-9)
        if not same:
            raise RuntimeError(f"route '{self.route.name}' builds data-dependent constants into its model; "
                               "calibration cannot re-use the compiled model")
        self.checked = True


# ---------------------------------------------------------------------------------------------- replicates
def pad_cells(cells: pd.DataFrame, n_cells: int) -> pd.DataFrame:
    """Count cells (with `weight` = problems) split into exactly `n_cells` cells of the same total weight.

    A cell of weight w becomes cells of weights 1, ..., 1, w - j with the same counts: the weighted
    beta-binomial log density is linear in the weight, so it is unchanged, while every replicate of a
    calibration gets one shape (its compiled model is re-used). Cells are split in order, one problem at a time.
    """
    extra = int(n_cells) - len(cells)
    w = cells["weight"].to_numpy(np.int64)
    if extra < 0 or extra > int(np.sum(w - 1)):
        raise InputError(f"cannot pad {len(cells)} cells of {int(w.sum())} problems to {n_cells} cells")
    if extra == 0:
        return cells.reset_index(drop=True)
    before = np.cumsum(w - 1) - (w - 1)  # spare problems in the rows before each row
    take = np.clip(extra - before, 0, w - 1)  # problems split off each row
    out = cells.loc[cells.index.repeat(1 + take)].reset_index(drop=True)
    weight = np.ones(len(out), dtype=np.int64)
    weight[np.cumsum(1 + take) - 1] = w - take
    out["weight"] = weight
    return out


def truth_coefficients(truth: dict, route: Any, ks: Sequence[int],
                       reference: tuple[float, float] | None = None) -> xr.Dataset:
    """The simulation's coefficients as a one-draw Dataset (dims draw, task), in the normalisation the fit
    reports. Loss route: with k = 1 only, the k term is a constant the data cannot tell from E, so the
    identified law has E + G and no k term. Accuracy route: mapped to the fit's pinned normalisation at its
    reference checkpoint `reference` = (N0, D0) (`standardize_coefficients`; E = 0), the same law."""
    tasks = sorted(truth["tasks"])
    raw = {t: truth["tasks"][t] for t in tasks}
    if route.name == "accuracy":
        from .routes.accuracy import standardize_coefficients

        if reference is None:
            raise ValueError("the accuracy route's truth needs the fit's reference point (N0, D0)")
        raw = {t: standardize_coefficients({c: raw[t][c] for c in route.coefficient_names if c in raw[t]},
                                           *reference) for t in tasks}
    coefs = {c: np.array([[float(raw[t][c]) for t in tasks]]) for c in route.coefficient_names}
    if route.name == "loss" and all(int(k) == 1 for k in ks):
        coefs["E"] = coefs["E"] + coefs["G"]
        coefs["G"], coefs["gamma"] = np.zeros_like(coefs["G"]), np.ones_like(coefs["gamma"])
    return xr.Dataset({c: (("draw", "task"), v) for c, v in coefs.items()}, coords={"draw": [0], "task": tasks})


def _observations(design: CalibrationDesign, seed: int) -> tuple[pd.DataFrame, dict]:
    """A replicate's simulated data as the route's model takes them (loss rows, or collapsed count cells)."""
    frame, truth = design.simulate(seed)
    data = from_frame(frame, source=f"calibration-{seed}")
    return (data.collapse_counts() if design.route == "accuracy" else data.frame), truth


def replicate(sampler: _CompiledSampler, design: CalibrationDesign, seed: int, budget: Budget,
              constraints: Constraints, rng: np.random.Generator, n_cells: int | None = None) -> xr.Dataset:
    """One simulate -> fit -> optimum -> score pass; dims (quantity, task) plus per-fit diagnostics.
    n_cells: pad the accuracy route's count cells to this number (`pad_cells`), the same in every replicate."""
    frame, truth = _observations(design, seed)
    if n_cells is not None:
        frame = pad_cells(frame, n_cells)
    result = sampler.fit(frame, seed)
    route = result.route
    reference = (result.scaling["N0"], result.scaling["D0"]) if route.name == "accuracy" else None
    true_coefs = truth_coefficients(truth, route, design.ks, reference)
    coefs = result.coefficients()
    varying = [c for c in route.coefficient_names if float(coefs[c].std()) > 0]
    # law=True: the truth below is the law's own metric at its optimum, so the posterior side scores the law's
    # metric too (a new run's metric would add the noise and checkpoint scatter the truth does not carry)
    opt = result.optimize([budget], constraints, law=True).isel(budget=0)
    # the true optimum from the independent reference solver, not the optimizer the posterior side uses
    true_opt = reference_route_optimum(route, true_coefs, [budget], constraints).isel(budget=0, draw=0)
    quantities = varying + list(OPTIMUM_QUANTITIES)
    post = xr.concat([coefs[c] for c in varying] + [opt[q] for q in OPTIMUM_QUANTITIES],
                     dim=pd.Index(quantities, name="quantity"), coords="minimal", compat="override")
    post = post.drop_vars([c for c in post.coords if c not in ("chain", "draw", "task", "quantity")])
    post = post.stack(sample=("chain", "draw")).drop_vars(["sample", "chain", "draw"])
    true = xr.concat([true_coefs[c].isel(draw=0, drop=True) for c in varying]
                     + [true_opt[q].reset_coords(drop=True) for q in OPTIMUM_QUANTITIES],
                     dim=pd.Index(quantities, name="quantity"), coords="minimal", compat="override")
    true = true.drop_vars([c for c in true.coords if c not in ("task", "quantity")]).sel(task=post["task"].values)
    ds = score(post, true, rng)
    diag = diagnose(result.tree, list(route.coefficient_names))
    ds["max_rhat"] = diag.max_rhat
    ds["min_ess_bulk"] = diag.min_ess_bulk
    ds["divergences"] = diag.divergences
    ds["sampling_seconds"] = float(result.tree.attrs["sampling_seconds"])
    return ds


def calibrate(design: CalibrationDesign, *, n_sims: int = 20, seed: int = 0, budget: Budget = DEFAULT_BUDGET,
              constraints: Constraints = Constraints(), priors: str | Path | dict | None = None,
              settings: SamplerSettings = SamplerSettings(draws=300, tune=300, chains=2),
              on_replicate: Callable[[xr.Dataset, int], Any] | None = None) -> xr.Dataset:
    """Run `n_sims` replicates (data seeds seed, seed+1, ...) and return the scores, dims (replicate, quantity,
    task). `on_replicate(scores_so_far, i)` is called after each one (the benchmark saves partial results)."""
    if n_sims < 1:
        raise InputError(f"--n-sims must be >= 1, got {n_sims}")
    route = get_route(design.route)
    sampler = _CompiledSampler(route, load_spec(route.name, priors), settings)
    rng = np.random.default_rng([seed, 7919])
    n_cells = None
    if design.route == "accuracy":  # one cell count for all replicates (the compiled model is re-used)
        from .routes.accuracy import deviation_nu

        design = replace(design, deviation_nu=deviation_nu(sampler.spec))  # truth deviations as the model's
        n_cells = max(len(_observations(design, seed + i)[0]) for i in range(n_sims))
    done: list[xr.Dataset] = []
    for i in range(n_sims):
        done.append(replicate(sampler, design, seed + i, budget, constraints, rng, n_cells))
        scores = _combine(done, seed, design, budget, settings)
        if on_replicate is not None:
            on_replicate(scores, i)
    return scores


def _combine(done: list[xr.Dataset], seed: int, design: CalibrationDesign, budget: Budget,
             settings: SamplerSettings) -> xr.Dataset:
    scores = xr.concat(done, dim=pd.Index(np.arange(seed, seed + len(done)), name="replicate"), join="outer")
    scores.attrs.update({"route": design.route, "n_rank": N_RANK, "probs": json.dumps(list(PROBS)),
                         "budget": json.dumps(budget.as_dict()), "ks": json.dumps(list(design.ks)),
                         "n_checkpoints": len(design.checkpoints), "noise": design.noise,
                         "n_problems": design.n_problems, "deviation_nu": json.dumps(design.deviation_nu),
                         "sampler_settings": json.dumps({"draws": settings.draws, "tune": settings.tune,
                                                         "chains": settings.chains})})
    return scores


# ---------------------------------------------------------------------------------------------- output
def summary(scores: xr.Dataset) -> dict[str, Any]:
    """The JSON summary: settings, per-quantity coverage and ranks, and fit diagnostics over replicates."""
    rhat = scores["max_rhat"].values
    return {
        "route": scores.attrs.get("route"), "n_replicates": int(scores.sizes["replicate"]),
        "n_tasks": int(scores.sizes["task"]), "budget": json.loads(scores.attrs.get("budget", "{}")),
        "sampler_settings": json.loads(scores.attrs.get("sampler_settings", "{}")),
        "diagnostics": {"max_rhat_median": float(np.nanmedian(rhat)), "max_rhat_max": float(np.nanmax(rhat)),
                        "share_rhat_below_1.05": float(np.mean(rhat < 1.05)),
                        "divergences_total": int(np.nansum(scores["divergences"].values)),
                        "seconds_per_replicate": float(np.nanmean(scores["sampling_seconds"].values))},
        "coverage_measures": {"coverage_<p>": "primary, judged by the truth's randomised rank (nominal under "
                                               "calibration for discrete quantities too); the flags use it",
                              "inclusive_<p>": "truth inside the equal-tailed interval, ends included (as "
                                                "optimize reports it; conservative for the discrete k*, N*, D*)"},
        "quantities": coverage_summary(scores),
    }


def write_outputs(scores: xr.Dataset, out_dir: str | Path, *, overwrite: bool = False) -> dict[str, Path]:
    """calibration.nc, calibration.json, calibration.png and calibration.pdf in `out_dir`."""
    return write_scores_bundle(scores, out_dir, "calibration", summary, plot, overwrite=overwrite)


def plot(scores: xr.Dataset, summ: dict[str, Any], png: Path, pdf: Path, *, overwrite: bool = False) -> None:
    """Coverage per quantity by rank with Wilson error bars and the inclusive interval's beside it (top), and
    rank histograms (below)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    quantities = list(summ["quantities"])
    ncol = min(6, len(quantities))
    nrow = 1 + math.ceil(len(quantities) / ncol)
    fig = plt.figure(figsize=(2.2 * ncol + 1, 2.0 * nrow + 1.2))
    grid = fig.add_gridspec(nrow, ncol)
    ax = fig.add_subplot(grid[0, :])
    x = np.arange(len(quantities))
    for j, p in enumerate(PROBS):
        recs = [summ["quantities"][q][f"coverage_{_pct(p)}"] for q in quantities]
        cov = np.array([r["coverage"] for r in recs])
        err = np.clip(np.array([[r["coverage"] - r["wilson_lower"] for r in recs],
                                [r["wilson_upper"] - r["coverage"] for r in recs]]), 0, None)  # rounding
        ax.errorbar(x + (j - 0.5) * 0.2, cov, yerr=err, fmt="o", color=f"C{j}", capsize=3,
                    label=f"{p:.0%} interval, by rank")
        inclusive = [summ["quantities"][q][f"inclusive_{_pct(p)}"]["coverage"] for q in quantities]
        ax.plot(x + (j - 0.5) * 0.2, inclusive, "x", color=f"C{j}", ms=5, label=f"{p:.0%} inclusive")
        ax.axhline(p, color=f"C{j}", ls="--", lw=0.8)
    ax.set_xticks(x, [_label(q) for q in quantities])
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("coverage")
    ax.legend(loc="lower right", fontsize=7, ncol=2)
    ax.set_title(f"{summ['route']} route: {summ['n_replicates']} simulated data sets x {summ['n_tasks']} tasks "
                 f"(o: by rank, bars 95% Wilson; x: inclusive interval; dashed: nominal)", fontsize=9)
    for i, q in enumerate(quantities):
        a = fig.add_subplot(grid[1 + i // ncol, i % ncol])
        counts = summ["quantities"][q]["rank"]["histogram"]
        a.bar(np.arange(len(counts)), counts, width=0.9, color="0.6")
        expected = sum(counts) / len(counts)
        lo, hi = _binom_band(sum(counts), 1 / len(counts))
        a.axhspan(lo, hi, color="C0", alpha=0.15)
        a.axhline(expected, color="C0", lw=0.8)
        a.set_title(_label(q), fontsize=9)
        a.set_xticks([])
        a.tick_params(labelsize=7)
    fig.tight_layout()
    atomic_write(png, lambda p: fig.savefig(p, format="png", dpi=120), overwrite=overwrite)
    atomic_write(pdf, lambda p: fig.savefig(p, format="pdf"), overwrite=overwrite)
    plt.close(fig)


def _binom_band(n: int, p: float) -> tuple[float, float]:
    from scipy.stats import binom

    return float(binom.ppf(0.005, n, p)), float(binom.ppf(0.995, n, p))


def _label(q: str) -> str:
    return {"N": "N*", "D": "D*", "k": "k*", "metric": "metric*"}.get(q, q)


def _pct(p: float) -> str:
    return f"{round(100 * p):d}"
