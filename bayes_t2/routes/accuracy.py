"""The accuracy route: T2 "approach 2", a Beta law of per-problem success whose mean and concentration move
with a latent Chinchilla loss, fitted to per-problem sample counts with a beta-binomial likelihood.

The law (per task t, checkpoint with N parameters trained on D tokens)::

    p_problem ~ Beta(mu * nu, (1 - mu) * nu)
    mu = sigmoid(theta1 + theta2 * L(N, D)),   nu = exp(theta3 + theta4 * L(N, D)),
    L(N, D) = E + A / N^alpha + B / D^beta
    n_correct ~ BetaBinomial(n_samples, mu * nu, (1 - mu) * nu)
    pass@k    = 1 - B(a, b + k) / B(a, b),     a = mu * nu, b = (1 - mu) * nu

What is identifiable, and what is pinned
---------------------------------------
L is never observed on this route; it only enters through theta1 + theta2 * L and theta3 + theta4 * L. Hence
* E is exactly confounded with theta1 and theta3 (E -> E + e, theta1 -> theta1 - theta2 e, theta3 -> theta3 -
  theta4 e gives the same data distribution), and
* the scale of L is exactly confounded with theta2 and theta4 (A, B -> s A, s B with theta2, theta4 -> /s).
Of the nine T2 coefficients only seven combinations are identifiable. A sampler left with the two exact
ridges (or a maximum-likelihood fit) wanders along them; that is the degenerate corner seen on Pythia.

A third, near-ridge: over the data range a power law x^-alpha is close to 1 - alpha log x, so in the raw form
only the products theta2 * A * alpha and theta2 * B * beta are well determined and alpha -> 0 with A -> inf
is a long curved valley. The model therefore samples a standardised, Box-Cox "difficulty"::

    z(N, D) = w * ((N/N0)^-alpha - 1) / alpha + (1 - w) * ((D/D0)^-beta - 1) / beta,     w in (0, 1)

with N0, D0 the geometric means of the data's checkpoints (the reference point). z = 0 at the reference and
-dz/dlog N - dz/dlog D = 1 there, for every alpha and beta: the log-linear part of the law is carried by w
and the slopes below, the exponents only bend it (alpha -> 0 is the smooth log-linear limit, not a ridge).
Then, with seven free, nearly orthogonal, unit-free quantities per task::

    logit mu = logit_mu_ref - slope_mu * z           (slope_mu > 0: more loss, lower accuracy)
    log nu   = log_nu_ref  + slope_nu * z

logit_mu_ref / log_nu_ref are the Beta mean (logit) and concentration (log) at the reference checkpoint.

The T2-named coefficients are reported (as deterministics with dim ``task``) in the normalisation this
pins down: **E = 0** and **the latent law's total log-slope at the reference is 1**, i.e.
L = z + w/alpha + (1 - w)/beta, so

    A = w N0^alpha / alpha,  B = (1 - w) D0^beta / beta,  E = 0,
    theta2 = -slope_mu,  theta1 = logit_mu_ref + slope_mu * (w/alpha + (1-w)/beta),
    theta4 = slope_nu,   theta3 = log_nu_ref  - slope_nu * (w/alpha + (1-w)/beta).

These reproduce the law exactly, and theta1 reads as the logit of the mean success of an infinitely large,
infinitely trained model (L -> 0). Any other normalisation (E', scale s') is the same law with theta1' =
theta1 - theta2 E'/s', theta2' = theta2/s', A' = s' A, B' = s' B (likewise theta3, theta4):
`standardize_coefficients` maps any coefficient set (e.g. a simulation's truth) to this one.

Chance floor (``chance_floor = true`` in the spec, the default): an untrained model still solves a few problems
by luck, so the Beta mean is ``mu = f + (1 - f) * sigmoid(theta1 + theta2 * L)`` with ``f = sigmoid(logit_floor)``
per task (pooled like the rest but always non-centred; computed in log space, stable for mu ~ 1e-30). The floor is the 10th entry of
the optimizer's theta (`T2_COEFFICIENTS`); it only matters far from any optimum, but the model, `accuracy_shapes`
and `neg_pass_at_k_nb` all apply it, so fitted law and objective agree. Without it the first Pythia
checkpoints (step 1-32: mean success 1e-8..4e-6 whatever the size) sit far above any power law and pull the
D exponent into a second mode (full GSM8K set: r-hat 2.1); with it they sit on the floor (logit -14.0 +- 0.2,
i.e. ~8e-7) and the whole set samples cleanly. A coefficient set without ``logit_floor`` has none (`NO_FLOOR`).

Checkpoint noise (``[checkpoint_noise]``): each (task, checkpoint) unit's logit mu and log nu deviate from the
floored law by Normal(0, sd_t) (Student-t optional), sd_t learnt per task: the model's discrepancy, without
which counts from thousands of samples make the law's intervals far too narrow to cover new checkpoints.

Shapes are bounded: logit mu and log nu pass through a smooth, monotone clip (`LOGIT_MU_BOUNDS`,
`LOG_NU_BOUNDS`; the identity to within 1e-2 more than 5 units inside the bounds). This keeps the Beta shapes
away from numerically degenerate corners (a or b -> 0 or inf) without hard walls; the same clip is applied in
the model, in `accuracy_shapes` and in the optimizer objective `neg_pass_at_k_nb`.

Likelihood: the data are collapsed to distinct (task, checkpoint, n_samples, n_correct) cells with integer
weights (number of problems); the cells are sufficient statistics and the weighted beta-binomial is exact.
The observed variable ``n_correct`` has dim ``cell``; its pointwise log-likelihood (``pm.compute_log_likelihood``)
is per *cell*, i.e. weight x the per-problem value. ELPD/LOO on it therefore leaves out whole cells (groups of
problems with identical counts), not single problems; divide by ``weight`` for a per-problem value.

Pooling
-------
Every per-task sampled quantity q (the seven above, on their log/logit scale) is partially pooled across
tasks: q_t ~ Normal(q_loc, q_sd). Two measured choices (simulated 2-task data, 25 checkpoints x 64 problems,
nutpie, 2 x (300 + 300) draws):

* centred, not non-centred: each task's counts pin its q_t tightly, and then the non-centred q_t = loc +
  sd * z_t leaves NUTS a ridge (loc, sd, z_t trading off at fixed q_t): ~140 leapfrog steps per draw and
  ~125 s, against ~16 steps and ~10 s centred (one task alone: ~13 steps). `pooling.centered = false` brings
  back the non-centred form (better when tasks have little data each).
* a zero-avoiding LogNormal(log pool_sd, sd_log_sd) prior on q_sd rather than a HalfNormal: with a handful
  of tasks the spread is not learnt from the data, and a HalfNormal lets the centred form fall into the
  funnel at q_sd -> 0 (85 divergences in 1,200 draws, against none).

With a single task there is no pooling level. Priors (weakly informative, on the sampled scale) are in
`models/accuracy.toml`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numba
import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import xarray as xr
from numba import types
from scipy import stats
from scipy.special import gammaln

from ..errors import InputError
from ..laws import loss_law, loss_law_nb
from ..priors import load_spec
from ..passk import beta_pass_at_k, log1m_beta_pass_at_k_nb

__all__ = [
    "AccuracyRoute",
    "LOG_NU_BOUNDS",
    "NO_FLOOR",
    "LOGIT_MU_BOUNDS",
    "PYTHIA_PARAMS",
    "PYTHIA_TOKENS",
    "SAMPLED",
    "T2_COEFFICIENTS",
    "accuracy_config",
    "accuracy_pass_at_k",
    "accuracy_shapes",
    "build_accuracy_model",
    "chance_floor",
    "collapse_samples",
    "neg_pass_at_k_nb",
    "pack_theta",
    "reference_point",
    "simulate_samples",
    "standardize_coefficients",
    "theta_names",
]

#: Posterior variables (dim task) packed, in this order, into the optimizer's theta.
T2_COEFFICIENTS: tuple[str, ...] = ("theta1", "theta2", "theta3", "theta4", "E", "A", "alpha", "B", "beta",
                                     "logit_floor")
theta_names = T2_COEFFICIENTS

#: logit of the chance floor meaning "no floor" (a floor of 8.8e-27: below anything a count can show); the
#: value a coefficient set without ``logit_floor`` (or a fit with the floor disabled) gets.
NO_FLOOR = -60.0

#: Per-task quantities the model samples (each pooled across tasks), on the scale their name says.
SAMPLED: tuple[str, ...] = ("logit_mu_ref", "log_slope_mu", "log_nu_ref", "slope_nu", "logit_w", "log_alpha",
                            "log_beta")

#: Smooth bounds on logit(mu) and log(nu) (see module doc). Fixed: the fitted law and the objective share them.
LOGIT_MU_BOUNDS = (-25.0, 25.0)
LOG_NU_BOUNDS = (-6.0, 16.0)

CELL_COLUMNS = ("task", "params", "tokens", "n_samples", "n_correct", "weight")
SAMPLES_COLUMNS = ("task", "model", "params", "tokens", "problem", "n_samples", "n_correct")

#: Pythia-like design: nominal sizes 14M-12B, training tokens 2M-300B (2,097,152 tokens per step).
PYTHIA_PARAMS = (14e6, 70e6, 160e6, 410e6, 1.0e9, 1.4e9, 2.8e9, 6.9e9, 12e9)
PYTHIA_TOKENS = tuple(2_097_152.0 * s for s in (1, 32, 256, 1000, 3000, 10_000, 30_000, 100_000, 143_000))


# ------------------------------------------------------------------------------------------- configuration
def accuracy_config(config: Mapping[str, Any] | str | None = None) -> dict[str, Any]:
    """models/accuracy.toml deep-merged with `config` (dict or TOML path) by `priors.load_spec`, plus the
    value checks this model needs (positive scales)."""
    spec = load_spec("accuracy", dict(config) if isinstance(config, Mapping) else config)
    for name, prior in spec["priors"].items():
        for key in ("loc", "scale", "pool_sd"):
            if not math.isfinite(float(prior[key])):
                raise InputError(f"accuracy prior '{name}.{key}' must be finite, got {prior[key]!r}")
        if prior["scale"] <= 0 or prior["pool_sd"] <= 0:
            raise InputError(f"accuracy prior '{name}': scale and pool_sd must be > 0")
    if spec["pooling"]["sd_log_sd"] <= 0:
        raise InputError("accuracy setting 'pooling.sd_log_sd' must be > 0")
    return spec


# --------------------------------------------------------------------------------------------------- data
def collapse_samples(samples: pd.DataFrame) -> pd.DataFrame:
    """Per-problem counts -> distinct (task, params, tokens, n_samples, n_correct) cells with integer `weight`.

    The same columns and order as `EvalData.collapse_counts()`.
    """
    missing = [c for c in ("task", "params", "tokens", "n_samples", "n_correct") if c not in samples.columns]
    if missing:
        raise InputError(f"samples data lack column(s) {', '.join(missing)}")
    frame = samples.assign(task=samples["task"].astype(str))
    keys = ["task", "params", "tokens", "n_samples", "n_correct"]
    out = frame.groupby(keys, sort=True).size().rename("weight").reset_index()
    out["weight"] = out["weight"].astype(np.int64)
    return out


def _check_cells(cells: pd.DataFrame) -> pd.DataFrame:
    if "weight" not in cells.columns and "problem" in cells.columns:
        cells = collapse_samples(cells)
    missing = [c for c in CELL_COLUMNS if c not in cells.columns]
    if missing:
        raise InputError(f"accuracy cells lack column(s) {', '.join(missing)} (expected {', '.join(CELL_COLUMNS)})")
    out = cells[list(CELL_COLUMNS)].copy()
    out["task"] = out["task"].astype(str)
    for col in CELL_COLUMNS[1:]:
        out[col] = pd.to_numeric(out[col], errors="coerce")
    checks = [("params", out["params"] > 0, "must be > 0"), ("tokens", out["tokens"] > 0, "must be > 0"),
              ("n_samples", out["n_samples"] >= 1, "must be >= 1"),
              ("n_correct", (out["n_correct"] >= 0) & (out["n_correct"] <= out["n_samples"]),
               "must be in [0, n_samples]"),
              ("weight", out["weight"] >= 1, "must be >= 1")]
    for col, ok, what in checks:
        ok = ok & np.isfinite(out[col])
        if not ok.all():
            row = int(np.flatnonzero(~ok.to_numpy())[0])
            raise InputError(f"{what}, got {out[col].iloc[row]!r}", source="accuracy cells", row=row, column=col)
    if len(out) == 0:
        raise InputError("no accuracy cells to fit")
    return out.reset_index(drop=True)


def reference_point(cells: pd.DataFrame, spec: Mapping[str, Any] | None = None) -> tuple[float, float]:
    """(N0, D0): the geometric means of the distinct checkpoints, unless the configuration fixes them."""
    ref = (spec or accuracy_config()).get("reference", {})
    ckpt = cells[["params", "tokens"]].drop_duplicates().to_numpy(float)
    n0 = float(ref.get("params", 0.0)) or float(np.exp(np.mean(np.log(ckpt[:, 0]))))
    d0 = float(ref.get("tokens", 0.0)) or float(np.exp(np.mean(np.log(ckpt[:, 1]))))
    return n0, d0


# ----------------------------------------------------------------------------------------------------- model
def _softclip_pt(x, lo, hi):
    return lo + pt.softplus(x - lo) - pt.softplus(x - hi)


def _softplus_np(x):
    return np.logaddexp(0.0, x)


def _softclip_np(x, lo, hi):
    return lo + _softplus_np(x - lo) - _softplus_np(x - hi)


@numba.njit(cache=True, nogil=True)
def _softplus_nb(x):
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


@numba.njit(cache=True, nogil=True)
def _softclip_nb(x, lo, hi):
    return lo + _softplus_nb(x - lo) - _softplus_nb(x - hi)


def _floored_logit_pt(x, logit_floor):
    """logit of mu = f + (1 - f) sigmoid(x), f = sigmoid(logit_floor), in log space (stable for tiny mu)."""
    log_mu = pt.logaddexp(-pt.softplus(-logit_floor), -pt.softplus(logit_floor) - pt.softplus(-x))
    return log_mu + pt.softplus(logit_floor) + pt.softplus(x)


def _floored_logit_np(x, logit_floor):
    log_mu = np.logaddexp(-_softplus_np(-logit_floor), -_softplus_np(logit_floor) - _softplus_np(-x))
    return log_mu + _softplus_np(logit_floor) + _softplus_np(x)


@numba.njit(cache=True, nogil=True)
def _floored_logit_nb(x, logit_floor):
    u = -_softplus_nb(-logit_floor)
    v = -_softplus_nb(logit_floor) - _softplus_nb(-x)
    log_mu = max(u, v) + math.log1p(math.exp(-abs(u - v)))
    return log_mu + _softplus_nb(logit_floor) + _softplus_nb(x)


def _boxcox_pt(log_x, exponent):
    """(x^-exponent - 1)/exponent from log x; -> -log x as exponent -> 0."""
    return pt.expm1(-exponent * log_x) / exponent


def _pooled(name: str, prior: Mapping[str, float], n_tasks: int, pooling: Mapping[str, Any],
            centered: bool | None = None):
    """Per-task values of one sampled quantity, partially pooled (see "Pooling" in the module doc).

    loc ~ Normal(prior loc, prior scale); sd ~ LogNormal(log(pool_sd), pooling.sd_log_sd) (zero-avoiding);
    q_t ~ Normal(loc, sd) (centred, default) or q_t = loc + sd * z_t, z_t ~ Normal(0, 1) (non-centred).
    `centered` overrides ``pooling.centered`` for a quantity the data barely see. A single task has no
    pooling level.
    """
    loc = pm.Normal(f"{name}_loc", mu=prior["loc"], sigma=prior["scale"])
    if n_tasks == 1:
        return pm.Deterministic(name, pt.stack([loc]), dims="task")
    sd = pm.LogNormal(f"{name}_sd", mu=math.log(prior["pool_sd"]), sigma=pooling["sd_log_sd"])
    if pooling["centered"] if centered is None else centered:
        return pm.Normal(name, loc, sd, dims="task")
    z = pm.Normal(f"{name}_z", 0.0, 1.0, dims="task")
    return pm.Deterministic(name, loc + sd * z, dims="task")


def _weighted_beta_binomial_logp(value, a, b, unit, n, weight, log_choose):
    """weight x log BetaBinomial(value | n, a[unit], b[unit]) per cell (the cell's problems all have these
    counts). a, b are per (task, checkpoint) unit: the terms that depend on the unit alone (log B(a, b)) are
    computed once per unit and gathered, so a cell costs three log-gammas; log_choose = log C(n, value)."""
    g = pt.gammaln
    log_beta_ab = g(a) + g(b) - g(a + b)
    a_c, b_c = a[unit], b[unit]
    return weight * (log_choose + g(value + a_c) + g(n - value + b_c) - g(n + a_c + b_c) - log_beta_ab[unit])


def _beta_binomial_random(a, b, unit, n, weight, log_choose, rng=None, size=None):
    """One problem's count per cell (prior/posterior predictive draws ignore the weight)."""
    unit = np.asarray(unit, dtype=np.int64)
    p = rng.beta(np.asarray(a)[..., unit], np.asarray(b)[..., unit], size=size)
    return rng.binomial(np.asarray(n, dtype=np.int64), p, size=size)


