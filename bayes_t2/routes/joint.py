"""The joint fit: loss data and per-problem counts for the same tasks share one loss law.

With loss data beside the counts, the latent L(N, D) of the accuracy route is no longer latent: it is the
loss route's law at k = 1, ``L_t(N, D) = E_t + A_t/N^alpha_t + B_t/D^beta_t``, fitted to the losses (its own
likelihood, priors from models/loss.toml) and entering the Beta law of per-problem success as

    logit mu = theta1 + theta2 * L,   log nu = theta3 + theta4 * L.

Because the loss data fix L's offset and scale, theta1..theta4 are identified in the paper's own units
(the standalone accuracy route has to pin E = 0 and a unit slope). Sampled per task, as in the standalone
route: logit_mu_ref, log_slope_mu, log_nu_ref, slope_nu, with the difficulty z = (L - L_ref)/S, where L_ref
and S are the law's value and total log-slope -dL/dlog N - dL/dlog D at the counts' reference checkpoint, so
the priors of models/accuracy.toml keep their meaning; logit_w, log_alpha and log_beta are not sampled (the
loss law gives them). The result reads as an accuracy-route fit (`route = "accuracy"`): the optimizer and
predictions use theta1..theta4 and E, A, alpha, B, beta as usual.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt

from ..errors import InputError
from .accuracy import (accuracy_config, chance_floor, check_cells, counts_likelihood, pooled, reference_point,
                       unit_table)
from .loss import LossRoute

#: Accuracy-law quantities sampled per task in the joint model (the loss law supplies the rest).
JOINT_SAMPLED = ("logit_mu_ref", "log_slope_mu", "log_nu_ref", "slope_nu")


def build_joint_model(loss_frame: pd.DataFrame, cells: pd.DataFrame, loss_spec: Mapping[str, Any],
                      accuracy_spec: Mapping[str, Any] | None = None) -> pm.Model:
    """One PyMC model: the loss route's hierarchical law on `loss_frame` plus the Beta law on `cells`."""
    spec = accuracy_config(accuracy_spec)
    cells = check_cells(cells)
    model = LossRoute.build_model(loss_frame, dict(loss_spec))
    tasks = [str(t) for t in model.coords["task"]]
    missing = sorted(set(cells["task"]) - set(tasks))
    if missing:
        raise InputError(f"task(s) {', '.join(missing)} have per-problem counts but no loss data; a joint fit "
                         f"needs loss data for every task with counts (loss tasks: {', '.join(tasks)})")
    n0, d0 = reference_point(cells, spec)
    units, unit_idx, unit_task = unit_table(cells, tasks)
    with model:
        model.add_coord("cell", np.arange(len(cells)))
        model.add_coord("task_checkpoint", np.arange(len(units)))
        pm.Data("reference_params", n0)
        pm.Data("reference_tokens", d0)
        t = pm.Data("unit_task", unit_task, dims="task_checkpoint")
        log_n = np.log(units["params"].to_numpy(float))
        log_d = np.log(units["tokens"].to_numpy(float))
        E, A, alpha, B, beta = (model[name] for name in ("E", "A", "alpha", "B", "beta"))
        size_ref, data_ref = A * pt.exp(-alpha * math.log(n0)), B * pt.exp(-beta * math.log(d0))
        L_ref = E + size_ref + data_ref
        S = alpha * size_ref + beta * data_ref  # -dL/dlog N - dL/dlog D at the reference
        L = E[t] + A[t] * pt.exp(-alpha[t] * log_n) + B[t] * pt.exp(-beta[t] * log_d)
        z = (L - L_ref[t]) / S[t]

        q = {name: pooled(name, spec["priors"][name], len(tasks), spec["pooling"]) for name in JOINT_SAMPLED}
        slope_mu = pm.Deterministic("slope_mu", pt.exp(q["log_slope_mu"]), dims="task")
        slope_nu = q["slope_nu"]
        floor = chance_floor(spec["priors"], len(tasks), spec, t)
        counts_likelihood(cells, units, unit_idx, t, q["logit_mu_ref"][t] - slope_mu[t] * z,
                          q["log_nu_ref"][t] + slope_nu[t] * z, spec["checkpoint_noise"], floor)
        pm.Deterministic("mu_ref", pm.math.sigmoid(q["logit_mu_ref"]), dims="task")
        pm.Deterministic("nu_ref", pt.exp(q["log_nu_ref"]), dims="task")
        pm.Deterministic("theta1", q["logit_mu_ref"] + slope_mu * L_ref / S, dims="task")
        pm.Deterministic("theta2", -slope_mu / S, dims="task")
        pm.Deterministic("theta3", q["log_nu_ref"] - slope_nu * L_ref / S, dims="task")
        pm.Deterministic("theta4", slope_nu / S, dims="task")
    model.bayes_t2_scaling = {**model.bayes_t2_scaling.as_dict(), "counts_N0": n0,  # type: ignore[attr-defined]
                              "counts_D0": d0}
    return model


def joint_spec(loss_spec: Mapping[str, Any], accuracy_spec: Mapping[str, Any]) -> dict[str, Any]:
    """The specification stored in a joint fit: the accuracy spec with the loss law's spec inside it."""
    return {**accuracy_spec, "shared_loss_law": dict(loss_spec)}
