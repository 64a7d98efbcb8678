"""The loss route: hierarchical T2 loss law L_t(N, D, k) = E_t + A_t/N^alpha_t + B_t/D^beta_t + G_t/k^gamma_t.

Geometry decides speed here more than the sampler does, so the model samples unit-free, nearly independent
quantities and reports the paper's coefficients as deterministics:
  * inputs are scaled to the data's reference point (N0, D0, k0 = geometric means; L0 = typical loss);
  * each term is parameterised by its size *at the reference point* relative to L0 — that removes the strong
    A-alpha (and B-beta, G-gamma) correlation that the raw coefficients have;
  * every coefficient is log-normal, partially pooled across tasks, non-centred;
  * the likelihood is on log(loss) in log-sum-exp form (Student-t by default);
  * rows of one checkpoint (its tasks, its k values) share a checkpoint effect on log loss (`_checkpoint_effect`);
  * a new checkpoint's prediction beyond the fitted data's range carries the law's own error, of sd
    `discrepancy.scale` per e-fold of distance (`extrapolation_efolds`; the scale comes from a backtest);
  * with `[warmup]` on, the law sees each run's effective tokens after a learning-rate warm-up of w N tokens
    (`laws.warmup_tokens`, w per task, pooled), and the fit's route is `WarmupLossRoute`.
"""

from __future__ import annotations

import math

from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import xarray as xr
from numba import types

from ..errors import InputError
from ..laws import (LOSS_COEFFICIENTS, WARMUP_N_REF, loss_law, loss_law_nb, repeated_value, warmup_power_tokens_nb,
                    warmup_tokens, warmup_tokens_nb)
from .extrapolation import (RANGE_AXES, data_range, discrepancy_error, discrepancy_scales,  # noqa: F401 - re-exported
                            extrapolation_efolds, extrapolation_efolds_nb, range_coordinates)

TERMS = ("E", "A", "B", "G")
EXPONENTS = {"A": "alpha", "B": "beta", "G": "gamma"}


@dataclass(frozen=True)
class Scaling:
    """The reference point the model is written around (stored in the fit file)."""

    N0: float
    D0: float
    k0: float
    L0: float

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> "Scaling":
        gm = lambda s: float(np.exp(np.mean(np.log(np.asarray(s, dtype=float)))))  # noqa: E731
        return cls(N0=gm(frame["params"]), D0=gm(frame["tokens"]), k0=gm(frame["k"]), L0=gm(frame["loss"]))

    def as_dict(self) -> dict[str, float]:
        return {"N0": self.N0, "D0": self.D0, "k0": self.k0, "L0": self.L0}