def unit_table(cells: pd.DataFrame, tasks: Sequence[str]) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """(units, unit index per cell, task index per unit): the distinct (task, checkpoint) pairs of the cells.
    Each unit has one Beta law of per-problem success; its cells are the distinct (n_samples, n_correct)."""
    units = cells[["task", "params", "tokens"]].drop_duplicates().sort_values(["task", "params", "tokens"])
    units = units.reset_index(drop=True)
    unit_idx = cells.merge(units.reset_index(names="unit"), on=["task", "params", "tokens"], how="left")["unit"]
    unit_task = units["task"].map({t: i for i, t in enumerate(tasks)}).to_numpy(np.int64)
    return units, unit_idx.to_numpy(np.int64), unit_task


def counts_likelihood(cells: pd.DataFrame, units: pd.DataFrame, unit_idx: np.ndarray, t, logit_mu, log_nu,
                      noise: Mapping[str, Any], logit_floor=None) -> None:
    """Inside a model with dims task, task_checkpoint (units) and cell: the Beta law per unit from its logit(mu)
    and log(nu) (checkpoint noise added when enabled, then the chance floor `logit_floor` per unit, if any),
    bounded, and the weighted beta-binomial on the cells.

    Every data-dependent number (counts included) is `pm.Data`, so a compiled model takes new data of the same
    shape (the compiled-model cache, calibration)."""
    u = pm.Data("unit_index", unit_idx, dims="cell")
    pm.Data("unit_params", units["params"].to_numpy(float), dims="task_checkpoint")
    pm.Data("unit_tokens", units["tokens"].to_numpy(float), dims="task_checkpoint")
    n = pm.Data("n_samples", cells["n_samples"].to_numpy(float), dims="cell")
    weight = pm.Data("weight", cells["weight"].to_numpy(float), dims="cell")
    c_obs = cells["n_correct"].to_numpy(np.int64)
    observed = pm.Data("n_correct_data", c_obs, dims="cell")
    n_np = cells["n_samples"].to_numpy(float)
    log_choose = pm.Data("log_choose", gammaln(n_np + 1.0) - gammaln(c_obs + 1.0) - gammaln(n_np - c_obs + 1.0),
                         dims="cell")
    if logit_floor is not None:  # below the floor the law is not seen
        logit_mu = _floored_logit_pt(logit_mu, logit_floor)
    if noise["enabled"]:  # each (task, checkpoint) scatters around the floored law (module doc)
        deviation = {}
        for name in ("mu", "nu"):
            if noise[f"sd_{name}"] <= 0:  # this shape follows the law exactly
                deviation[name] = 0.0
                continue
            sd = pm.LogNormal(f"checkpoint_sd_{name}", mu=math.log(noise[f"sd_{name}"]), sigma=noise["sd_log_sd"],
                              dims="task")
            robust = noise["family"] == "student_t"  # a few checkpoints far off the law (near chance) stay local
            if noise["centered"]:
                deviation[name] = (pm.StudentT(f"checkpoint_dev_{name}", nu=noise["nu"], mu=0.0, sigma=sd[t],
                                               dims="task_checkpoint") if robust else
                                   pm.Normal(f"checkpoint_dev_{name}", 0.0, sd[t], dims="task_checkpoint"))
            else:
                z = (pm.StudentT(f"checkpoint_z_{name}", nu=noise["nu"], mu=0.0, sigma=1.0, dims="task_checkpoint")
                     if robust else pm.Normal(f"checkpoint_z_{name}", 0.0, 1.0, dims="task_checkpoint"))
                deviation[name] = pm.Deterministic(f"checkpoint_dev_{name}", sd[t] * z, dims="task_checkpoint")
        logit_mu = logit_mu + deviation["mu"]
        log_nu = log_nu + deviation["nu"]
    logit_mu = _softclip_pt(logit_mu, *LOGIT_MU_BOUNDS)
    log_nu = _softclip_pt(log_nu, *LOG_NU_BOUNDS)
    a = pt.exp(log_nu - pt.softplus(-logit_mu))  # nu * sigmoid(logit_mu)
    b = pt.exp(log_nu - pt.softplus(logit_mu))   # nu * sigmoid(-logit_mu)
    pm.CustomDist("n_correct", a, b, u, n, weight, log_choose, logp=_weighted_beta_binomial_logp,
                  random=_beta_binomial_random, observed=observed, dims="cell")


