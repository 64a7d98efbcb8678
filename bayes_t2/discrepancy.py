"""Learning the discrepancy's scale from held-out residuals.

A law's error beyond its data grows with the distance (`routes.extrapolation`); its scale s (sd per e-fold) is
learned from leave-the-largest-out folds inside the data (`backtest.inner_fold_residuals`): every held-out
point gives a residual r_i, the model's own predictive variance v_i and its distance x_i, and
r_i ~ Normal(0, v_i + (s x_i)^2).

With several tasks the laws need not bend alike (on Porian's fifteen training configurations the task scales
differ 3-14 fold), so each task gets its own scale, partially pooled: log s_t ~ Normal(m, tau), with (m, tau)
learned from all tasks together (empirical Bayes). A task with few held-out points then borrows from the
others, a task with many speaks for itself, and a tau near its lower end is one shared scale again.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: grid of scales (sd per e-fold) on which a task's likelihood is evaluated: 1e-4 is practically none, 10 (on
#: log loss or logit mu, per e-fold) far beyond any law worth extrapolating
SCALE_GRID = np.geomspace(1e-4, 10.0, 241)
#: the spreads tau of log s_t across tasks the empirical Bayes step chooses from: 0.1 is nearly one shared
#: scale (tasks within ~20% of each other), 4 nearly each task alone
POOLING_SDS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0)


def fit_discrepancy_scale(log_residual: np.ndarray, log_variance: np.ndarray, efolds: np.ndarray) -> float:
    """Maximum-likelihood s of r_i ~ Normal(0, v_i + (s x_i)^2): the sd per e-fold of extrapolation that the
    law's error needs beyond the predictive variance v_i the model already has. Only points beyond the data
    (x_i > 0) inform it; none: 0."""
    from scipy.optimize import minimize_scalar

    r, v, x = (np.asarray(a, float) for a in (log_residual, log_variance, efolds))
    keep = (x > 0) & np.isfinite(r) & np.isfinite(v)
    if not keep.any():
        return 0.0
    r, v, x = r[keep], v[keep], x[keep]

    def nll(log_s: float) -> float:
        var = v + (np.exp(log_s) * x) ** 2
        return float(np.sum(np.log(var) + r ** 2 / var))

    res = minimize_scalar(nll, bounds=(np.log(1e-5), np.log(10.0)), method="bounded")
    s = float(np.exp(res.x))
    return s if nll(res.x) < nll(np.log(1e-5)) else 0.0  # no gain over (practically) none


def _log_likelihood_on_grid(r: np.ndarray, v: np.ndarray, x: np.ndarray) -> np.ndarray:
    """log p(r | s) of one task's points at every scale of `SCALE_GRID`."""
    var = v[None, :] + (SCALE_GRID[:, None] * x[None, :]) ** 2
    return -0.5 * np.sum(np.log(var) + r[None, :] ** 2 / var, axis=1)


def fit_task_scales(log_residual: np.ndarray, log_variance: np.ndarray, efolds: np.ndarray,
                    tasks: np.ndarray) -> dict[str, Any]:
    """One discrepancy scale per task, partially pooled: log s_t ~ Normal(m, tau), (m, tau) by empirical Bayes
    (the tasks' marginal likelihoods on `SCALE_GRID`, m on the grid, tau from `POOLING_SDS`), each task's scale
    the median of its posterior on the grid.

    Returns {"scale": exp(m), the scale of a task without held-out points of its own (the population's
    median); "by_task": {task: scale} for the tasks with points beyond their fold's data; "pooling_sd": tau;
    "shared_scale": the one maximum-likelihood scale of all points together (`fit_discrepancy_scale`)}.
    When the pooled points ask for no discrepancy at all (shared scale 0) every scale is 0: a task's posterior
    median on a log grid is never exactly 0, and a scale the data do not ask for would bend every optimum."""
    from scipy.special import logsumexp

    r, v, x = (np.asarray(a, float) for a in (log_residual, log_variance, efolds))
    tasks = np.asarray(tasks).astype(str)
    keep = (x > 0) & np.isfinite(r) & np.isfinite(v)
    shared = fit_discrepancy_scale(r, v, x)
    if shared <= 0 or not keep.any():
        return {"scale": 0.0, "by_task": {}, "pooling_sd": None, "shared_scale": shared}
    names = sorted(set(tasks[keep]))
    ll = np.array([_log_likelihood_on_grid(r[keep & (tasks == t)], v[keep & (tasks == t)], x[keep & (tasks == t)])
                   for t in names])  # tasks x grid
    log_grid = np.log(SCALE_GRID)
    log_width = np.log(np.gradient(log_grid))  # the prior is a density in log s: mass = density x d log s

    def log_prior(m: float, tau: float) -> np.ndarray:
        return -0.5 * ((log_grid - m) / tau) ** 2 - np.log(tau * np.sqrt(2 * np.pi)) + log_width

    best = max(((float(logsumexp(ll + log_prior(m, tau)[None, :], axis=1).sum()), m, tau)
                for m in log_grid[::2] for tau in POOLING_SDS), key=lambda t: t[0])
    _, m, tau = best
    post = ll + log_prior(m, tau)[None, :]
    weight = np.exp(post - post.max(axis=1, keepdims=True))
    weight /= weight.sum(axis=1, keepdims=True)
    median = SCALE_GRID[np.argmax(np.cumsum(weight, axis=1) >= 0.5, axis=1)]
    return {"scale": float(np.exp(m)), "by_task": {t: float(s) for t, s in zip(names, median)},
            "pooling_sd": float(tau), "shared_scale": shared}