class LossRoute:
    """Everything route-specific for the loss law: model, metric, optimizer objective."""

    name = "loss"
    metric_name = "loss"
    lower_is_better = True
    coefficient_names = LOSS_COEFFICIENTS
    objective_nb = staticmethod(loss_law_nb)

    @staticmethod
    def observations(data: Any) -> pd.DataFrame:
        """One row per observed loss (from EvalData or a tidy frame)."""
        frame = getattr(data, "frame", data)
        cols = ["task", "params", "tokens", "k", "loss"] + [c for c in ("model", "unique_tokens") if c in frame.columns]
        obs = frame[cols].copy()
        obs["k"] = obs["k"].astype(float)
        return obs.reset_index(drop=True)

    @staticmethod
    def build_model(frame: pd.DataFrame, spec: dict[str, Any]) -> pm.Model:
        """The hierarchical PyMC model for a tidy loss frame (task, params, tokens, k, loss)."""
        obs = LossRoute.observations(frame)
        scaling = Scaling.from_frame(obs)
        tasks = sorted(obs["task"].unique())
        task_idx = obs["task"].map({t: i for i, t in enumerate(tasks)}).to_numpy()
        # a checkpoint is one trained model: named by `model` when the data name them (two corpora can train
        # models of the same size on the same number of tokens), else its (params, tokens) pair
        ck_keys = ["params", "tokens"] + [c for c in ("model", "unique_tokens") if c in obs.columns]
        checkpoints = obs[ck_keys].drop_duplicates().sort_values(ck_keys).reset_index(drop=True)
        ckpt_idx = obs.merge(checkpoints.reset_index(names="ckpt"), on=ck_keys, how="left")["ckpt"]
        k_term = spec.get("k_term", "auto")
        if k_term not in ("auto", "off"):
            raise InputError(f"model setting k_term must be 'auto' or 'off', got {k_term!r}")
        # "off" fits Chinchilla's k-free law even to data with k > 1 (the model-comparison baseline)
        has_k_term = k_term == "auto" and bool((obs["k"] != 1).any())
        priors = spec["priors"]
        coords = {"task": tasks, "obs": np.arange(len(obs)), "checkpoint": np.arange(len(checkpoints))}

        with pm.Model(coords=coords) as model:
            pm.Data("checkpoint_params", checkpoints["params"].to_numpy(float), dims="checkpoint")
            pm.Data("checkpoint_tokens", checkpoints["tokens"].to_numpy(float), dims="checkpoint")
            if "unique_tokens" in checkpoints:
                pm.Data("checkpoint_unique_tokens", checkpoints["unique_tokens"].to_numpy(float), dims="checkpoint")
            t = pm.Data("task_index", task_idx, dims="obs")
            pm.Data("checkpoint_index", ckpt_idx.to_numpy(), dims="obs")
            x_n = pm.Data("log_params_scaled", np.log(obs["params"].to_numpy(float) / scaling.N0), dims="obs")
            x_d = pm.Data("log_tokens_scaled", np.log(obs["tokens"].to_numpy(float) / scaling.D0), dims="obs")
            x_k = pm.Data("log_k_scaled", np.log(obs["k"].to_numpy(float) / scaling.k0), dims="obs")
            pm.Data("k", obs["k"].to_numpy(float), dims="obs")
            # the reference point is data too (not a graph constant), so a compiled model is reused for new
            # data of the same shape (bayes_t2.samplers)
            log_l0 = pt.log(pm.Data("scaling_L0", scaling.L0))
            log_n0 = pt.log(pm.Data("scaling_N0", scaling.N0))
            log_d0 = pt.log(pm.Data("scaling_D0", scaling.D0))
            log_k0 = pt.log(pm.Data("scaling_k0", scaling.k0))

            names = ["E", "A", "alpha", "B", "beta"] + (["G", "gamma"] if has_k_term else [])
            centred = spec.get("parameterization", "centered") == "centered"
            log_coef = {name: _pooled_log_coefficient(_log_name(name), priors[name], len(tasks), centred)
                        for name in names}
            repeat = repetition_terms(obs, spec)
            if repeat:  # the data-constrained law: the law sees the effective tokens (and parameters)
                x_n, x_d = _effective_inputs(repeat, obs, t, x_n, x_d, log_coef, log_l0, log_n0, log_d0,
                                             scaling.D0, len(tasks), centred)
            warm = warmup_prior(obs, spec)
            if warm is not None:  # under-training: the law sees the tokens left after the warm-up
                x_d = _warmup_inputs(warm, t, x_n, x_d, log_n0, log_d0, len(tasks), centred)

            # log of each term at the observed inputs, relative to L0
            terms = [log_coef["E"][t],
                     log_coef["A"][t] - pt.exp(log_coef["alpha"])[t] * x_n,
                     log_coef["B"][t] - pt.exp(log_coef["beta"])[t] * x_d]
            if has_k_term:
                terms.append(log_coef["G"][t] - pt.exp(log_coef["gamma"])[t] * x_k)
            # not stored as a Deterministic: obs x draws would dominate the fit file
            mu = log_l0 + pt.logsumexp(pt.stack(terms), axis=0)
            mu = mu + _checkpoint_effect(spec, ckpt_idx.to_numpy(), len(checkpoints),
                                         checkpoints["params"].to_numpy(float), checkpoints["tokens"].to_numpy(float),
                                         task_idx)
            _data_range(obs)

            sigma = pm.HalfNormal("sigma", sigma=spec["likelihood"]["sigma"], dims="task")
            log_loss = pm.Data("log_loss_observed", np.log(obs["loss"].to_numpy(float)), dims="obs")
            family = spec["likelihood"]["family"]
            if family == "student_t":
                pm.StudentT("log_loss", nu=spec["likelihood"]["nu"], mu=mu, sigma=sigma[t], observed=log_loss,
                            dims="obs")
            elif family == "normal":
                pm.Normal("log_loss", mu=mu, sigma=sigma[t], observed=log_loss, dims="obs")
            else:
                raise InputError(f"model setting likelihood.family must be 'student_t' or 'normal', got {family!r}")

            # the paper's coefficients, per task
            exponent = {e: pt.exp(log_coef[e]) for e in ("alpha", "beta") + (("gamma",) if has_k_term else ())}
            pm.Deterministic("E", pt.exp(log_l0 + log_coef["E"]), dims="task")
            pm.Deterministic("alpha", exponent["alpha"], dims="task")
            pm.Deterministic("A", pt.exp(log_l0 + log_coef["A"] + exponent["alpha"] * log_n0),
                             dims="task")
            pm.Deterministic("beta", exponent["beta"], dims="task")
            pm.Deterministic("B", pt.exp(log_l0 + log_coef["B"] + exponent["beta"] * log_d0),
                             dims="task")
            if has_k_term:
                pm.Deterministic("gamma", exponent["gamma"], dims="task")
                pm.Deterministic("G", pt.exp(log_l0 + log_coef["G"] + exponent["gamma"] * log_k0),
                                 dims="task")
            else:  # Chinchilla's k-free law: no sampling term
                pm.Deterministic("gamma", pt.ones(len(tasks)), dims="task")
                pm.Deterministic("G", pt.zeros(len(tasks)), dims="task")
        model.bayes_t2_scaling = scaling  # type: ignore[attr-defined]
        return model

    @staticmethod
    def observed_points(tree: xr.DataTree) -> pd.DataFrame:
        """The fitted observations as (task, params, tokens, k, metric) rows, read back from a fit file; with a
        `model` column ("checkpoint <i>") when the fit told apart checkpoints of one (params, tokens) -- runs the
        data named -- so a refit of these rows (the report's backtest) names its checkpoints as the fit did."""
        const = tree["constant_data"].to_dataset()
        tasks = np.asarray(tree["posterior"]["task"].values).astype(str)
        ckpt = const["checkpoint_index"].values
        design = [const[f"checkpoint_{c}"].values for c in ("params", "tokens", "unique_tokens")
                  if f"checkpoint_{c}" in const]
        named = len(np.unique(np.column_stack(design), axis=0)) < len(design[0])
        return pd.DataFrame({
            **({"model": [f"checkpoint {i}" for i in ckpt]} if named else {}),
            "task": tasks[const["task_index"].values],
            "params": const["checkpoint_params"].values[ckpt],
            "tokens": const["checkpoint_tokens"].values[ckpt],
            "k": const["k"].values.astype(float),
            "metric": np.exp(tree["observed_data"]["log_loss"].values.astype(float)),
            **({"unique_tokens": const["checkpoint_unique_tokens"].values[ckpt]}
               if "checkpoint_unique_tokens" in const else {}),
        })

    @staticmethod
    def population_coefficients(posterior: xr.Dataset, scaling: dict[str, float], seed: int = 0) -> xr.Dataset:
        """The coefficients of a new, unseen task drawn from the pooled population (one per posterior draw).

        log(coefficient) ~ Normal(mu, sd) with each draw's hyper-parameters, mapped back to E, A, alpha, ...
        exactly as `build_model` maps the sampled task values. A single-task fit has no spread (sd = 0).
        """
        rng = np.random.default_rng(seed)
        shape = (posterior.sizes["chain"], posterior.sizes["draw"])
        dims = ("chain", "draw")

        def new_task(name: str) -> xr.DataArray | None:
            log_name = _log_name(name)
            if f"{log_name}_mu" not in posterior:
                return None
            sd = posterior[f"{log_name}_sd"] if f"{log_name}_sd" in posterior else 0.0
            return posterior[f"{log_name}_mu"] + sd * xr.DataArray(rng.standard_normal(shape), dims=dims)

        L0, out = scaling["L0"], {}
        out["E"] = L0 * np.exp(new_task("E"))
        for term, ref in (("A", "N0"), ("B", "D0"), ("G", "k0")):
            exponent, log_rel = new_task(EXPONENTS[term]), new_task(term)
            if exponent is None or log_rel is None:  # k-free law: no sampling term
                out[EXPONENTS[term]] = xr.ones_like(out["E"])
                out[term] = xr.zeros_like(out["E"])
                continue
            out[EXPONENTS[term]] = np.exp(exponent)
            out[term] = L0 * np.exp(log_rel + out[EXPONENTS[term]] * np.log(scaling[ref]))
        return xr.Dataset({name: out[name] for name in LOSS_COEFFICIENTS})

    @staticmethod
    def metric_from_objective(value: Any) -> Any:
        """The optimizer minimises the loss itself."""
        return value

    #: posterior variables a new checkpoint's prediction also needs: the noise sd on log loss, the sd of the
    #: checkpoint effect, and the fitted data's range (the discrepancy grows with the distance beyond it)
    noise_names = ("sigma", "checkpoint_sd", "data_log_range")

    @staticmethod
    def metric(coefficients: xr.Dataset, N: Any, D: Any, k: Any, *, rng: np.random.Generator | None = None,
               spec: dict[str, Any] | None = None, bend: Any = 0.0, law_tokens: Any = None) -> xr.DataArray:
        """The law's loss for every posterior draw (broadcast over N, D, k); with `rng`, a new checkpoint's
        observed loss: the law times the likelihood's noise on log loss (Student-t or normal, per `spec`).
        bend: a shift of log loss per draw (the optimizer's bend, `optimum.BentRoute`). law_tokens: the tokens
        the law sees, when not D (`WarmupLossRoute`); the discrepancy's distance is always that of (N, D)."""
        c = coefficients
        loss = loss_law(c["E"], c["A"], c["alpha"], c["B"], c["beta"], c["G"], c["gamma"], N,
                        D if law_tokens is None else law_tokens, k)
        if not (np.isscalar(bend) and bend == 0.0):
            loss = loss * np.exp(bend)
        if rng is None or "sigma" not in c:
            return loss
        lik = (spec or {}).get("likelihood", {"family": "student_t", "nu": 5.0})
        shape = np.shape(loss)
        eps = rng.standard_t(lik["nu"], size=shape) if lik["family"] == "student_t" else rng.standard_normal(shape)
        log_dev = xr.DataArray(eps, dims=loss.dims, coords=loss.coords) * c["sigma"]
        if "checkpoint_sd" in c:  # a fresh checkpoint effect
            log_dev = log_dev + xr.DataArray(rng.standard_normal(shape), dims=loss.dims) * c["checkpoint_sd"]
        # the law's own error, growing with the extrapolation
        log_dev = log_dev + discrepancy_error(c.get("data_log_range"), N, D, loss, rng, discrepancy_scales(spec, c))
        return loss * np.exp(log_dev)