def chance_floor(priors: Mapping[str, Any], n_tasks: int, spec: Mapping[str, Any], unit_task):
    """The per-task chance floor ``logit_floor`` (dim task): pooled like the law's quantities when
    ``chance_floor = true`` in the spec, else the constant `NO_FLOOR` (the law alone, recorded so the
    optimizer reads one variable either way). Returns the floor per unit (indexed by `unit_task`) for
    `counts_likelihood`, or None when there is none.

    Always non-centred: counts that never reach the floor leave it, its mean and its spread at the prior,
    and there the centred form is a funnel (2 simulated tasks x 25 checkpoints: the floor and its mean
    mixed worst of all, ESS 53 of 300 draws)."""
    if spec["chance_floor"]:
        return _pooled("logit_floor", priors["logit_floor"], n_tasks, spec["pooling"], centered=False)[unit_task]
    pm.Deterministic("logit_floor", pt.fill(pt.zeros(n_tasks), NO_FLOOR), dims="task")
    return None


def build_accuracy_model(cells: pd.DataFrame, config: Mapping[str, Any] | None = None) -> pm.Model:
    """The hierarchical PyMC model of the accuracy law for collapsed counts.

    `cells` has columns task, params, tokens, n_samples, n_correct, weight (as `EvalData.collapse_counts()` or
    `collapse_samples` return; a per-problem samples frame is collapsed automatically). `config` overrides
    models/accuracy.toml. Coordinates: ``task``, ``cell``, ``checkpoint``. The reference point is stored
    as constant data (``reference_params``, ``reference_tokens``) and on the model as ``bayes_t2_reference``.
    """
    spec = accuracy_config(config)
    cells = _check_cells(cells)
    n0, d0 = reference_point(cells, spec)
    tasks = sorted(cells["task"].unique())
    task_idx = cells["task"].map({t: i for i, t in enumerate(tasks)}).to_numpy(np.int64)
    checkpoints = cells[["params", "tokens"]].drop_duplicates().sort_values(["params", "tokens"])
    checkpoints = checkpoints.reset_index(drop=True)
    ckpt_idx = cells.merge(checkpoints.reset_index(names="ckpt"), on=["params", "tokens"], how="left")["ckpt"]
    priors = spec["priors"]
    units, unit_idx, unit_task = unit_table(cells, tasks)
    noise = spec["checkpoint_noise"]
    coords = {"task": tasks, "cell": np.arange(len(cells)), "checkpoint": np.arange(len(checkpoints)),
              "task_checkpoint": np.arange(len(units))}

    with pm.Model(coords=coords) as model:
        pm.Data("reference_params", n0)
        pm.Data("reference_tokens", d0)
        pm.Data("checkpoint_params", checkpoints["params"].to_numpy(float), dims="checkpoint")
        pm.Data("checkpoint_tokens", checkpoints["tokens"].to_numpy(float), dims="checkpoint")
        pm.Data("checkpoint_index", ckpt_idx.to_numpy(np.int64), dims="cell")
        pm.Data("task_index", task_idx, dims="cell")
        t = pm.Data("unit_task", unit_task, dims="task_checkpoint")
        x_n = pm.Data("log_params_scaled", np.log(units["params"].to_numpy(float) / n0), dims="task_checkpoint")
        x_d = pm.Data("log_tokens_scaled", np.log(units["tokens"].to_numpy(float) / d0), dims="task_checkpoint")

        q = {name: _pooled(name, priors[name], len(tasks), spec["pooling"]) for name in SAMPLED}
        floor = chance_floor(priors, len(tasks), spec, t)
        alpha = pm.Deterministic("alpha", pt.exp(q["log_alpha"]), dims="task")
        beta = pm.Deterministic("beta", pt.exp(q["log_beta"]), dims="task")
        w = pm.Deterministic("w", pm.math.sigmoid(q["logit_w"]), dims="task")
        slope_mu = pm.Deterministic("slope_mu", pt.exp(q["log_slope_mu"]), dims="task")
        slope_nu = q["slope_nu"]

        # standardised difficulty per (task, checkpoint) unit, then the Beta law of per-problem success
        z = w[t] * _boxcox_pt(x_n, alpha[t]) + (1.0 - w[t]) * _boxcox_pt(x_d, beta[t])
        counts_likelihood(cells, units, unit_idx, t, q["logit_mu_ref"][t] - slope_mu[t] * z,
                          q["log_nu_ref"][t] + slope_nu[t] * z, noise, floor)

        # the T2 coefficients in the pinned normalisation (E = 0, unit log-slope of L at the reference)
        level = w / alpha + (1.0 - w) / beta
        pm.Deterministic("mu_ref", pm.math.sigmoid(q["logit_mu_ref"]), dims="task")
        pm.Deterministic("nu_ref", pt.exp(q["log_nu_ref"]), dims="task")
        pm.Deterministic("theta1", q["logit_mu_ref"] + slope_mu * level, dims="task")
        pm.Deterministic("theta2", -slope_mu, dims="task")
        pm.Deterministic("theta3", q["log_nu_ref"] - slope_nu * level, dims="task")
        pm.Deterministic("theta4", slope_nu, dims="task")
        pm.Deterministic("E", pt.zeros(len(tasks)), dims="task")
        pm.Deterministic("A", w / alpha * pt.exp(alpha * math.log(n0)), dims="task")
        pm.Deterministic("B", (1.0 - w) / beta * pt.exp(beta * math.log(d0)), dims="task")
    model.bayes_t2_reference = {"params": n0, "tokens": d0}  # type: ignore[attr-defined]
    model.bayes_t2_scaling = {"N0": n0, "D0": d0}  # type: ignore[attr-defined]
    model.bayes_t2_spec = spec  # type: ignore[attr-defined]
    return model


