"""The law's discrepancy beyond the data, shared by every route: how far a prediction lies outside the fitted
data's range, and the extra error a new checkpoint's prediction carries there.

A law fitted on smaller runs bends away from larger ones by an amount that grows with the distance. Each route
carries it as a Normal error of sd ``scale * x`` at prediction time, on the scale its law is linear in: log loss
(loss route), the logit of the per-checkpoint mean success mu (accuracy route), where ``x`` is the distance in
e-folds beyond the data (`extrapolation_efolds`). The scale is not identifiable from one fit of the data (inside
their range the law absorbs any bend); it comes from the data's own leave-the-largest-out backtest
(`bayes_t2.backtest.learn_discrepancy`) or the spec's ``[discrepancy] scale``.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numba
import numpy as np
import pymc as pm
import pytensor.tensor as pt
import xarray as xr

#: the axes along which a prediction can leave the data: log N, log D, log 6ND and log D/N
RANGE_AXES = ("params", "tokens", "compute", "tokens_per_param")


def discrepancy_scale(spec: dict[str, Any] | None) -> float:
    """sd of the law's error per e-fold beyond the data (0: none), from a fit's spec: on log loss for the loss
    route, on the logit of the mean success for the accuracy route. With a scale per task
    (`discrepancy_by_task`) this is the scale of a task without its own (the tasks' population median)."""
    value = ((spec or {}).get("discrepancy") or {}).get("scale", 0.0)
    if isinstance(value, str):  # "learn": resolved before fitting; a fit that kept the word has none
        return 0.0
    return float(value)


def discrepancy_by_task(spec: dict[str, Any] | None) -> dict[str, float]:
    """The scale of each task that has its own (``[discrepancy] by_task``: learned per task, partially pooled,
    or fixed by the user); empty when one scale serves every task."""
    return {str(t): float(s) for t, s in (((spec or {}).get("discrepancy") or {}).get("by_task") or {}).items()}


def task_discrepancy_scale(spec: dict[str, Any] | None, task: Any) -> float:
    """The discrepancy scale of one task: its own, else the spec's scale."""
    return discrepancy_by_task(spec).get(str(task), discrepancy_scale(spec))


def discrepancy_scales(spec: dict[str, Any] | None, like: Any) -> Any:
    """The discrepancy scale for the task(s) of `like` (a posterior Dataset or DataArray): a DataArray over its
    ``task`` dim when tasks have scales of their own and `like` has several tasks, one task's float when it
    has one (a scalar ``task`` coordinate), else the spec's one scale."""
    by_task = discrepancy_by_task(spec)
    task = getattr(like, "coords", {}).get("task") if by_task else None
    if task is None:
        return discrepancy_scale(spec)
    if task.ndim == 0:
        return task_discrepancy_scale(spec, task.item())
    return task_scale_array(spec, task.values)


def task_scale_array(spec: dict[str, Any] | None, tasks: Any) -> xr.DataArray:
    """Each of `tasks`' discrepancy scale (`task_discrepancy_scale`), a DataArray over ``task``."""
    tasks = np.asarray(tasks)
    return xr.DataArray([task_discrepancy_scale(spec, t) for t in tasks], dims="task", coords={"task": tasks},
                        name="discrepancy_scale")


def with_discrepancy(spec: dict[str, Any], scale: float, by_task: dict[str, float] | None = None) -> dict[str, Any]:
    """A copy of `spec` whose discrepancy is `scale` for every task (`by_task` empty) or `by_task` per task with
    `scale` for the others: the ``[discrepancy]`` table's other settings kept, an earlier per-task scale
    replaced, not merged."""
    disc = {**(spec.get("discrepancy") or {}), "scale": float(scale), "by_task": dict(by_task or {})}
    return {**spec, "discrepancy": disc}


def data_range(params: np.ndarray, tokens: np.ndarray) -> None:
    """Inside a model: the fitted data's range in log N, log D, log 6ND and log(D/N) of the checkpoints
    (params, tokens), kept in the posterior as ``data_log_range`` (constant over draws) so a prediction knows
    how far beyond the data it lies (`extrapolation_efolds`)."""
    log_n, log_d = np.log(np.asarray(params, float)), np.log(np.asarray(tokens, float))
    bounds = np.array([[v.min(), v.max()] for v in range_coordinates(log_n, log_d)])
    model = pm.modelcontext(None)
    model.add_coord("range_axis", list(RANGE_AXES))
    model.add_coord("range_end", ["min", "max"])
    pm.Deterministic("data_log_range", pt.as_tensor(bounds), dims=("range_axis", "range_end"))


def range_coordinates(log_n: Any, log_d: Any) -> tuple[Any, Any, Any, Any]:
    """The axes along which a prediction can leave the data (`RANGE_AXES`): log N, log D, log compute 6ND and
    log tokens per parameter D/N (over-training, or the under-trained corner of an IsoFLOP grid, is an
    extrapolation even at sizes and budgets inside the data)."""
    return log_n, log_d, np.log(6.0) + log_n + log_d, log_d - log_n


def extrapolation_efolds_by_axis(log_range: Any, N: Any, D: Any) -> list[Any]:
    """How far (N, D) lies outside the fitted data along each of `RANGE_AXES` separately, in e-folds (either
    side; 0 inside that axis's range): one array per row of `log_range` (fits saved before the
    tokens-per-parameter axis existed carry three), each shaped and typed like N and D (numpy or xarray)."""
    lr = np.asarray(log_range, float) if not isinstance(log_range, xr.DataArray) else \
        log_range.isel(chain=0, draw=0, missing_dims="ignore").values
    coords = range_coordinates(np.log(N), np.log(D))
    return [np.maximum(np.maximum(x - hi, lo - x), 0.0) for (lo, hi), x in zip(lr, coords)]


def extrapolation_efolds(log_range: Any, N: Any, D: Any) -> Any:
    """How far (N, D) lies outside the fitted data, in e-folds: the largest distance beyond the data's range
    along any of `RANGE_AXES`, either side (0 inside every range; `extrapolation_efolds_by_axis` per axis)."""
    return functools.reduce(np.maximum, extrapolation_efolds_by_axis(log_range, N, D))


@numba.njit(cache=True, nogil=True, fastmath=False, error_model="numpy")
def extrapolation_efolds_nb(theta, at, N, D):
    """numba twin of `extrapolation_efolds` for the optimizer's objective: the range sits in theta[at:at + 8]
    as (min, max) of log N, log D, log 6ND and log D/N, in `RANGE_AXES` order (tests/test_bend.py checks the
    twins agree)."""
    x0, x1 = math.log(N), math.log(D)
    coords = (x0, x1, math.log(6.0) + x0 + x1, x1 - x0)
    out = 0.0
    for i in range(4):
        beyond = max(coords[i] - theta[at + 2 * i + 1], theta[at + 2 * i] - coords[i])
        out = max(out, beyond)
    return out


def discrepancy_error(log_range: Any, N: Any, D: Any, like: Any, rng: np.random.Generator, scale: Any) -> Any:
    """A new checkpoint's draw of the law's error beyond the data, shaped like `like`: Normal(0, scale * x) with
    x = `extrapolation_efolds` of (N, D) from the fit's ``data_log_range`` (0 when the scale is 0 or there is
    no range). scale: a float, or a DataArray over the task dim of `like` (`discrepancy_scales`). Drawn only
    when some scale is positive, so a fit without a discrepancy takes the same random stream as before the term
    existed."""
    if log_range is None or not np.any(np.asarray(scale) > 0):
        return 0.0
    eps = rng.standard_normal(np.shape(like))
    if isinstance(like, xr.DataArray):
        eps = xr.DataArray(eps, dims=like.dims, coords=like.coords)
    x = extrapolation_efolds(log_range, N, D)
    return eps * scale * x if isinstance(scale, xr.DataArray) else eps * (scale * x)