_OBJECTIVE_SIGNATURE = types.float64(types.float64[::1], types.float64, types.float64, types.float64)
_NB = dict(cache=True, nogil=True, error_model="numpy")
#: theta of the warm-up law: the loss law's coefficients, then w (a bent view appends z*s and the range)
WARMUP_AT = len(LOSS_COEFFICIENTS)


@numba.njit(_OBJECTIVE_SIGNATURE, **_NB)
def warmup_loss_objective_nb(theta, N, D, k):
    """The loss law at the tokens left after the warm-up: theta = [E, A, alpha, B, beta, G, gamma, w]."""
    return loss_law_nb(theta[0], theta[1], theta[2], theta[3], theta[4], theta[5], theta[6], N,
                       warmup_tokens_nb(D, N, theta[WARMUP_AT]), k)


class WarmupLossRoute(LossRoute):
    """The loss route of a fit with a learning-rate warm-up (`[warmup]`): every law evaluation -- predictions,
    the optimizer, the bend -- sees the effective tokens `laws.warmup_tokens(D, N, w)` of each draw's w."""

    law_name = "loss_warmup"  # the reference solver's name for this law (`reference.numpy_objective`)
    coefficient_names = LOSS_COEFFICIENTS + ("warmup",)
    objective_nb = staticmethod(warmup_loss_objective_nb)  # bent as any loss law (`optimum.bent_objective`)

    @staticmethod
    def metric(coefficients: xr.Dataset, N: Any, D: Any, k: Any, **kwargs: Any) -> xr.DataArray:
        """`LossRoute.metric` with the law at the effective tokens (the discrepancy's distance at D)."""
        return LossRoute.metric(coefficients, N, D, k, law_tokens=warmup_tokens(D, N, coefficients["warmup"]),
                                **kwargs)

    @staticmethod
    def population_coefficients(posterior: xr.Dataset, scaling: dict[str, float], seed: int = 0) -> xr.Dataset:
        """`LossRoute.population_coefficients` plus a new task's w (its own stream of `seed`)."""
        out = LossRoute.population_coefficients(posterior, scaling, seed)
        rng = np.random.default_rng([int(seed), 1])
        shape = (posterior.sizes["chain"], posterior.sizes["draw"])
        sd = posterior["log_warmup_sd"] if "log_warmup_sd" in posterior else 0.0
        log_w = posterior["log_warmup_mu"] + sd * xr.DataArray(rng.standard_normal(shape), dims=("chain", "draw"))
        return out.assign(warmup=np.exp(log_w))