# -------------------------------------------------------------------------------------------- normalisation
def standardize_coefficients(coefs: Mapping[str, float], N0: float, D0: float) -> dict[str, float]:
    """Map any T2 coefficient set to the model's pinned normalisation at reference (N0, D0).

    Returns the sampled quantities (logit_mu_ref, slope_mu, log_nu_ref, slope_nu, w, alpha, beta) and the T2
    names in the pinned form (E = 0, unit total log-slope of L at the reference). Both describe the same law.
    """
    c = {k: float(v) for k, v in coefs.items()}
    a_n = c["A"] * N0 ** (-c["alpha"])
    a_d = c["B"] * D0 ** (-c["beta"])
    slope = c["alpha"] * a_n + c["beta"] * a_d  # -dL/dlogN - dL/dlogD at the reference
    l_ref = c["E"] + a_n + a_d
    w = c["alpha"] * a_n / slope
    out = {
        "logit_mu_ref": c["theta1"] + c["theta2"] * l_ref,
        "slope_mu": -c["theta2"] * slope,
        "log_nu_ref": c["theta3"] + c["theta4"] * l_ref,
        "slope_nu": c["theta4"] * slope,
        "w": w, "alpha": c["alpha"], "beta": c["beta"],
    }
    level = w / c["alpha"] + (1.0 - w) / c["beta"]
    out.update({
        "theta1": out["logit_mu_ref"] + out["slope_mu"] * level, "theta2": -out["slope_mu"],
        "theta3": out["log_nu_ref"] - out["slope_nu"] * level, "theta4": out["slope_nu"],
        "E": 0.0, "A": w / c["alpha"] * N0 ** c["alpha"], "B": (1.0 - w) / c["beta"] * D0 ** c["beta"],
    })
    out["log_slope_mu"] = math.log(out["slope_mu"]) if out["slope_mu"] > 0 else -math.inf
    out["logit_w"] = math.log(w / (1.0 - w))
    out["log_alpha"], out["log_beta"] = math.log(c["alpha"]), math.log(c["beta"])
    out["logit_floor"] = c.get("logit_floor", NO_FLOOR)  # the floor does not depend on the normalisation
    return out


