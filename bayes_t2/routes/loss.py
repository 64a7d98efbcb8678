"""The loss route: hierarchical T2 loss law L_t(N, D, k) = E_t + A_t/N^alpha_t + B_t/D^beta_t + G_t/k^gamma_t.

Geometry decides speed here more than the sampler does, so the model samples unit-free, nearly independent
quantities and reports the paper's coefficients as deterministics:
  * inputs are scaled to the data's reference point (N0, D0, k0 = geometric means; L0 = typical loss);
  * each term is parameterised by its size *at the reference point* relative to L0 — that removes the strong
    A-alpha (and B-beta, G-gamma) correlation that the raw coefficients have;
  * every coefficient is log-normal, partially pooled across tasks, non-centred;
  * the likelihood is on log(loss) in log-sum-exp form (Student-t by default).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import xarray as xr

from ..errors import InputError
from ..laws import LOSS_COEFFICIENTS, loss_law, loss_law_nb

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
        obs = frame[["task", "params", "tokens", "k", "loss"]].copy()
        obs["k"] = obs["k"].astype(float)
        return obs.reset_index(drop=True)

    @staticmethod
    def build_model(frame: pd.DataFrame, spec: dict[str, Any]) -> pm.Model:
        """The hierarchical PyMC model for a tidy loss frame (task, params, tokens, k, loss)."""
        obs = LossRoute.observations(frame)
        scaling = Scaling.from_frame(obs)
        tasks = sorted(obs["task"].unique())
        task_idx = obs["task"].map({t: i for i, t in enumerate(tasks)}).to_numpy()
        checkpoints = obs[["params", "tokens"]].drop_duplicates().sort_values(["params", "tokens"])
        checkpoints = checkpoints.reset_index(drop=True)
        ckpt_idx = obs.merge(checkpoints.reset_index(names="ckpt"), on=["params", "tokens"], how="left")["ckpt"]
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

            # log of each term at the observed inputs, relative to L0
            terms = [log_coef["E"][t],
                     log_coef["A"][t] - pt.exp(log_coef["alpha"])[t] * x_n,
                     log_coef["B"][t] - pt.exp(log_coef["beta"])[t] * x_d]
            if has_k_term:
                terms.append(log_coef["G"][t] - pt.exp(log_coef["gamma"])[t] * x_k)
            # not stored as a Deterministic: obs x draws would dominate the fit file
            mu = log_l0 + pt.logsumexp(pt.stack(terms), axis=0)

            sigma = pm.HalfNormal("sigma", sigma=spec["likelihood"]["sigma"], dims="task")
            log_loss = pm.Data("log_loss_observed", np.log(obs["loss"].to_numpy(float)), dims="obs")
            family = spec["likelihood"]["family"]
            if family == "student_t":
                pm.StudentT("log_loss", nu=spec["likelihood"]["nu"], mu=mu, sigma=sigma[t], observed=log_loss,
                            dims="obs")
            elif family == "normal":
                pm.Normal("log_loss", mu=mu, sigma=sigma[t], observed=log_loss, dims="obs")
            else:
                raise ValueError(f"unknown likelihood family '{family}'")

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
        """The fitted observations as (task, params, tokens, k, metric) rows, read back from a fit file."""
        const = tree["constant_data"].to_dataset()
        tasks = np.asarray(tree["posterior"]["task"].values).astype(str)
        ckpt = const["checkpoint_index"].values
        return pd.DataFrame({
            "task": tasks[const["task_index"].values],
            "params": const["checkpoint_params"].values[ckpt],
            "tokens": const["checkpoint_tokens"].values[ckpt],
            "k": const["k"].values.astype(float),
            "metric": np.exp(tree["observed_data"]["log_loss"].values.astype(float)),
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

    #: posterior variables a new checkpoint's prediction also needs (the noise sd on log loss)
    noise_names = ("sigma",)

    @staticmethod
    def metric(coefficients: xr.Dataset, N: Any, D: Any, k: Any, *, rng: np.random.Generator | None = None,
               spec: dict[str, Any] | None = None) -> xr.DataArray:
        """The law's loss for every posterior draw (broadcast over N, D, k); with `rng`, a new checkpoint's
        observed loss: the law times the likelihood's noise on log loss (Student-t or normal, per `spec`)."""
        c = coefficients
        loss = loss_law(c["E"], c["A"], c["alpha"], c["B"], c["beta"], c["G"], c["gamma"], N, D, k)
        if rng is None or "sigma" not in c:
            return loss
        lik = (spec or {}).get("likelihood", {"family": "student_t", "nu": 5.0})
        shape = np.shape(loss)
        eps = rng.standard_t(lik["nu"], size=shape) if lik["family"] == "student_t" else rng.standard_normal(shape)
        return loss * np.exp(xr.DataArray(eps, dims=loss.dims, coords=loss.coords) * c["sigma"])


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