@numba.njit(_OBJECTIVE_SIGNATURE, **_NB)
def warmup_power_loss_objective_nb(theta, N, D, k):
    """The loss law at the tokens left after a warm-up of w n_ref (N/n_ref)^exponent tokens:
    theta = [E, A, alpha, B, beta, G, gamma, w, exponent]."""
    return loss_law_nb(theta[0], theta[1], theta[2], theta[3], theta[4], theta[5], theta[6], N,
                       warmup_power_tokens_nb(D, N, theta[WARMUP_AT], theta[WARMUP_AT + 1]), k)


class WarmupPowerLossRoute(WarmupLossRoute):
    """The warm-up law with a warm-up that grows as another power of the model size (`[warmup] exponent`):
    W = w n_ref (N / n_ref)^exponent tokens, `laws.warmup_length`; exponent 1 is `WarmupLossRoute`'s w N, 0 a
    warm-up of the same number of tokens for every model."""

    law_name = "loss_warmup_power"
    coefficient_names = LOSS_COEFFICIENTS + ("warmup", "warmup_exponent")
    objective_nb = staticmethod(warmup_power_loss_objective_nb)

    @staticmethod
    def metric(coefficients: xr.Dataset, N: Any, D: Any, k: Any, **kwargs: Any) -> xr.DataArray:
        """`LossRoute.metric` with the law at the effective tokens (the discrepancy's distance at D)."""
        tokens = warmup_tokens(D, N, coefficients["warmup"], exponent=coefficients["warmup_exponent"])
        return LossRoute.metric(coefficients, N, D, k, law_tokens=tokens, **kwargs)

    @staticmethod
    def population_coefficients(posterior: xr.Dataset, scaling: dict[str, float], seed: int = 0) -> xr.Dataset:
        """`WarmupLossRoute.population_coefficients` plus a new task's exponent, the one every task has."""
        out = WarmupLossRoute.population_coefficients(posterior, scaling, seed)
        return out.assign(warmup_exponent=posterior["warmup_exponent"].median("task"))