# --------------------------------------------------------------------------------------------- prediction
def _get(source: Any, name: str):
    if hasattr(source, "posterior"):  # InferenceData or DataTree
        return source.posterior[name]
    return source[name]


def _get_coefficient(source: Any, name: str):
    """A T2 coefficient; a source without ``logit_floor`` (a truth or fit from before the chance floor) has
    none: `NO_FLOOR`."""
    try:
        return _get(source, name)
    except KeyError:
        if name == "logit_floor":
            return NO_FLOOR
        raise


def _as_input(x, like):
    """N or D for broadcasting: xarray objects pass; arrays against an xarray posterior get dim 'point'."""
    if isinstance(like, xr.DataArray) and not isinstance(x, xr.DataArray):
        x = np.asarray(x, dtype=float)
        return xr.DataArray(x, dims=("point",)) if x.ndim == 1 else (float(x) if x.ndim == 0 else x)
    return x if isinstance(x, xr.DataArray) else np.asarray(x, dtype=float)


def accuracy_shapes(posterior_or_arrays: Any, N: Any, D: Any, *, rng: np.random.Generator | None = None,
                    noise_nu: float | None = None):
    """Beta shapes (a, b) of per-problem success at (N, D) for every posterior draw.

    `posterior_or_arrays`: a posterior Dataset/DataTree/InferenceData or a mapping with the T2 names
    (theta1..theta4, E, A, alpha, B, beta). With xarray coefficients, 1-d N and D get a dim ``point``; with
    plain arrays, numpy broadcasting applies. The shape bounds of the model are applied.
    rng: draw a fresh checkpoint deviation per draw and point (a *new* checkpoint's shapes, the posterior
    predictive); needs ``checkpoint_sd_mu``/``checkpoint_sd_nu`` in the source, else the law itself.
    noise_nu: the Student-t degrees of freedom of the deviations (None: normal), as in the fit's spec.
    """
    c = {name: _get_coefficient(posterior_or_arrays, name) for name in T2_COEFFICIENTS}
    like = c["theta1"]
    N, D = _as_input(N, like), _as_input(D, like)
    L = loss_law(c["E"], c["A"], c["alpha"], c["B"], c["beta"], 0.0, 1.0, N, D, 1.0)
    logit_mu = _floored_logit_np(c["theta1"] + c["theta2"] * L, c["logit_floor"])
    log_nu = c["theta3"] + c["theta4"] * L
    if rng is not None:
        logit_mu = logit_mu + _checkpoint_deviation(posterior_or_arrays, "mu", logit_mu, rng, noise_nu)
        log_nu = log_nu + _checkpoint_deviation(posterior_or_arrays, "nu", log_nu, rng, noise_nu)
    logit_mu = _softclip_np(logit_mu, *LOGIT_MU_BOUNDS)
    log_nu = _softclip_np(log_nu, *LOG_NU_BOUNDS)
    a = np.exp(log_nu - _softplus_np(-logit_mu))
    b = np.exp(log_nu - _softplus_np(logit_mu))
    return a, b


