"""Model specifications: the shipped `models/<route>.toml` files, and a user's overrides on top of them.

A specification is a plain dict (TOML in, JSON into the fit file's attributes), so a fit always carries the
exact priors it was sampled with and can be reproduced from the file alone.
"""

from __future__ import annotations

import copy
import json
import math
import tomllib
from pathlib import Path
from typing import Any

from .errors import InputError
from .resources import models_dir

ROUTES = ("loss", "accuracy")
#: Settings of the [priors.*] and [likelihood] tables that are scales, spreads, medians of positive
#: coefficients or degrees of freedom: > 0 (elsewhere, e.g. discrepancy.scale, 0 may mean "off").
POSITIVE_SETTINGS = frozenset({"median", "log_sd", "pool_sd", "sd_log_sd", "sd_nu", "sd_mu", "scale", "sigma",
                               "nu"})


def default_spec(route: str) -> dict[str, Any]:
    """The shipped specification for `route`."""
    if route not in ROUTES:
        raise InputError(f"unknown route '{route}'; choose one of {', '.join(ROUTES)}")
    path = models_dir() / f"{route}.toml"
    if not path.exists():
        raise InputError(f"no model specification shipped for route '{route}' ({path})")
    return read_prior_file(path)


def load_spec(route: str, override: str | Path | dict | None = None) -> dict[str, Any]:
    """Default specification for `route`, deep-merged with a user's TOML file or dict."""
    spec = default_spec(route)
    if override is None:
        return spec
    user = read_prior_file(Path(override)) if not isinstance(override, dict) else copy.deepcopy(override)
    if user.get("route", route) != route:
        raise InputError(f"prior file is for route '{user['route']}', but the data need route '{route}'")
    _check_keys(spec, user, source=str(override) if not isinstance(override, dict) else "priors")
    return _merge(spec, user)


def spec_to_json(spec: dict[str, Any]) -> str:
    return json.dumps(spec, sort_keys=True)


def read_prior_file(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise InputError(f"{path}: prior file not found")
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: not a valid TOML prior file ({err})") from None


def _check_keys(default: dict, user: dict, source: str, prefix: str = "") -> None:
    """Reject typos: every key a user sets must exist in the default specification."""
    for key, value in user.items():
        name = f"{prefix}{key}"
        if key not in default:
            raise InputError(f"{source}: unknown setting '{name}'; known: {', '.join(sorted(default))}")
        if name == "discrepancy.by_task":  # task names -> scales: the tasks are the data's, not the spec's
            _check_task_scales(value, source)
            continue
        if isinstance(default[key], dict):
            if not isinstance(value, dict):
                raise InputError(f"{source}: '{name}' must be a table")
            _check_keys(default[key], value, source, prefix=f"{name}.")
        elif name == "discrepancy.scale" and value == "learn":  # a number or "learn", whatever the default
            continue
        elif isinstance(default[key], bool) and not isinstance(value, bool):
            raise InputError(f"{source}: '{name}' must be true or false, got {value!r}")
        elif isinstance(default[key], (int, float)) and not isinstance(default[key], bool):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InputError(f"{source}: '{name}' must be a number, got {value!r}")
            if not math.isfinite(value):
                raise InputError(f"{source}: '{name}' must be finite, got {value!r}")
            if key in POSITIVE_SETTINGS and prefix.startswith(("priors.", "likelihood.")) and value <= 0:
                raise InputError(f"{source}: '{name}' must be > 0 (a scale, spread or median), got {value!r}")


def _check_task_scales(value: Any, source: str) -> None:
    """``[discrepancy] by_task``: a table of task name -> scale, each a finite number >= 0."""
    if not isinstance(value, dict):
        raise InputError(f"{source}: 'discrepancy.by_task' must be a table of task = scale")
    for task, scale in value.items():
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale < 0:
            raise InputError(f"{source}: 'discrepancy.by_task.{task}' must be a number >= 0, got {scale!r}")


def _merge(base: dict, top: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in top.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out