def loss_route_for(variables: Any) -> type[LossRoute]:
    """The loss route that reads a posterior with these variables: `WarmupPowerLossRoute` when it has a warm-up
    exponent, `WarmupLossRoute` when it has w."""
    if "warmup_exponent" in variables:
        return WarmupPowerLossRoute
    return WarmupLossRoute if "warmup" in variables else LossRoute


#: `[warmup] enabled = "auto"`: fitted when at least this many runs have fewer tokens per parameter than
#: `WARMUP_AUTO_TOKENS_PER_PARAM` (runs short enough for a warm-up of a few tokens per parameter to show)
WARMUP_AUTO_MIN_RUNS = 3
WARMUP_AUTO_TOKENS_PER_PARAM = 2.0
#: default prior of w, warm-up tokens per parameter (log-normal, pooled across tasks; models/loss.toml)
WARMUP_PRIOR = {"median": 1.0, "log_sd": 1.5, "pool_sd": 0.5}


def warmup_prior(obs: pd.DataFrame, spec: dict[str, Any]) -> dict[str, float] | None:
    """The prior of w when the model fits a warm-up, else None: `[warmup] enabled` "on", "off", or "auto"
    (on when at least `WARMUP_AUTO_MIN_RUNS` runs have D/N < `WARMUP_AUTO_TOKENS_PER_PARAM`). `[warmup]
    exponent` (returned as "exponent"): 1, a warm-up of w N tokens, or any other number e, one of
    w n_ref (N/n_ref)^e tokens (0: the same length for every model)."""
    settings = spec.get("warmup") or {}
    enabled = settings.get("enabled", "off")
    if enabled not in ("auto", "on", "off"):
        raise InputError(f"model setting warmup.enabled must be 'auto', 'on' or 'off', got {enabled!r}")
    exponent = settings.get("exponent", 1)
    if isinstance(exponent, bool) or not isinstance(exponent, (int, float)) or not math.isfinite(exponent):
        raise InputError(f"model setting warmup.exponent must be a number, got {exponent!r}")
    if enabled == "off":
        return None
    if enabled == "auto":
        runs = obs[["params", "tokens"]].drop_duplicates()
        short = int((runs["tokens"] / runs["params"] < WARMUP_AUTO_TOKENS_PER_PARAM).sum())
        if short < WARMUP_AUTO_MIN_RUNS:
            return None
    return {**WARMUP_PRIOR, **(spec["priors"].get("warmup") or {}), "exponent": float(exponent)}


def _warmup_inputs(prior: dict[str, float], t, x_n, x_d, log_n0, log_d0, n_tasks: int, centred: bool):
    """log(D_w/D0) per observation: the tokens left after a warm-up of w_t N tokens (`laws.warmup_tokens`,
    pytensor's minimum; the formula is homogeneous in (D, N), so it takes both relative to D0), with w per task,
    partially pooled, reported as the deterministic `warmup` (dim task)."""
    w = pt.exp(_pooled_log_coefficient("log_warmup", prior, n_tasks, centred))
    pm.Deterministic("warmup", w, dims="task")
    n_scaled = pt.exp(x_n + log_n0 - log_d0)  # N in units of D0, as D is
    if prior["exponent"] == 1.0:
        return pt.log(warmup_tokens(pt.exp(x_d), n_scaled, w[t], fmin=pt.minimum))
    # a warm-up that grows as another power of the size (0: the same length for every model); kept in the
    # posterior so every later law evaluation reads it (`WarmupPowerLossRoute`). Not learned: with w it is
    # identified only by the few runs that stop near their warm-up, and chains split (r-hat 1.8 on simulated
    # IsoFLOP runs)
    exponent = pm.Deterministic("warmup_exponent", pt.fill(w, prior["exponent"]), dims="task")
    n_ref = pt.exp(np.log(WARMUP_N_REF) - log_d0)
    return pt.log(warmup_tokens(pt.exp(x_d), n_scaled, w[t], fmin=pt.minimum, exponent=exponent[t], n_ref=n_ref))