def deviation_nu(spec: Mapping[str, Any] | None) -> float | None:
    """Degrees of freedom of the checkpoint deviations in a fit's spec (None: normal deviations)."""
    noise = (spec or {}).get("checkpoint_noise", {})
    return float(noise["nu"]) if noise.get("family") == "student_t" else None


def _checkpoint_deviation(source: Any, name: str, like: Any, rng: np.random.Generator, nu: float | None):
    """Student-t(nu) (or Normal when nu is None) scaled by checkpoint_sd_<name>: noise shaped like `like` (0 when the fit has no checkpoint noise)."""
    try:
        sd = _get(source, f"checkpoint_sd_{name}")
    except KeyError:
        return 0.0
    eps = rng.standard_t(nu, size=np.shape(like)) if nu else rng.standard_normal(np.shape(like))
    if isinstance(like, xr.DataArray):
        eps = xr.DataArray(eps, dims=like.dims, coords=like.coords)
    return eps * sd


def accuracy_pass_at_k(posterior_or_arrays: Any, N: Any, D: Any, k: Any, *, rng: np.random.Generator | None = None,
                       noise_nu: float | None = None):
    """pass@k (the expected fraction of problems solved within k samples) at (N, D), per draw; with `rng`,
    at a new checkpoint (see `accuracy_shapes`)."""
    a, b = accuracy_shapes(posterior_or_arrays, N, D, rng=rng, noise_nu=noise_nu)
    k = _as_input(k, a) if isinstance(a, xr.DataArray) and np.ndim(k) == 0 else k
    return beta_pass_at_k(a, b, k)


