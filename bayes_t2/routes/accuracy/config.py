"""The accuracy route's names and fixed numbers, and its configuration (models/accuracy.toml + overrides)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ...errors import InputError
from ...priors import load_spec

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

#: Smooth bounds on logit(mu) and log(nu) (see `model`). Fixed: the fitted law and the objective share them.
LOGIT_MU_BOUNDS = (-25.0, 25.0)
LOG_NU_BOUNDS = (-6.0, 16.0)

#: Columns of the collapsed counts the model fits (one row per distinct cell, `weight` problems each).
CELL_COLUMNS = ("task", "params", "tokens", "n_samples", "n_correct", "weight")


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
        if "upper" in prior and not (isinstance(prior["upper"], (int, float)) and math.isfinite(prior["upper"])):
            raise InputError(f"accuracy prior '{name}.upper' must be a finite number, got {prior['upper']!r}")
    if spec["pooling"]["sd_log_sd"] <= 0:
        raise InputError("accuracy setting 'pooling.sd_log_sd' must be > 0")
    return spec


def deviation_nu(spec: Mapping[str, Any] | None) -> float | None:
    """Degrees of freedom of the checkpoint deviations in a fit's spec (None: normal deviations)."""
    noise = (spec or {}).get("checkpoint_noise", {})
    return float(noise["nu"]) if noise.get("family") == "student_t" else None