def repetition_terms(obs: pd.DataFrame, spec: dict[str, Any]) -> dict[str, Any]:
    """Which repetition parameters the model fits ({} for none): R_D* when the data carry a unique_tokens
    column with some run trained beyond its unique tokens (and the spec's repetition.enabled is not "off");
    R_N* as repetition.R_N_star says: "on", "off", or "auto" = on when at least `RN_AUTO_MIN_RUNS` runs have
    N >= U / `RN_AUTO_TOKENS_PER_PARAM` (more than twice the compute-optimal size for their unique tokens at
    Chinchilla's 20 tokens per parameter), where excess parameters can show in the data."""
    opts = spec.get("repetition", {}) or {}
    enabled = opts.get("enabled", "auto")
    if enabled not in ("auto", "off"):
        raise InputError(f"model setting repetition.enabled must be 'auto' or 'off', got {enabled!r}")
    if enabled == "off" or "unique_tokens" not in obs.columns:
        return {}
    U, D, N = (obs[c].to_numpy(float) for c in ("unique_tokens", "tokens", "params"))
    if not np.any(U < D):
        return {}
    rn = opts.get("R_N_star", "auto")
    if rn not in ("auto", "on", "off"):
        raise InputError(f"model setting repetition.R_N_star must be 'auto', 'on' or 'off', got {rn!r}")
    runs = obs.assign(_big=N >= U / RN_AUTO_TOKENS_PER_PARAM)[["params", "tokens", "unique_tokens", "_big"]]
    n_big = int(runs.drop_duplicates()["_big"].sum())
    fit_rn = rn == "on" or (rn == "auto" and n_big >= RN_AUTO_MIN_RUNS)
    return {"R_D_star": spec["priors"].get("R_D_star", REPEAT_PRIORS["R_D_star"]),
            **({"R_N_star": spec["priors"].get("R_N_star", REPEAT_PRIORS["R_N_star"])} if fit_rn else {})}


#: R_N* "auto": fitted when at least this many runs have N >= U / RN_AUTO_TOKENS_PER_PARAM
RN_AUTO_MIN_RUNS = 3
RN_AUTO_TOKENS_PER_PARAM = 10.0
#: default priors of R_D*, R_N* (log-normal, pooled across tasks): the published values (models/loss.toml)
REPEAT_PRIORS = {"R_D_star": {"median": 15.387756, "log_sd": 0.5, "pool_sd": 0.25},
                 "R_N_star": {"median": 5.309743, "log_sd": 0.5, "pool_sd": 0.25}}


def _effective_inputs(repeat: dict[str, Any], obs: pd.DataFrame, t, x_n, x_d, log_coef, log_l0, log_n0, log_d0,
                      D0: float, n_tasks: int, centred: bool):
    """(log N'/N0, log D'/D0) per observation: the data-constrained law's effective parameters and tokens
    (`bayes_t2.laws.repeated_value`, pytensor ops), with R_D* (and R_N*) per task, partially pooled around the
    published values; reported as the deterministics R_D_star (R_N_star), dim task."""
    D = obs["tokens"].to_numpy(float)
    U = np.fmin(obs["unique_tokens"].to_numpy(float), D)
    x_u = pm.Data("log_unique_scaled", np.log(U / D0), dims="obs")
    ident = lambda a, b: a  # noqa: E731 - inside the model R* is finite and positive: no limits to fill
    r_d = pt.exp(_pooled_log_coefficient("log_R_D_star", repeat["R_D_star"], n_tasks, centred))
    pm.Deterministic("R_D_star", r_d, dims="task")
    x_d = pt.log(repeated_value(pt.exp(x_u), pt.exp(x_d - x_u) - 1.0, r_d[t], fmin=ident, expm1=pt.expm1))
    if "R_N_star" in repeat:
        r_n = pt.exp(_pooled_log_coefficient("log_R_N_star", repeat["R_N_star"], n_tasks, centred))
        pm.Deterministic("R_N_star", r_n, dims="task")
        # U_N = the compute-optimal size for U tokens from each task's own A, alpha, B, beta (laws.unique_params)
        alpha, beta = pt.exp(log_coef["alpha"]), pt.exp(log_coef["beta"])
        log_a = log_l0 + log_coef["A"] + alpha * log_n0
        log_b = log_l0 + log_coef["B"] + beta * log_d0
        log_g = (pt.log(alpha) + log_a - pt.log(beta) - log_b) / (alpha + beta)
        log_u = x_u + log_d0
        log_un = log_g[t] + (beta / alpha)[t] * (log_g[t] + log_u) - log_n0  # log(U_N / N0)
        x_un = pt.minimum(log_un, x_n)
        x_n = pt.log(repeated_value(pt.exp(x_un), pt.exp(x_n - x_un) - 1.0, r_n[t], fmin=ident, expm1=pt.expm1))
    return x_n, x_d