def pack_theta(posterior_or_arrays: Any) -> np.ndarray:
    """The optimizer's theta for every draw and task: array (..., len(theta_names)), C-contiguous float64."""
    arrays = [np.asarray(_get_coefficient(posterior_or_arrays, name), dtype=float) for name in T2_COEFFICIENTS]
    return np.ascontiguousarray(np.stack(np.broadcast_arrays(*arrays), axis=-1))


_OBJECTIVE_SIGNATURE = types.float64(types.float64[::1], types.float64, types.float64, types.float64)


@numba.njit(_OBJECTIVE_SIGNATURE, cache=True, nogil=True)
def neg_pass_at_k_nb(theta, N, D, k):
    """log(1 - pass@k) at (N, D, k) for theta packed in `theta_names` order: the value to MINIMISE.

    Monotone in pass@k and well resolved both when pass@k is tiny and when it approaches 1 (where -pass@k
    would be flat to float64). k may be real.
    """
    L = loss_law_nb(theta[4], theta[5], theta[6], theta[7], theta[8], 0.0, 1.0, N, D, 1.0)
    logit_mu = _softclip_nb(_floored_logit_nb(theta[0] + theta[1] * L, theta[9]), LOGIT_MU_BOUNDS[0],
                            LOGIT_MU_BOUNDS[1])
    log_nu = _softclip_nb(theta[2] + theta[3] * L, LOG_NU_BOUNDS[0], LOG_NU_BOUNDS[1])
    a = math.exp(log_nu - _softplus_nb(-logit_mu))
    b = math.exp(log_nu - _softplus_nb(logit_mu))
    return log1m_beta_pass_at_k_nb(a, b, k)


# --------------------------------------------------------------------------------------------- simulation
#: Default truth: Chinchilla-like latent losses (Hoffmann et al. 2022 fit for the first task), with theta's
#: chosen so that mean success runs from ~1e-9 (14M params, 2M tokens) to ~0.3-0.5 (12B, 300B) and the Beta
#: shape a = mu nu is ~0.3-1 for large models (a heavy left tail of unsolved problems, as on GSM8K).
DEFAULT_TRUTH: dict[str, dict[str, float]] = {
    "task_a": {"theta1": 4.4, "theta2": -2.5, "theta3": 0.0, "theta4": 0.3,
               "E": 1.69, "A": 406.4, "alpha": 0.34, "B": 410.7, "beta": 0.28, "logit_floor": -16.0},
    "task_b": {"theta1": 3.5, "theta2": -2.0, "theta3": 0.5, "theta4": 0.2,
               "E": 1.80, "A": 300.0, "alpha": 0.30, "B": 500.0, "beta": 0.30, "logit_floor": -15.0},
    "task_c": {"theta1": 5.0, "theta2": -2.2, "theta3": -0.5, "theta4": 0.4,
               "E": 1.60, "A": 500.0, "alpha": 0.36, "B": 350.0, "beta": 0.26, "logit_floor": -17.0},
    "task_d": {"theta1": 3.0, "theta2": -1.8, "theta3": 1.0, "theta4": 0.1,
               "E": 1.75, "A": 350.0, "alpha": 0.32, "B": 450.0, "beta": 0.32, "logit_floor": -15.5},
}


