"""Figures of a fit, one function per figure, each returning ``(fig, axes)`` so a notebook can restyle them.

Route-generic: every figure reads the metric through the route interface (`fit.predict`, `fit.optimize`,
`route.metric_name`, `route.lower_is_better`); the data points come from the route's `observed_points`.
Colours come from one palette (`task_colors`) so a task looks the same on every page.
Bands are equal-tailed posterior intervals: 50% (dark) and 90% (light) around the median (line).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from contextlib import contextmanager
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import pandas as pd
import xarray as xr

from .budget import Budget, Constraints, SplitBudget, check_feasible, scaled_budgets
from .criticism import ExtrapolationWarning
from . import fmt
from .errors import InputError
from .laws import CHINCHILLA_TOKENS_PER_PARAM

__all__ = [
    "BAND_PROBS",
    "PAGE",
    "metric_label",
    "observed_points",
    "optimum_sweep",
    "plot_coefficients",
    "plot_diagnostics",
    "plot_headline",
    "plot_law",
    "plot_optimum_vs_budget",
    "plot_optimum_vs_prompt",
    "style",
    "task_colors",
]

PAGE = (11.69, 8.27)  # A4 landscape, inches
BAND_PROBS = (0.5, 0.9)
MAX_DRAWS = 400  # draws used for bands on dense grids (every s-th draw of each chain)
SAMPLE_DIMS = ("chain", "draw")
CHINCHILLA_STYLE = dict(color="black", linestyle="--", linewidth=1.2)
STYLE = {"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
         "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False}
FLOP_SWEEP = (1e17, 1e25, 25)


# ---------------------------------------------------------------------------------------------- helpers
@contextmanager
def style(extra: dict | None = None):
    """The report's matplotlib style for the figures made inside it.

    Unlike `plt.rc_context` it restores only the keys it sets: rc_context also restores `interactive`, which
    the notebook backend switches on when the first figure is made, and then no figure would be shown.
    """
    keys = {**STYLE, **(extra or {})}
    old = {k: matplotlib.rcParams[k] for k in keys}
    matplotlib.rcParams.update(keys)
    try:
        yield
    finally:
        matplotlib.rcParams.update(old)


def task_colors(tasks: Sequence[str]) -> dict[str, Any]:
    """One colour per task, in the fit's task order (tab10, tab20 beyond ten tasks)."""
    cmap = plt.get_cmap("tab10" if len(tasks) <= 10 else "tab20")
    return {str(t): cmap(i % cmap.N) for i, t in enumerate(tasks)}


def metric_label(fit) -> str:
    """Axis label of the route's metric, saying which way is better."""
    name = {"loss": "loss", "pass_at_k": "pass@k"}.get(fit.route.metric_name, fit.route.metric_name)
    return f"{name} ({'lower' if fit.route.lower_is_better else 'higher'} is better)"


def observed_points(fit) -> pd.DataFrame:
    """The data the fit saw, as (task, params, tokens, k, metric) rows (empty if the route cannot say)."""
    reader = getattr(fit.route, "observed_points", None)
    if reader is None or "constant_data" not in fit.tree.children:
        return pd.DataFrame(columns=["task", "params", "tokens", "k", "metric"])
    return reader(fit.tree)


def _quantiles(da: xr.DataArray, probs: Sequence[float] = BAND_PROBS) -> dict[str, np.ndarray]:
    """Median and the lower/upper ends of each band over the sample dims, NaN draws ignored."""
    dims = [d for d in SAMPLE_DIMS if d in da.dims]
    x = da.transpose(*dims, ...).values.reshape(-1, *[da.sizes[d] for d in da.dims if d not in dims])
    qs = [0.5] + [q for p in probs for q in ((1 - p) / 2, (1 + p) / 2)]
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            values = np.nanquantile(x, qs, axis=0)
    out = {"median": values[0]}
    for i, p in enumerate(probs):
        out[f"lo{p}"], out[f"hi{p}"] = values[1 + 2 * i], values[2 + 2 * i]
    return out


def _band(ax, x, da: xr.DataArray, color, label: str | None = None, probs=BAND_PROBS) -> None:
    q = _quantiles(da, probs)
    for p, alpha in zip(sorted(probs, reverse=True), (0.15, 0.3)):
        ax.fill_between(x, q[f"lo{p}"], q[f"hi{p}"], color=color, alpha=alpha, linewidth=0)
    ax.plot(x, q["median"], color=color, linewidth=1.6, label=label)


def _log_axis(ax, which: str, narrow: bool = False) -> None:
    """Log scale with plain tick labels (no mathtext, no minor ticks: both are slow to draw).

    Wide axes (decades of FLOPs, parameters) tick at powers of ten written 1e19; narrow ones (a loss from 1.5
    to 3, k from 1 to 64) also at 2 and 5 times them, written as plain numbers.
    """
    getattr(ax, f"set_{which}scale")("log")
    axis = getattr(ax, f"{which}axis")
    axis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0) if narrow else (1.0,),
                                                        numticks=12))
    axis.set_major_formatter(matplotlib.ticker.FuncFormatter(_tick_label))
    axis.set_minor_locator(matplotlib.ticker.NullLocator())


def _tick_label(value: float, _pos=None) -> str:
    if value <= 0 or not np.isfinite(value):
        return ""
    exponent = math.floor(math.log10(value) + 1e-9)
    if -2 <= exponent <= 3:
        return f"{value:g}"
    mantissa = value / 10.0**exponent
    return f"1e{exponent}" if abs(mantissa - 1) < 1e-6 else f"{mantissa:.0f}e{exponent}"