def _log_name(name: str) -> str:
    """Sampled variable for a coefficient: `log_alpha` for exponents, `log_A_rel` for terms (relative to L0)."""
    return f"log_{name}" if name in EXPONENTS.values() else f"log_{name}_rel"


def _pooled_log_coefficient(name: str, prior: dict[str, float], n_tasks: int, centred: bool):
    """log(coefficient_t) ~ Normal(mu, sd) across tasks; a single task has no pooling level.

    Centred suits the usual case of many points per task (the likelihood pins each task); non-centred suits
    sparse tasks, where the data cannot pin them and the centred form has a funnel.
    """
    mu = pm.Normal(f"{name}_mu", mu=np.log(prior["median"]), sigma=prior["log_sd"])
    if n_tasks == 1:
        return pm.Deterministic(name, pt.stack([mu]), dims="task")
    # log-normal, not half-normal: a spread pushed to ~0 is the neck of the centred funnel (divergences)
    sd = pm.LogNormal(f"{name}_sd", mu=np.log(prior["pool_sd"]), sigma=0.75)
    if centred:
        return pm.Normal(name, mu, sd, dims="task")
    z = pm.Normal(f"{name}_z", 0.0, 1.0, dims="task")
    return pm.Deterministic(name, mu + sd * z, dims="task")


def _checkpoint_effect(spec: dict[str, Any], ckpt_idx: np.ndarray, n_checkpoints: int,
                       params: np.ndarray, tokens: np.ndarray, task_idx: np.ndarray):
    """A shift of log loss shared by every row of one checkpoint (all its tasks and k values), pooled:
    u_c ~ Normal(0, checkpoint_sd). Rows of one checkpoint come from the same weights (and all k values of a
    task from the same samples), so they are not independent evidence about the law. Only when some checkpoint
    has several rows: with one row each the effect is the noise under another name. Non-centred (when the rows
    barely inform the sd, the centred form is a funnel).

    `orthogonal` (default): the effects are the scatter *around* the law, so they are kept free of any smooth
    trend in (log N, log D) on every task's checkpoints (`trend_free_projection`). Otherwise the effects can
    move together and trade places with the tasks' size and data terms (shared by all of a checkpoint's tasks,
    they are cheaper than a task's law to bend): a ridge along which chains settle in different places."""
    opts = spec.get("checkpoint_effect", {})
    rows_per_ckpt = np.bincount(ckpt_idx, minlength=n_checkpoints)
    if opts.get("enabled", "off") != "auto" or rows_per_ckpt.max() < 2:
        return 0.0
    centred = opts.get("parameterization", "non_centered") == "centered"
    seen = np.zeros((int(task_idx.max()) + 1, n_checkpoints), dtype=bool)  # task x checkpoint: evaluated
    seen[task_idx, ckpt_idx] = True
    per_task = _scale_per_task(opts.get("sd_per_task", "auto"), centred, int(seen.sum(axis=0).max()))
    sd = pm.HalfNormal("checkpoint_sd", sigma=float(opts["sd"]), dims="task" if per_task else None)
    orthogonal = opts.get("orthogonal", True)
    if centred:  # many rows per checkpoint pin each effect (each free coordinate of the effects)
        if orthogonal:
            basis = trend_free_basis(params, tokens, seen)
            pm.modelcontext(None).add_coord("checkpoint_free", np.arange(basis.shape[1]))
            w = pm.Normal("checkpoint_w", 0.0, sd, dims="checkpoint_free")
            return (pt.as_tensor(basis) @ w)[ckpt_idx]
        return pm.Normal("checkpoint_u", 0.0, sd, dims="checkpoint")[ckpt_idx]
    z = pm.Normal("checkpoint_z", 0.0, 1.0, dims="checkpoint")
    if orthogonal:
        z = pt.as_tensor(trend_free_projection(params, tokens, seen)) @ z
    # sd_per_task: one shared standardised effect, each task's rows scaled by that task's sd (one factor)
    return z[ckpt_idx] * (sd[task_idx] if per_task else sd)


