"""`AccuracyRoute`: what the rest of bayes-t2 needs of the accuracy law (the route interface in
ARCHITECTURE.md), assembled from this package's modules."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr

from ...passk import unbiased_pass_at_k
from ..extrapolation import discrepancy_scales
from .cells import check_cells
from .config import T2_COEFFICIENTS, deviation_nu
from .law import accuracy_pass_at_k, neg_pass_at_k_bent_nb, neg_pass_at_k_nb
from .model import build_accuracy_model


class AccuracyRoute:
    """Everything route-specific for the accuracy law (same shape as `LossRoute`)."""

    name = "accuracy"
    metric_name = "pass_at_k"
    lower_is_better = False
    coefficient_names = T2_COEFFICIENTS
    theta_names = T2_COEFFICIENTS
    objective_nb = neg_pass_at_k_nb  # minimise log(1 - pass@k)
    objective_bent_nb = neg_pass_at_k_bent_nb  # the same, bent beyond the data (`optimum.BentRoute`)

    @staticmethod
    def observations(data: Any) -> pd.DataFrame:
        """Collapsed (task, checkpoint, n_samples, n_correct) cells with weights: sufficient statistics."""
        if hasattr(data, "collapse_counts"):
            return data.collapse_counts()
        return check_cells(data)

    @staticmethod
    def build_model(frame: pd.DataFrame, spec: Mapping[str, Any] | None = None) -> pm.Model:
        return build_accuracy_model(frame, spec)

    @staticmethod
    def metric_from_objective(value: Any) -> Any:
        """pass@k from the minimised objective log(1 - pass@k)."""
        return -np.expm1(value)

    #: posterior variables a new checkpoint's prediction also needs: its scatter around the law, and the fitted
    #: data's range (the discrepancy grows with the distance beyond it)
    noise_names = ("checkpoint_sd_mu", "checkpoint_sd_nu", "data_log_range")

    @staticmethod
    def metric(coefficients: Any, N: Any, D: Any, k: Any, *, rng: np.random.Generator | None = None,
               spec: Mapping[str, Any] | None = None, bend: Any = 0.0):
        """Law pass@k per draw; with `rng`, a new checkpoint's pass@k (law + checkpoint deviation + the law's
        error beyond the data, `spec`'s discrepancy scale). bend: a shift of logit(mu) per draw (the
        optimizer's bend, `optimum.BentRoute`)."""
        return accuracy_pass_at_k(coefficients, N, D, k, rng=rng, noise_nu=deviation_nu(spec),
                                  discrepancy=discrepancy_scales(dict(spec or {}), coefficients),
                                  logit_shift=bend)

    @staticmethod
    def observed_points(tree: xr.DataTree) -> pd.DataFrame:
        """Observed pass@k per (task, checkpoint), read back from a fit file, as (task, params, tokens, k,
        metric) rows: the problem-weighted mean of the unbiased estimator, for k = 1, 2, 4, ... up to the
        smallest number of samples per problem at that checkpoint."""
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