def _note(ax, text: str, **kwargs) -> None:
    """A message in an axes that has nothing honest to plot."""
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, transform=ax.transAxes, fontsize=10,
            color=kwargs.pop("color", "0.3"), **kwargs)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)


def _grid(name: str, values) -> xr.DataArray:
    values = np.asarray(values, dtype=float)
    return xr.DataArray(values, coords={name: values}, dims=name)


# ------------------------------------------------------------------------------------- (1) data and law
def plot_law(fit, tasks: Sequence[str] | None = None, *, compute_max: float | None = None,
             max_draws: int = MAX_DRAWS):
    """Data and fitted law per task (one row each): metric against training compute 6ND, and against k.

    Left: observed points at the smallest k (usually 1) and the law at the best model size for each compute
    (the envelope over tokens/param from 0.1 to 10^4, per draw), extrapolated past the data (dotted line).
    Right: observed points against k at up to three checkpoints (smallest, middle, largest compute) with the
    law's bands over k.
    """
    tasks = list(tasks) if tasks is not None else fit.tasks
    colors = task_colors(fit.tasks)
    obs = observed_points(fit)
    with style():
        fig, axes = plt.subplots(len(tasks), 2, figsize=(PAGE[0], min(2.55 * len(tasks) + 0.9, PAGE[1])),
                                 squeeze=False, layout="constrained")
        for row, task in enumerate(tasks):
            pts = obs[obs["task"] == task]
            _law_vs_compute(fit, axes[row, 0], task, pts, colors[task], compute_max, max_draws)
            _law_vs_k(fit, axes[row, 1], task, pts, colors[task], max_draws)
        for ax in axes[-1]:
            ax.xaxis.set_tick_params(labelbottom=True)
        fig.suptitle("Data and fitted law (median, 50% and 90% credible bands)", fontsize=11)
    return fig, axes


def _law_vs_compute(fit, ax, task, pts, color, compute_max, max_draws) -> None:
    k_ref = float(pts["k"].min()) if len(pts) else 1.0
    at_k = pts[pts["k"] == k_ref]
    compute = 6.0 * at_k["params"] * at_k["tokens"]
    c_lo = float(compute.min()) / 2 if len(at_k) else 1e17
    c_obs_max = float(compute.max()) if len(at_k) else None
    c_hi = max(c_obs_max * 100 if c_obs_max else 1e21, compute_max or 0.0)
    C = _grid("compute", np.geomspace(c_lo, c_hi, 40))
    r = _grid("ratio", np.geomspace(0.1, 1e4, 60))
    N = np.sqrt(C / (6.0 * r))
    pred = fit.metric_at(N, C / (6.0 * N), k_ref, new_checkpoint=False, max_draws=max_draws).sel(task=task)
    best = pred.min("ratio") if fit.route.lower_is_better else pred.max("ratio")
    _band(ax, C.values, best, color, label=f"law, best N per compute (k={k_ref:g})")
    if len(at_k):
        ax.scatter(compute, at_k["metric"], s=12, color=color, edgecolor="black", linewidth=0.3, zorder=3,
                   label=f"observed (k={k_ref:g})")
        ax.axvline(c_obs_max, color="0.4", linestyle=":", linewidth=1)
        ax.annotate("extrapolation →", (c_obs_max, 1), xycoords=("data", "axes fraction"), xytext=(3, -10),
                    textcoords="offset points", fontsize=7, color="0.35")
    _log_axis(ax, "x")
    if fit.route.lower_is_better:
        _log_axis(ax, "y", narrow=True)
    ax.set_xlabel("training compute 6ND (FLOPs)")
    ax.set_ylabel(metric_label(fit))
    ax.set_title(f"{task}: against compute", loc="left")
    ax.legend(loc="best")