#: tasks one checkpoint must be evaluated on before "auto" gives each task its own checkpoint scale
MIN_TASKS_PER_FACTOR = 3


def _scale_per_task(setting: Any, centred: bool, max_tasks_per_checkpoint: int) -> bool:
    """Whether each task scales the shared checkpoint effect by its own sd (a one-factor model). "auto": when
    some checkpoint is evaluated on at least three tasks -- a one-factor model's loadings are identified by three
    indicators, not by two (with two, only their product is: SBC's divergences tripled) -- and the effect is
    non-centred (the centred form samples the effects themselves, at one scale)."""
    if isinstance(setting, str) and setting == "auto":
        return not centred and max_tasks_per_checkpoint >= MIN_TASKS_PER_FACTOR
    if not isinstance(setting, bool):
        raise InputError(f'model setting checkpoint_effect.sd_per_task must be true, false or "auto", got {setting!r}')
    if setting and centred:
        raise InputError('model setting checkpoint_effect.sd_per_task needs parameterization = "non_centered": one '
                         "standardised effect per checkpoint, scaled by each task's sd")
    return setting


def _trend_basis(params: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """1, log N, log D and their squares and product over the checkpoints (standardised columns)."""
    x, y = np.log(params), np.log(tokens)
    x, y = (x - x.mean()) / (x.std() or 1.0), (y - y.mean()) / (y.std() or 1.0)
    return np.column_stack([np.ones_like(x), x, y, x * x, x * y, y * y])


def _column_space(matrix: np.ndarray) -> np.ndarray:
    """An orthonormal basis of the columns' span (fewer columns than given when they are dependent)."""
    if matrix.size == 0:
        return np.zeros((matrix.shape[0], 0))
    u, singular, _ = np.linalg.svd(matrix, full_matrices=False)
    if singular.size == 0 or singular.max() == 0:
        return np.zeros((matrix.shape[0], 0))
    return u[:, singular > 1e-8 * singular.max()]


def trend_free_projection(params: np.ndarray, tokens: np.ndarray, seen: np.ndarray | None = None) -> np.ndarray:
    """The projection (checkpoints x checkpoints) that keeps of a vector of checkpoint effects only what no
    task's law can absorb: q q^T with q the `trend_free_basis`."""
    basis = trend_free_basis(params, tokens, seen)
    return basis @ basis.T


def trend_free_basis(params: np.ndarray, tokens: np.ndarray, seen: np.ndarray | None = None) -> np.ndarray:
    """An orthonormal basis (checkpoints x free directions) of the checkpoint effects no task's law can
    absorb: what is left once every smooth trend (a quadratic surface in log N and log D) on some task's
    checkpoints is removed. The centred form samples the effects' coordinates in it, so no direction of the
    sampled vector is left to the prior alone.

    seen: tasks x checkpoints, True where the task has rows at the checkpoint (None: every task sees every
    checkpoint). A task's law can mimic any quadratic trend of the effects *on its own checkpoints*, so the
    effects are kept orthogonal to each task's trends, embedded in the full vector: the basis spans the
    vectors that lie on one task's checkpoints and are orthogonal to its trends there. When
    every task sees every checkpoint this is the complement of one quadratic surface over all checkpoints;
    when tasks see different checkpoints (models trained on different corpora, each evaluated on its own
    validation sets) one global surface would leave each group's trend free to trade against its laws as long
    as the groups' trends cancel. A task with no more checkpoints than trend terms pins nothing."""
    basis = _trend_basis(np.asarray(params, float), np.asarray(tokens, float))
    n = len(basis)
    if seen is None:
        return _column_space(np.eye(n) - (q := _column_space(basis)) @ q.T)
    groups = {tuple(np.flatnonzero(row)) for row in np.asarray(seen, bool) if row.any()}
    free = []
    for members in sorted(groups):
        idx = np.asarray(members)
        trend = _column_space(basis[idx])
        local = np.eye(len(idx)) - trend @ trend.T  # spans the vectors on idx orthogonal to its trends
        embedded = np.zeros((n, len(idx)))
        embedded[idx] = local
        free.append(embedded)
    return _column_space(np.hstack(free))


def _data_range(obs: pd.DataFrame) -> None:
    """The fitted data's range (`extrapolation.data_range`) of the observed runs."""
    data_range(obs["params"].to_numpy(float), obs["tokens"].to_numpy(float))