def simulate_samples(seed: int, n_tasks: int = 2, checkpoints: Sequence[tuple[float, float]] | None = None,
                     n_problems: int = 128, n_samples: int | Sequence[int] = 256,
                     truth: Mapping[str, Any] | None = None,
                     shared_difficulty: bool = False) -> tuple[pd.DataFrame, dict]:
    """Per-problem counts (the ``samples`` kind) drawn from the accuracy law with a known truth.

    checkpoints: (params, tokens) pairs; default the Pythia-like grid `PYTHIA_PARAMS` x `PYTHIA_TOKENS`.
    n_samples: samples per problem, or a sequence to draw each (checkpoint, problem)'s count from (uniformly,
    like adaptive sampling). truth: ``{"tasks": {task: T2 coefficients}}`` or ``{task: coefficients}``;
    default the first `n_tasks` of `DEFAULT_TRUTH`. shared_difficulty: if True a problem keeps its quantile of
    the Beta law across checkpoints (hard problems stay hard, as on real benchmarks; the model assumes
    independence, so this tests robustness), else p is drawn independently per checkpoint and problem.

    Returns (frame with columns task, model, params, tokens, problem, n_samples, n_correct; truth dict
    ``{"route": "accuracy", "seed", "n_problems", "tasks": {task: {theta1..theta4, E, A, alpha, B, beta}}}``).
    """
    rng = np.random.default_rng(seed)
    if truth is None:
        if not 1 <= n_tasks <= len(DEFAULT_TRUTH):
            raise InputError(f"n_tasks must be in 1..{len(DEFAULT_TRUTH)} without an explicit truth")
        tasks = {t: dict(DEFAULT_TRUTH[t]) for t in list(DEFAULT_TRUTH)[:n_tasks]}
    else:
        raw = truth.get("tasks", truth)
        tasks = {}
        for t, c in raw.items():
            missing = [k for k in T2_COEFFICIENTS if k not in c]
            if missing:
                raise InputError(f"truth for task '{t}' is missing {', '.join(missing)}")
            tasks[str(t)] = {k: float(c[k]) for k in T2_COEFFICIENTS}
    if checkpoints is None:
        checkpoints = [(n, d) for n in PYTHIA_PARAMS for d in PYTHIA_TOKENS]
    ckpt = np.asarray(checkpoints, dtype=float).reshape(-1, 2)
    if np.any(ckpt <= 0):
        raise InputError("checkpoints need params > 0 and tokens > 0")
    if n_problems < 1:
        raise InputError("n_problems must be >= 1")
    choices = np.atleast_1d(np.asarray(n_samples, dtype=np.int64))
    if np.any(choices < 1):
        raise InputError("n_samples must be >= 1")

    rows = []
    for task, coefs in tasks.items():
        a, b = accuracy_shapes(coefs, ckpt[:, 0], ckpt[:, 1])
        u = rng.uniform(size=n_problems)  # per-problem quantile (used when shared_difficulty)
        for j, (N, D) in enumerate(ckpt):
            if shared_difficulty:
                p = stats.beta.ppf(u, a[j], b[j])
            else:
                p = rng.beta(a[j], b[j], size=n_problems)
            n = choices[rng.integers(0, choices.size, size=n_problems)] if choices.size > 1 else \
                np.full(n_problems, choices[0])
            c = rng.binomial(n, np.clip(p, 0.0, 1.0))
            rows.append(pd.DataFrame({"task": task, "model": f"N{N:.3g}-D{D:.3g}", "params": N, "tokens": D,
                                      "problem": np.arange(n_problems), "n_samples": n, "n_correct": c}))
    frame = pd.concat(rows, ignore_index=True)
    out_truth = {"route": "accuracy", "seed": int(seed), "n_problems": int(n_problems),
                 "shared_difficulty": bool(shared_difficulty), "tasks": tasks}
    return frame, out_truth


# ------------------------------------------------------------------------------------------------ the route
class AccuracyRoute:
    """Everything route-specific for the accuracy law (same shape as `LossRoute`)."""

    name = "accuracy"
    metric_name = "pass_at_k"
    lower_is_better = False
    coefficient_names = T2_COEFFICIENTS
    theta_names = T2_COEFFICIENTS
    objective_nb = neg_pass_at_k_nb  # minimise log(1 - pass@k)

    @staticmethod
    def observations(data: Any) -> pd.DataFrame:
        """Collapsed (task, checkpoint, n_samples, n_correct) cells with weights: sufficient statistics."""
        if hasattr(data, "collapse_counts"):
            return data.collapse_counts()
        return _check_cells(data)

    @staticmethod
    def build_model(frame: pd.DataFrame, spec: Mapping[str, Any] | None = None) -> pm.Model:
        return build_accuracy_model(frame, spec)

    @staticmethod
    def metric_from_objective(value: Any) -> Any:
        """pass@k from the minimised objective log(1 - pass@k)."""
        return -np.expm1(value)

    #: posterior variables a new checkpoint's prediction also needs (its scatter around the law)
    noise_names = ("checkpoint_sd_mu", "checkpoint_sd_nu")

    @staticmethod
    def metric(coefficients: Any, N: Any, D: Any, k: Any, *, rng: np.random.Generator | None = None,
               spec: Mapping[str, Any] | None = None):
        """Law pass@k per draw; with `rng`, a new checkpoint's pass@k (law + checkpoint deviation)."""
        return accuracy_pass_at_k(coefficients, N, D, k, rng=rng, noise_nu=deviation_nu(spec))

    @staticmethod
    def observed_points(tree: xr.DataTree) -> pd.DataFrame:
        """Observed pass@k per (task, checkpoint), read back from a fit file, as (task, params, tokens, k,
        metric) rows: the problem-weighted mean of the unbiased estimator, for k = 1, 2, 4, ... up to the
        smallest number of samples per problem at that checkpoint."""
        from ..passk import unbiased_pass_at_k

        const = tree["constant_data"].to_dataset()
        tasks = np.asarray(tree["posterior"]["task"].values).astype(str)
        unit = const["unit_index"].values  # (task, checkpoint) of each cell; also in a joint fit
        cells = pd.DataFrame({"task": tasks[const["unit_task"].values[unit]],
                              "params": const["unit_params"].values[unit],
                              "tokens": const["unit_tokens"].values[unit],
                              "n": const["n_samples"].values.astype(float),
                              "c": tree["observed_data"]["n_correct"].values.astype(float),
                              "weight": const["weight"].values.astype(float)})
        rows = []
        for (task, params, tokens), group in cells.groupby(["task", "params", "tokens"], sort=True):
            k_top = int(np.floor(np.log2(group["n"].min())))
            for k in 2.0 ** np.arange(k_top + 1):
                est = unbiased_pass_at_k(group["n"].to_numpy(), group["c"].to_numpy(), k)
                rows.append((task, params, tokens, k, float(np.average(est, weights=group["weight"]))))
        return pd.DataFrame(rows, columns=["task", "params", "tokens", "k", "metric"])
