"""How numbers are written for people (tables, figures, error messages): one place, so they read alike."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def number(x: float) -> str:
    """Compact number: 3 significant digits, exponent without '+' and leading zeros (1.11e8); n/a if not finite."""
    x = float(x)
    if not np.isfinite(x):
        return "n/a"
    if 1e3 <= abs(x) < 1e4:
        return f"{x:.0f}"
    if x == 0 or 1e-3 <= abs(x) < 1e3:
        return f"{x:.3g}"
    mantissa, exponent = f"{x:.2e}".split("e")
    return f"{float(mantissa):.3g}e{int(exponent)}"


def value(x: float) -> str:
    """A value as the user wrote it, near enough to find it in their file: whole numbers in full, else 6 digits."""
    x = float(x)
    if np.isfinite(x) and x == int(x) and abs(x) < 1e15:
        return str(int(x))
    return f"{x:.6g}"


def interval(s: Mapping[str, float], digits: str = ".3g") -> str:
    """'median [lower, upper]' of a summary record; compact numbers by default, else the format `digits`."""
    if not np.isfinite(s["median"]):
        return "n/a"
    if digits == ".3g":
        return f"{number(s['median'])} [{number(s['lower'])}, {number(s['upper'])}]"
    return f"{s['median']:{digits}} [{s['lower']:{digits}}, {s['upper']:{digits}}]"


def repetition_line(unique_tokens: float, source: Mapping[str, str]) -> str:
    """The repeated-data setting in words: U, the law, and where each R* comes from."""
    where = ", ".join(f"{name.replace('_star', '*')} {how}" for name, how in source.items())
    return (f"unique tokens U = {number(unique_tokens)}: training beyond U repeats data, valued by the "
            f"data-constrained law (Muennighoff et al. 2023)" + (f"; {where}" if where else ""))


#: what a route's discrepancy scale is an sd of (per e-fold beyond the data), by metric name
DISCREPANCY_UNITS = {"loss": "log loss", "pass_at_k": "logit of the mean success"}


def discrepancy_unit(metric_name: str | None) -> str:
    """What the discrepancy scale of a route with this metric is an sd of (routes/extrapolation.py)."""
    return DISCREPANCY_UNITS.get(metric_name or "loss", "log loss")


def describe_discrepancy(disc: Mapping[str, Any], inside: str = "the data", metric_name: str = "loss") -> str:
    """One line on the law's error beyond the data: its scale (per task when the tasks have their own) and
    where it came from."""
    scale = float(disc.get("scale") or 0.0)
    by_task = disc.get("by_task") or {}
    if "n_points" in disc:
        how = f"learned from {disc['n_points']} points held out of {inside}"
    else:
        how = disc.get("note", "given")
    if scale == 0 and not by_task and "n_points" in disc:
        how += ": the held-out points showed no error beyond the model's own"
    unit = discrepancy_unit(metric_name)
    if not by_task:
        return f"discrepancy: sd {scale:.3g} of {unit} per e-fold beyond the data ({how})"
    low, high = min(by_task, key=by_task.get), max(by_task, key=by_task.get)
    pooled = f", pooled with spread {disc['pooling_sd']:.2g} in log" if disc.get("pooling_sd") else ""
    return (f"discrepancy: sd of {unit} per e-fold beyond the data, per task {by_task[low]:.3g} ({low}) to "
            f"{by_task[high]:.3g} ({high}), {scale:.3g} for a task without its own ({how}{pooled})")


def describe_warmup(posterior: Any) -> str | None:
    """The warm-up a fit of the under-training law learned, per task: w (warm-up tokens per parameter) as
    'median [5%, 95%]'; None for a fit without it."""
    if "warmup" not in posterior:
        return None
    parts = []
    for task in posterior["task"].values:
        w = posterior["warmup"].sel(task=task)
        parts.append(f"{task} " + interval({"median": float(w.median()), "lower": float(w.quantile(0.05)),
                                             "upper": float(w.quantile(0.95))}))
    length, per = "w N", "warm-up tokens per parameter"
    if "warmup_exponent" in posterior:  # a warm-up of w n_ref (N / n_ref)^e tokens
        from .laws import WARMUP_N_REF

        e = float(np.ravel(posterior["warmup_exponent"].values)[0])
        length = f"w {WARMUP_N_REF:.0e} (N / {WARMUP_N_REF:.0e})^{e:g} tokens"
        per += f" at {WARMUP_N_REF:.0e} parameters"
    return f"warm-up: the law sees the tokens after a warm-up of {length}; w, {per} (median [90%]): " + "; ".join(parts)
