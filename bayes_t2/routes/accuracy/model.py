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
the optimizer's theta (`T2_COEFFICIENTS`); it only matters far from any optimum, but the model, `law.accuracy_shapes`
and `law.neg_pass_at_k_nb` all apply it, so fitted law and objective agree. Without it the first Pythia
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

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
from scipy.special import gammaln

from ..extrapolation import data_range
from .cells import check_cells, reference_point, unit_table
from .config import NO_FLOOR, SAMPLED, accuracy_config
from .kernels import PT, beta_shapes, boxcox_pt, floored_logit


def pooled(name: str, prior: Mapping[str, float], n_tasks: int, pooling: Mapping[str, Any],
            centered: bool | None = None):
    """Per-task values of one sampled quantity, partially pooled (see "Pooling" in the module doc).

    loc ~ Normal(prior loc, prior scale); sd ~ LogNormal(log(pool_sd), pooling.sd_log_sd) (zero-avoiding);
    q_t ~ Normal(loc, sd) (centred, default) or q_t = loc + sd * z_t, z_t ~ Normal(0, 1) (non-centred).
    `centered` overrides ``pooling.centered`` for a quantity the data barely see. A single task has no
    pooling level. A prior with an ``upper`` bound truncates each task's value there (the Normal of a
    single task's loc, of q_t, or of z_t at (upper - loc) / sd): the exponents' (`models/accuracy.toml`).
    """
    upper = prior.get("upper")
    if n_tasks == 1:
        if upper is None:
            loc = pm.Normal(f"{name}_loc", mu=prior["loc"], sigma=prior["scale"])
        else:
            loc = pm.TruncatedNormal(f"{name}_loc", mu=prior["loc"], sigma=prior["scale"], upper=float(upper))
        return pm.Deterministic(name, pt.stack([loc]), dims="task")
    loc = pm.Normal(f"{name}_loc", mu=prior["loc"], sigma=prior["scale"])
    sd = pm.LogNormal(f"{name}_sd", mu=math.log(prior["pool_sd"]), sigma=pooling["sd_log_sd"])
    if pooling["centered"] if centered is None else centered:
        if upper is None:
            return pm.Normal(name, loc, sd, dims="task")
        return pm.TruncatedNormal(name, loc, sd, upper=float(upper), dims="task")
    if upper is None:
        z = pm.Normal(f"{name}_z", 0.0, 1.0, dims="task")
    else:
        z = pm.TruncatedNormal(f"{name}_z", 0.0, 1.0, upper=(float(upper) - loc) / sd, dims="task")
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
        logit_mu = floored_logit(logit_mu, logit_floor, PT)
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
    a, b = beta_shapes(logit_mu, log_nu, PT)  # bounded, then nu * sigmoid(+-logit_mu)
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
        return pooled("logit_floor", priors["logit_floor"], n_tasks, spec["pooling"], centered=False)[unit_task]
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
    cells = check_cells(cells)
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

        data_range(units["params"].to_numpy(float), units["tokens"].to_numpy(float))  # for the discrepancy
        q = {name: pooled(name, priors[name], len(tasks), spec["pooling"]) for name in SAMPLED}
        floor = chance_floor(priors, len(tasks), spec, t)
        alpha = pm.Deterministic("alpha", pt.exp(q["log_alpha"]), dims="task")
        beta = pm.Deterministic("beta", pt.exp(q["log_beta"]), dims="task")
        w = pm.Deterministic("w", pm.math.sigmoid(q["logit_w"]), dims="task")
        slope_mu = pm.Deterministic("slope_mu", pt.exp(q["log_slope_mu"]), dims="task")
        slope_nu = q["slope_nu"]

        # standardised difficulty per (task, checkpoint) unit, then the Beta law of per-problem success
        z = w[t] * boxcox_pt(x_n, alpha[t]) + (1.0 - w[t]) * boxcox_pt(x_d, beta[t])
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