def _law_vs_k(fit, ax, task, pts, color, max_draws) -> None:
    by_ckpt = pts.groupby(["params", "tokens"])["k"].nunique()
    multi = by_ckpt[by_ckpt > 1].index.tolist()
    if not multi:
        _note(ax, f"{task}: one k per checkpoint in the data,\nso there is no sampling curve to show")
        ax.set_title(f"{task}: against samples per query k", loc="left")
        return
    multi.sort(key=lambda nd: nd[0] * nd[1])
    chosen = sorted({0, len(multi) // 2, len(multi) - 1})
    k_max = float(pts["k"].max())
    K = _grid("k", np.geomspace(1.0, max(4 * k_max, 16.0), 40))
    shades = np.linspace(0.45, 1.0, len(chosen))
    for shade, i in zip(shades, chosen):
        n, d = multi[i]
        c = tuple(np.asarray(matplotlib.colors.to_rgb(color)) * shade)
        pred = fit.metric_at(n, d, K, new_checkpoint=False, max_draws=max_draws).sel(task=task)
        _band(ax, K.values, pred, c, probs=(0.9,))
        end = float(np.nanmedian(pred.isel(k=-1).values))
        ax.annotate(f"N={fmt.number(n)}\nD={fmt.number(d)}", (K.values[-1], end), xytext=(4, 0),
                    textcoords="offset points",
                    va="center", fontsize=7, color=c)
        here = pts[(pts["params"] == n) & (pts["tokens"] == d)]
        ax.scatter(here["k"], here["metric"], s=14, color=c, edgecolor="black", linewidth=0.3, zorder=3)
    _log_axis(ax, "x", narrow=True)
    if fit.route.lower_is_better:
        _log_axis(ax, "y", narrow=True)
    ax.set_xlabel("samples per query k")
    ax.set_ylabel(metric_label(fit))
    ax.set_xlim(right=K.values[-1] * 4)  # room for the labels; no ticks there
    ticks = [t for t in np.outer(10.0 ** np.arange(0, 7), (1, 2, 5)).ravel() if t <= K.values[-1]]
    ax.xaxis.set_major_locator(matplotlib.ticker.FixedLocator(ticks))
    ax.set_title(f"{task}: against samples per query k (three checkpoints, 90% bands)", loc="left")


# ------------------------------------------------------------------------------------ (2) coefficients
def plot_coefficients(fit, *, seed: int = 0):
    """Forest plot: each coefficient per task and for a new task drawn from the pooled population.

    Dot: median; thick bar: 50%; thin bar: 90%. The population row (black) is the posterior predictive of
    a new task's coefficient from the hyper-parameters (`route.population_coefficients`), so its width is
    the spread across tasks plus the uncertainty about that spread.
    """
    coefs = fit.coefficients()
    names = [n for n in fit.route.coefficient_names if float(coefs[n].std()) > 0]
    if not names:
        raise InputError("the posterior has no varying coefficients to plot")
    draw_population = getattr(fit.route, "population_coefficients", None)
    population = draw_population(fit.posterior, fit.scaling, seed) if draw_population else None
    colors = task_colors(fit.tasks)
    rows = fit.tasks + (["new task (population)"] if population is not None else [])
    ncols = min(len(names), 4)
    nrows = math.ceil(len(names) / ncols)
    with style():
        fig, axes = plt.subplots(nrows, ncols, figsize=(PAGE[0], min(PAGE[1], 0.5 + nrows * (0.35 * len(rows)
                                 + 1.3))), squeeze=False, layout="constrained")
        for ax, name in zip(axes.flat, names):
            series = [(t, coefs[name].sel(task=t), colors[t]) for t in fit.tasks]
            if population is not None:
                series.append((rows[-1], population[name], "black"))
            lows = []
            for y, (label, da, color) in enumerate(series):
                q = _quantiles(da)
                ax.plot([q["lo0.9"], q["hi0.9"]], [y, y], color=color, linewidth=1.2)
                ax.plot([q["lo0.5"], q["hi0.5"]], [y, y], color=color, linewidth=4, solid_capstyle="butt")
                ax.plot(q["median"], y, "o" if label != rows[-1] or population is None else "D", color=color,
                        markeredgecolor="white", markersize=5, zorder=3)
                lows.append((q["lo0.9"], q["hi0.9"]))
            lo, hi = np.nanmin([a for a, _ in lows]), np.nanmax([b for _, b in lows])
            if lo > 0 and hi / lo > 30:
                _log_axis(ax, "x")
            ax.set_yticks(range(len(series)), [s[0] for s in series])
            ax.invert_yaxis()
            ax.set_xlabel(name)
            ax.set_title(name, loc="left")
        for ax in list(axes.flat)[len(names):]:
            ax.set_visible(False)
        law = {"loss": "L = E + A/N^alpha + B/D^beta + G/k^gamma",
               "accuracy": "success ~ Beta with mean sigmoid(theta1 + theta2 L), concentration exp(theta3 + "
                           "theta4 L), L = A/N^alpha + B/D^beta"}.get(fit.route.name, fit.route.name)
        if "warmup" in fit.route.coefficient_names:  # the warm-up law sees the tokens after the warm-up
            law = law.replace("B/D^beta", "B/D_w^beta") + ", D_w the tokens after a warm-up of wN" + (
                "" if "warmup_exponent" not in fit.route.coefficient_names else " (N to a set power)")
        fig.suptitle(f"Posterior of the coefficients ({law}; N parameters, D tokens): "
                     "dot median, bars 50% and 90%", fontsize=11)
    return fig, axes


# ------------------------------------------------------------------------------------- (3) diagnostics
def plot_diagnostics(fit, *, prob: float = 0.9, seed: int = 0):
    """Convergence table (r-hat, ESS, divergences) and a posterior predictive check.

    PPC left: the share of observations inside their central posterior predictive interval against the
    interval's nominal probability, per task (on the diagonal when calibrated). Right: PIT histogram,
    P(y_rep < y) (randomised for counts), flat for a calibrated model; U-shape = too narrow, hump = too wide,
    slope = bias. Collapsed count cells are weighted by the problems they hold.
    """
    import arviz as az

    diag = fit.diagnostics()
    post = fit.coefficients()
    names = [n for n in fit.route.coefficient_names if float(post[n].std()) > 0]
    rhat = az.rhat(post[names]) if post.sizes["chain"] > 1 else None
    bulk, tail = az.ess(post[names], method="bulk"), az.ess(post[names], method="tail")
    rows = [[n, "n/a" if rhat is None else f"{float(rhat[n].max()):.3f}", f"{float(bulk[n].min()):.0f}",
             f"{float(tail[n].min()):.0f}"] for n in names]
    with style():
        fig = plt.figure(figsize=PAGE, layout="constrained")
        top, bottom = fig.subfigures(2, 1, height_ratios=[1, 1.25])
        ax_table, ax_text = top.subplots(1, 2, width_ratios=[1, 1.2])
        ax_table.axis("off")
        table = ax_table.table(cellText=rows, colLabels=["coefficient", "max r-hat", "min bulk ESS",
                                                         "min tail ESS"], loc="center", cellLoc="center")
        table.auto_set_font_size(False)
        table.set_fontsize(9)
        table.scale(1, 1.3)
        ax_table.set_title("Convergence, worst task per coefficient", loc="left")
        settings = fit.tree.attrs.get("sampler_settings", "{}")
        lines = [f"chains x draws: {post.sizes['chain']} x {post.sizes['draw']} ({diag.n_samples} in all)",
                 f"max r-hat {diag.max_rhat:.3f} (want < 1.01)",
                 f"min bulk ESS {diag.min_ess_bulk:.0f} (want >= 400)",
                 f"divergent transitions: {diag.divergences} (want 0)",
                 f"sampling time: {fit.tree.attrs.get('sampling_seconds', float('nan'))} s",
                 f"sampler settings: {settings}"]
        ax_text.axis("off")
        ax_text.text(0, 0.95, "\n".join(lines), va="top", fontsize=9, family="monospace", wrap=True,
                     transform=ax_text.transAxes)
        verdict = ("OK: the chains agree and mix well" if diag.ok else
                   "PROBLEM: do not trust the intervals yet\n- " + "\n- ".join(diag.warnings))
        ax_text.text(0, 0.35, verdict, va="top", fontsize=9.5, wrap=True, transform=ax_text.transAxes,
                     color="darkgreen" if diag.ok else "firebrick", fontweight="bold")
        ax_text.set_title("Sampler", loc="left")
        ax_ppc, ax_pit = bottom.subplots(1, 2)
        _ppc(fit, ax_ppc, ax_pit, prob, seed)
        fig.suptitle("Diagnostics", fontsize=11)
    return fig, np.array([ax_table, ax_text, ax_ppc, ax_pit])


def _ppc(fit, ax_ppc, ax_pit, prob: float, seed: int) -> None:
    groups = fit.tree.children
    if "posterior_predictive" not in groups or "observed_data" not in groups:
        for ax in (ax_ppc, ax_pit):
            _note(ax, "no posterior_predictive group in the fit file\n(fitted with pointwise=False)")
        return
    pp, observed = fit.tree["posterior_predictive"].to_dataset(), fit.tree["observed_data"].to_dataset()
    name = next((v for v in observed.data_vars if v in pp.data_vars), None)
    if name is None:
        for ax in (ax_ppc, ax_pit):
            _note(ax, "the posterior predictive holds no observed variable")
        return
    y = observed[name].values.astype(float).ravel()
    rep = pp[name].stack(sample=SAMPLE_DIMS).transpose("sample", ...).values.astype(float).reshape(-1, y.size)
    rng = np.random.default_rng(seed)
    # randomised PIT: uniform on [0, 1] for a calibrated model, counts (ties) included
    pit = np.mean(rep < y, axis=0) + rng.uniform(size=y.size) * np.mean(rep == y, axis=0)
    weight, unit = _observation_weights(fit, y.size)
    task_of = _task_of_observation(fit, observed[name])
    colors = task_colors(fit.tasks)
    levels = np.linspace(0.05, 0.95, 19)

    def coverage(mask: np.ndarray, p) -> np.ndarray:
        inside = np.abs(pit[mask, None] - 0.5) <= np.asarray(p) / 2
        return (weight[mask, None] * inside).sum(axis=0) / weight[mask].sum()

    for task in fit.tasks:
        m = task_of == task
        if m.any():
            ax_ppc.plot(levels, coverage(m, levels), "o-", color=colors[task], markersize=3, label=task)
    ax_ppc.plot([0, 1], [0, 1], color="0.3", linewidth=0.8, linestyle="--", label="calibrated")
    at_prob = float(coverage(np.ones(y.size, bool), [prob])[0])
    ax_ppc.set_xlabel("nominal probability of the central predictive interval")
    ax_ppc.set_ylabel(f"share of {unit} inside")
    ax_ppc.set_title(f"Predictive check ({name}): {at_prob:.0%} of {unit} inside their "
                     f"{prob:.0%} interval", loc="left")
    ax_ppc.set_xlim(0, 1)
    ax_ppc.set_ylim(0, 1)
    ax_ppc.legend(loc="upper left", ncols=2 if len(fit.tasks) > 4 else 1)
    bins = min(20, max(5, int(y.size // 15)))
    ax_pit.hist(pit, bins=bins, range=(0, 1), weights=weight, color="0.6", edgecolor="white")
    ax_pit.axhline(weight.sum() / bins, color="black", linestyle="--", linewidth=1, label="calibrated (uniform)")
    ax_pit.set_xlabel("PIT = P(replicated < observed), randomised for counts")
    ax_pit.set_ylabel(unit)
    ax_pit.set_title("PIT histogram: flat if calibrated (U: too narrow, hump: too wide)", loc="left")
    ax_pit.legend(loc="upper center")


def _observation_weights(fit, size: int) -> tuple[np.ndarray, str]:
    """How many units each observation stands for: the `weight` of collapsed count cells (problems), else 1."""
    if "constant_data" in fit.tree.children and "weight" in fit.tree["constant_data"].to_dataset():
        w = fit.tree["constant_data"]["weight"].values.astype(float).ravel()
        if w.size == size:
            return w, "problems"
    return np.ones(size), "observations"


def _task_of_observation(fit, observed: xr.DataArray) -> np.ndarray:
    """Task label of every observation, from the fit's task_index constant data when present."""
    if "constant_data" in fit.tree.children and "task_index" in fit.tree["constant_data"].to_dataset():
        idx = fit.tree["constant_data"]["task_index"].values
        if idx.size == observed.size:
            return np.asarray(fit.tasks)[idx]
    return np.full(observed.size, fit.tasks[0])


# -------------------------------------------------------------------------------- (4) optimum vs budget
def optimum_sweep(fit, budget: Budget, constraints: Constraints = Constraints(),
                  flops: Sequence[float] | None = None) -> tuple[xr.Dataset, list[float]]:
    """Per-draw optimum at `budget` scaled to each compute level (default: 25 levels from 1e17 to 1e25 FLOPs,
    widened by whole decades to hold the budget itself).

    Returns (optimum dataset over the feasible levels, the levels that cannot buy the smallest model).
    """
    if flops is None:
        here = budget.train_flops if isinstance(budget, SplitBudget) else budget.total_flops
        lo = min(FLOP_SWEEP[0], 10.0 ** math.floor(math.log10(here)))
        hi = max(FLOP_SWEEP[1], 10.0 ** math.ceil(math.log10(here)))
        flops = np.geomspace(lo, hi, FLOP_SWEEP[2] + round(3 * math.log10(hi / lo / 1e8)))
    flops = list(flops)
    feasible, skipped = [], []
    for b in scaled_budgets(budget, flops):
        try:
            check_feasible(b, constraints)
            feasible.append(b)
        except InputError:
            skipped.append(b.train_flops if isinstance(b, SplitBudget) else b.total_flops)
    if not feasible:
        raise InputError(f"no budget from {min(flops):.3g} to {max(flops):.3g} FLOPs buys the smallest model "
                         f"({constraints.min_params_f:g} parameters) under these constraints")
    with warnings.catch_warnings():  # a sweep beyond the data is the point of this figure, not a surprise
        warnings.simplefilter("ignore", ExtrapolationWarning)
        return fit.optimize(feasible, constraints), skipped


def plot_optimum_vs_budget(fit, budget: Budget | None = None, constraints: Constraints | None = None,
                           flops: Sequence[float] | None = None, **budget_options: Any):
    """N*, D*, tokens/param and k* against compute (bands per task) with the Chinchilla design (dashed).

    The compute axis scales the given budget: the training budget for a split budget (inference FLOPs per
    query kept), the total budget for a total budget (queries kept). The given budget is marked. The budget
    as in `Fit.optimize`: objects, or the CLI's keywords (``train_flops=2.56e19, inference_flops=2e9``).
    """
    from .options import resolve

    budget, constraints = resolve(budget, constraints, budget_options, many=False)
    opt, skipped = optimum_sweep(fit, budget, constraints, flops)
    split = isinstance(budget, SplitBudget)
    x = opt["train_flops"].values if split else opt["total_flops"].values
    here = budget.train_flops if split else budget.total_flops
    colors = task_colors(fit.tasks)
    panels = [("N", "chinchilla_N", "model size N* (parameters)"),
              ("D", "chinchilla_D", "training tokens D* (tokens)"),
              ("tokens_per_param", None, "tokens per parameter D*/N*"),
              ("k", "chinchilla_k", "samples per query k*")]
    with style():
        fig, axes = plt.subplots(2, 2, figsize=PAGE, sharex=True, layout="constrained")
        for ax, (var, chin, label) in zip(axes.flat, panels):
            for task in fit.tasks:
                _band(ax, x, opt[var].sel(task=task), colors[task], label=task)
            chin_y = (opt["chinchilla_D"] / opt["chinchilla_N"]).values if chin is None else opt[chin].values
            ax.plot(x, chin_y, **CHINCHILLA_STYLE,
                    label=f"Chinchilla ({CHINCHILLA_TOKENS_PER_PARAM:g} tokens/param)")
            ax.axvline(here, color="0.3", linestyle=":", linewidth=1)
            _log_axis(ax, "x")
            _log_axis(ax, "y", narrow=var == "k")
            ax.set_ylabel(label)
            ax.set_title(label, loc="left")
        for ax in axes[-1]:
            ax.set_xlabel("training compute C_train = 6ND (FLOPs)" if split else
                          "total compute 6ND + 2NkTQ (FLOPs)")
        axes[0, 0].legend(loc="upper left", ncols=2 if len(fit.tasks) > 4 else 1)
        fixed = (f"inference {fmt.number(budget.inference_flops)} FLOPs/query" if split else
                 f"{fmt.number(budget.queries)} queries")
        note = (f"; {len(skipped)} budgets below {fmt.number(min(x))} FLOPs cannot buy the smallest model"
                if skipped else "")
        fig.suptitle(f"Optimum against budget ({fixed}, dotted line: the report's budget{note}); "
                     f"median, 50% and 90% bands", fontsize=11)
    return fig, axes


def plot_optimum_vs_unique_tokens(fit, budget: Budget | None = None, constraints: Constraints | None = None,
                                  u_values: Sequence[float] | None = None, seed: int = 0,
                                  **budget_options: Any):
    """N*, D*, epochs D*/U and k* against the unique tokens U (bands per task) under one budget, with the
    optimum without a data limit (dashed): how the answer moves as fresh data run out and training repeats
    them (the data-constrained law, `bayes_t2.repetition`). The budget's own U (``unique_tokens=``), if given, is
    marked. `u_values`: the U values swept (default: `repetition.optimum_vs_unique_tokens`'s sweep)."""
    from .options import resolve
    from .repetition import optimum_vs_unique_tokens

    budget, constraints = resolve(budget, constraints, budget_options, many=False)
    base = getattr(fit, "base_fit", fit)
    swept, free = optimum_vs_unique_tokens(base, budget, constraints, u_values, seed=seed)
    x = swept["unique_tokens"].values
    colors = task_colors(base.tasks)
    panels = [("N", "model size N* (parameters)"), ("D", "training tokens D* (tokens)"),
              ("epochs", "epochs over the unique data D*/U"), ("k", "samples per query k*")]
    with style():
        fig, axes = plt.subplots(2, 2, figsize=PAGE, sharex=True, layout="constrained")
        for ax, (var, label) in zip(axes.flat, panels):
            for task in base.tasks:
                _band(ax, x, swept[var].sel(task=task).transpose("unique_tokens", ...), colors[task], label=task)
                if var != "epochs":
                    ax.axhline(float(free[var].sel(task=task).median()), color=colors[task], linestyle="--",
                               linewidth=1)
            if constraints.unique_tokens is not None:
                ax.axvline(constraints.unique_tokens, color="0.3", linestyle=":", linewidth=1)
            _log_axis(ax, "x")
            _log_axis(ax, "y", narrow=var in ("k", "epochs"))
            ax.set_ylabel(label)
            ax.set_title(label, loc="left")
        for ax in axes[-1]:
            ax.set_xlabel("unique training tokens U")
        axes[0, 0].legend(loc="best", ncols=2 if len(base.tasks) > 4 else 1)
        fig.suptitle(f"Optimum against unique tokens U ({budget.label()})\ndashed: no data limit; dotted: the "
                     f"budget's U; median, 50% and 90% bands", fontsize=11)
    return fig, axes


# -------------------------------------------------------------------------------- (4b) optimum vs prompt
#: prompt lengths of the prompt figure (tokens), besides 0 and the budget's own
PROMPT_SWEEP = (0.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0)


def plot_optimum_vs_prompt(fit, budget: Budget | None = None, constraints: Constraints | None = None,
                           prompts: Sequence[float] | None = None, **budget_options: Any):
    """N* and k* against prompt length P, with a KV cache (solid: the prompt prefilled once per query) and
    without (dashed: every sample prefills it); median per task and 50% band. Prompt lengths the per-query
    budget cannot serve even from the smallest model are left out. The budget as in `Fit.optimize`; its
    prompt length is marked (dotted)."""
    from dataclasses import replace

    from .options import resolve

    budget, constraints = resolve(budget, constraints, budget_options, many=False)
    prompts = sorted(set(PROMPT_SWEEP if prompts is None else prompts) | {float(budget.prompt_tokens)})
    colors = task_colors(fit.tasks)
    curves = {}
    for kv in (True, False):
        todo = []
        for P in prompts:
            b = replace(budget, prompt_tokens=float(P), kv_cache=kv)
            try:
                check_feasible(b, constraints)
                todo.append(b)
            except InputError:
                continue
        if todo:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExtrapolationWarning)
                curves[kv] = ([b.prompt_tokens for b in todo], fit.optimize(todo, constraints, law=True))
    if not curves:
        raise InputError("no prompt length can be served by this per-query budget")
    with style():
        fig, axes = plt.subplots(1, 2, figsize=PAGE, sharex=True, layout="constrained")
        for ax, var, label in ((axes[0], "N", "model size N* (parameters)"),
                               (axes[1], "k", "samples per query k*")):
            for kv, (x, opt) in curves.items():
                xs = np.maximum(np.asarray(x, dtype=float), 1.0)  # P = 0 drawn at 1 on the log axis
                for task in fit.tasks:
                    da = opt[var].sel(task=task)
                    if kv:
                        _band(ax, xs, da, colors[task], label=task, probs=(0.5,))
                    else:
                        med = da.median([d for d in da.dims if d != "budget"]).values
                        ax.plot(xs, med, color=colors[task], linestyle="--", linewidth=1.2)
            ax.axvline(max(float(budget.prompt_tokens), 1.0), color="0.3", linestyle=":", linewidth=1)
            _log_axis(ax, "x")
            _log_axis(ax, "y", narrow=var == "k")
            ax.set_xlabel("prompt tokens P per query (P = 0 drawn at 1)")
            ax.set_ylabel(label)
            ax.set_title(label, loc="left")
        axes[0].plot([], [], color="0.3", linestyle="--", label="no KV cache (each sample prefills the prompt)")
        axes[0].legend(loc="best", ncols=2 if len(fit.tasks) > 4 else 1)
        fig.suptitle(f"Optimum against prompt length ({budget.label()})\nsolid: KV cache shared by the k "
                     f"samples, median and 50% band; dashed: no KV cache, median; the law's metric",
                     fontsize=10)
    return fig, axes


# ------------------------------------------------------------------------------------- (5) headline
def plot_headline(records: list[dict], *, title: str, lines: Sequence[str] = (),
                  problems: Sequence[str] = ()):
    """Title page: the recommended N, D, k per task with intervals against Chinchilla, P(beats Chinchilla).

    `records` are `summary.optimum_records` for one budget. `lines` are shown under the title; `problems`
    (failed diagnostics, ...) are shown in red above the numbers. Returns (fig, [table axes, 3 panel axes]).
    """
    import textwrap

    tasks = [r["task"] for r in records]
    colors = task_colors(tasks)
    metric = records[0]["metric_name"] if records else "metric"
    prob = records[0]["N"]["prob"] if records else 0.9
    with style():
        fig = plt.figure(figsize=PAGE)
        fig.text(0.03, 0.965, title, fontsize=16, fontweight="bold", va="top")
        text = [w for line in lines for w in textwrap.wrap(line, 150)]
        fig.text(0.03, 0.915, "\n".join(text), fontsize=8.5, va="top", linespacing=1.5)
        y = 0.915 - 0.026 * len(text) - 0.01
        if problems:
            wrapped = [w for p in problems for w in textwrap.wrap(f"! {p}", 130)]
            fig.text(0.03, y, "\n".join(wrapped), fontsize=9, va="top", color="firebrick", fontweight="bold",
                     linespacing=1.4)
            y -= 0.028 * len(wrapped) + 0.01
        cols = ["task", "N* (params)", "D* (tokens)", "tokens/param", "k*", metric, "recommended N, D, k",
                f"rec. {metric}", "Chinchilla N, D, k", f"Chin. {metric}", "train-opt. N, D, k",
                f"t.-o. {metric}", "P(beats Chin.)", "P(beats t.-o.)"]

        def design(d: dict) -> str:
            if d.get("feasible") is False:
                return "infeasible"
            return f"{fmt.number(d['N'])}, {fmt.number(d['D'])}, {d['k']:.0f}"

        def p(x: float) -> str:
            return "n/a" if not np.isfinite(x) else f"{x:.2f}"

        cells = [[r["task"], fmt.interval(r["N"]), fmt.interval(r["D"]), fmt.interval(r["tokens_per_param"]), fmt.interval(r["k"], ".0f"),
                  fmt.interval(r["metric"], ".4g"), design(r["recommended"]), f"{r['recommended']['metric']['median']:.4g}",
                  design(r["chinchilla"]), _median4(r["chinchilla"]["metric"]), design(r["train_optimal"]),
                  _median4(r["train_optimal"]["metric"]), p(r["p_beats_chinchilla"]),
                  p(r["p_beats_train_optimal"])] for r in records]
        height = min(0.035 * (len(cells) + 1), max(y - 0.47, 0.08))
        ax_table = fig.add_axes((0.03, y - height - 0.035, 0.94, height))
        ax_table.axis("off")
        if cells:
            widths = np.array([max(4, len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)],
                              float)
            table = ax_table.table(cellText=cells, colLabels=cols, cellLoc="center", loc="upper left",
                                   colWidths=list(widths / widths.sum()), bbox=(0, 0, 1, 1))
            _style_table(table, cells, colors, 7.5 if len(cols) * 14 > widths.sum() else 7)
        ax_table.set_title(f"At this budget: median [{prob:.0%} interval] over posterior draws", loc="left",
                           fontsize=9)
        grid = fig.add_gridspec(1, 3, left=0.1, right=0.97, bottom=0.08, top=0.36, wspace=0.08)
        axes = [fig.add_subplot(grid[0, 0])]
        axes += [fig.add_subplot(grid[0, i], sharey=axes[0]) for i in (1, 2)]
        panels = [("N", "model size N* (parameters)"), ("tokens_per_param", "tokens per parameter D*/N*"),
                  ("k", "samples per query k*")]
        ys = np.arange(len(tasks))
        for ax, (key, label) in zip(axes, panels):
            for i, r in enumerate(records):
                s = r[key]
                ax.errorbar([s["median"]], [i], xerr=[[s["median"] - s["lower"]], [s["upper"] - s["median"]]],
                            fmt="o", color=colors[r["task"]], capsize=3)
            chin = {"N": [r["chinchilla"]["N"] for r in records],
                    "tokens_per_param": [r["chinchilla"]["D"] / r["chinchilla"]["N"] for r in records],
                    "k": [r["chinchilla"]["k"] for r in records]}[key]
            ax.scatter(chin, ys, marker="x", color="black", zorder=3, s=40)
            values = [r[key][q] for r in records for q in ("lower", "upper")] + chin
            _log_axis(ax, "x", narrow=key == "k" or np.nanmax(values) / np.nanmin(values) < 30)
            ax.margins(x=0.15)
            ax.set_xlabel(label)
            if ax is not axes[0]:
                ax.tick_params(labelleft=False)
        axes[0].set_yticks(ys, tasks)
        axes[0].set_ylim(len(tasks) - 0.5, -0.5)
        axes[0].plot([], [], "o", color="0.3", label=f"T2 optimum (median, {prob:.0%} interval)")
        axes[0].scatter([], [], marker="x", color="black", label="Chinchilla (20 tokens/param)")
        axes[0].legend(loc="lower left", bbox_to_anchor=(0, 1.02), ncols=2, frameon=False)
    return fig, np.array([ax_table, *axes])


def _median4(s: dict) -> str:
    return f"{s['median']:.4g}" if np.isfinite(s["median"]) else "n/a"


# ------------------------------------------------------------------------------------- (6) decision
DESIGN_LABELS = {"chosen": "chosen", "chinchilla": "Chinchilla", "train_optimal": "train-optimal",
                 "median_optimum": "median optimum"}


def tail_risk(x: np.ndarray, lower_is_better: bool, q: float = 0.1) -> tuple[float, float]:
    """(the worst-`q` quantile, CVaR: the mean of the worst `q` share of draws) of per-draw metric values."""
    x = np.sort(np.asarray(x, dtype=float)[np.isfinite(x)])
    if x.size == 0:
        return float("nan"), float("nan")
    if lower_is_better:
        x = x[::-1]  # worst first
    n = max(1, int(math.ceil(q * x.size)))
    return float(np.quantile(x, 1 - q) if lower_is_better else np.quantile(x, q)), float(x[:n].mean())


def plot_decision(ds: Any, *, q: float = 0.1):
    """The decision table with risk measures per task and design, and the metric's posterior at each design.

    `ds` is `bayes_t2.decide.decide(...)`: designs chosen (under its risk), Chinchilla and the design at the
    posterior-median optimum. Columns: the design, the metric's median [interval] and mean, the worst-`q`
    quantile and CVaR (mean of the worst `q` of draws), the expected regret against each draw's own optimum,
    and P(metric reaches the target) when a target was given. Bottom: the metric per draw at each design.
    """
    ds = getattr(ds, "dataset", ds)  # a Decision or its Dataset
    import textwrap

    attrs = ds.attrs
    lower = bool(attrs.get("lower_is_better", 1))
    metric = {"loss": "loss", "pass_at_k": "pass@k"}.get(attrs.get("metric_name"), attrs.get("metric_name"))
    target = attrs.get("target", float("nan"))
    has_target = target is not None and np.isfinite(target)
    prob = float(attrs.get("prob", 0.9))
    tasks = [str(t) for t in ds["task"].values]
    colors = task_colors(tasks)
    designs = [str(d) for d in ds["design"].values]
    cols = ["task", "design", "N (params)", "D (tokens)", "k", "tokens/param", f"{metric} median [{prob:.0%}]",
            "mean", f"worst {q:.0%}", f"CVaR {q:.0%}", "E[regret]"] + (["P(target)"] if has_target else [])
    cells = []
    for t in tasks:
        for d in designs:
            r = ds.sel(task=t, design=d)
            worst, cvar = tail_risk(r["metric"].values.ravel(), lower, q)
            label = f"chosen ({attrs.get('risk', '?')})" if d == "chosen" else DESIGN_LABELS.get(d, d)
            row = [t, label, fmt.number(float(r["N"])), fmt.number(float(r["D"])), f"{float(r['k']):.0f}",
                   fmt.number(float(r["tokens_per_param"])),
                   f"{float(r['metric_median']):.4g} [{float(r['metric_lower']):.4g}, "
                   f"{float(r['metric_upper']):.4g}]", f"{float(r['metric_mean']):.4g}", f"{worst:.4g}",
                   f"{cvar:.4g}", f"{float(r['expected_regret']):.3g}"]
            if has_target:
                row.append(f"{float(r['p_target']):.2f}")
            cells.append(row)
    with style():
        fig = plt.figure(figsize=PAGE)
        head = (f"Decision at {attrs.get('budget_label', 'the budget')} FLOPs: risk '{attrs.get('risk', '?')}'"
                + (f", target {metric} {'<=' if lower else '>='} {target:g}" if has_target else "")
                + f"; {metric}: {'lower' if lower else 'higher'} is better")
        fig.text(0.03, 0.965, head, fontsize=11, fontweight="bold", va="top")
        note = ("Each row is one design to commit to, judged over all posterior draws. Regret: how much worse "
                "than the best design for that draw, averaged over draws. Worst/CVaR: the tail the risk-averse "
                "care about. Hedging costs the difference in mean between the rows.")
        fig.text(0.03, 0.93, "\n".join(textwrap.wrap(note, 170)), fontsize=8, va="top")
        height = min(0.5, 0.03 * (len(cells) + 1))
        ax_table = fig.add_axes((0.03, 0.88 - height, 0.94, height))
        ax_table.axis("off")
        widths = np.array([max(4, len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)], float)
        table = ax_table.table(cellText=cells, colLabels=cols, cellLoc="center",
                               colWidths=list(widths / widths.sum()), bbox=(0, 0, 1, 1))
        _style_table(table, cells, colors, 7)
        ncols = min(len(tasks), 4)
        nrows = math.ceil(len(tasks) / ncols)
        top = 0.88 - height - 0.08
        grid = fig.add_gridspec(nrows, ncols, left=0.12, right=0.97, bottom=0.07, top=max(top, 0.2),
                                wspace=0.08, hspace=0.5)
        axes = []
        for i, t in enumerate(tasks):
            ax = fig.add_subplot(grid[i // ncols, i % ncols], sharey=axes[0] if axes else None)
            data = [ds["metric"].sel(task=t, design=d).values.ravel() for d in designs]
            data = [x[np.isfinite(x)] for x in data]
            parts = ax.boxplot(data, orientation="horizontal", whis=(100 * (1 - prob) / 2, 100 * (1 + prob) / 2),
                               showfliers=False, patch_artist=True, widths=0.6,
                               medianprops={"color": "black"})
            for box in parts["boxes"]:
                box.set_facecolor(colors[t])
                box.set_alpha(0.5)
            if has_target:
                ax.axvline(target, color="firebrick", linestyle="--", linewidth=1)
            ax.set_yticks(range(1, len(designs) + 1), [DESIGN_LABELS.get(d, d) for d in designs])
            if i % ncols:
                ax.tick_params(labelleft=False)
            ax.set_xlabel(f"{metric} per draw (box 50%, whiskers {prob:.0%})")
            ax.set_title(t, loc="left", color=colors[t])
            axes.append(ax)
        axes[0].invert_yaxis()  # chosen on top, as in the table
    return fig, np.array([ax_table, *axes])


def _style_table(table, cells, colors, fontsize: float) -> None:
    """The report's table look: grey rules, a bold shaded header, task names (first column) in task colours."""
    table.auto_set_font_size(False)
    table.set_fontsize(fontsize)
    for (row, col), cell in table.get_celld().items():
        cell.set_edgecolor("0.75")
        if row == 0:
            cell.set_text_props(fontweight="bold")
            cell.set_facecolor("0.93")
        elif col == 0:
            cell.set_text_props(color=colors[cells[row - 1][0]], fontweight="bold")


# ------------------------------------------------------------------------------------------- public names
# bt.plots.<figure>(...): each returns (fig, axes). The plot_ names are the same functions.
law = plot_law
coefficients = plot_coefficients
diagnostics = plot_diagnostics
optimum_vs_budget = plot_optimum_vs_budget
optimum_vs_prompt = plot_optimum_vs_prompt
headline = plot_headline
decision = plot_decision
