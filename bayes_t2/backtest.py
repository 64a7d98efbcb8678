"""Backtest: fit a law on the smaller part of the data, predict the held-out larger part, score the intervals.

Every optimum the package reports is an extrapolation to more compute than the data hold, so the question a
user needs answered is not "is the model calibrated against itself" (simulation-based calibration) but "did
intervals like these hold when this kind of law was extrapolated on real runs". A backtest answers it on the
user's own data: the checkpoints with the largest parameters (or compute 6ND, or tokens) are held out, the
route's model is fitted to the rest, and each held-out observation is compared with the posterior predictive of
a *new* checkpoint at its (N, D, k) -- the law, a fresh checkpoint effect and whatever discrepancy term the
model carries (`Fit.predict(new_checkpoint=True)`).

Scores per held-out point: the predictive median, the equal-tailed 50% and 90% intervals, the PIT value (the
predictive probability below the observation, ties split uniformly with a seed) and the error of the median:
relative error for a loss, log-odds error for pass@k. The extrapolation distance of a point is how many decades
its parameters, tokens and compute lie beyond the largest in the training part (0 when inside).

One function, `backtest`, serves the CLI (`bayes-t2 backtest`), the Python API and the benchmarks.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from .coverage import coverage_interval, coverage_intervals
from .discrepancy import fit_discrepancy_scale, fit_task_scales  # noqa: F401 - re-exported
from .data import EvalData
from .errors import InputError

#: holdout name -> the checkpoint quantity whose largest values are held out
HOLDOUTS: dict[str, str] = {"largest-params": "params", "largest-compute": "compute",
                            "largest-tokens": "tokens", "most-repeated": "epochs"}
DEFAULT_HOLDOUT = "largest-params"
#: share of the checkpoints held out (whole groups of equal key: every run of a held-out size goes)
DEFAULT_FRACTION = 0.25
#: quantiles of the predictive kept per point (5%, 25%, 50%, 75%, 95%)
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


@dataclass(frozen=True)
class Split:
    """The training and held-out parts of a data set, and the key value where they were cut."""

    train: EvalData
    test: EvalData
    holdout: str
    threshold: float  # held-out checkpoints have key >= threshold
    n_train_checkpoints: int
    n_test_checkpoints: int


@dataclass
class BacktestResult:
    """Per-point scores (`points`, a DataFrame) and their summary (`summary`, a JSON-ready dict)."""

    points: pd.DataFrame
    summary: dict[str, Any]
    fit: Any = field(default=None, repr=False)

    def records(self) -> dict[str, Any]:
        """The `--json` document: {"summary": {...}, "points": [{...}, ...]}."""
        return {"summary": self.summary, "points": self.points.to_dict(orient="records")}


# ------------------------------------------------------------------------------------------------- splitting
def split_data(data: EvalData, holdout: str = DEFAULT_HOLDOUT, fraction: float = DEFAULT_FRACTION) -> Split:
    """Hold out the checkpoints with the largest key (params, compute or tokens), about `fraction` of them.

    Whole groups of equal key go together (all runs of one model size, or of one IsoFLOP budget, whose 6ND agree
    to within `KEY_RTOL`, are held out or none), and the cut is
    the smallest group boundary that holds out at least `fraction` of the checkpoints, so the training part
    never contains a run as large as a held-out one in the chosen quantity.
    """
    if holdout not in HOLDOUTS:
        raise InputError(f"--holdout must be one of {', '.join(HOLDOUTS)}, got {holdout!r}")
    if not 0 < fraction < 1:
        raise InputError(f"--fraction must be in (0, 1), got {fraction}")
    key = HOLDOUTS[holdout]
    frame = data.frame
    if key == "epochs" and "unique_tokens" not in frame.columns:
        raise InputError("--holdout most-repeated needs a unique_tokens column (runs that repeated their data)")
    # checkpoints: distinct (params, tokens[, unique_tokens]) runs (a model name adds nothing to the key)
    ck_cols = ["params", "tokens"] + (["unique_tokens"] if "unique_tokens" in frame.columns else [])
    ck = frame[ck_cols].drop_duplicates()
    ck_raw = _holdout_key(ck, key).to_numpy(float)
    row_key = pd.Series(_same_key_groups(ck_raw, _holdout_key(frame, key).to_numpy(float)), index=frame.index)
    ck_key = np.sort(_same_key_groups(ck_raw, ck_raw))[::-1]
    values = np.unique(ck_key)[::-1]  # descending distinct keys
    n_ck = len(ck_key)
    threshold, held = None, 0
    for v in values:
        held = int(np.sum(ck_key >= v))
        threshold = float(v)
        if held >= fraction * n_ck:
            break
    assert threshold is not None
    is_test = (row_key >= threshold).to_numpy()
    train_frame, test_frame = frame[~is_test], frame[is_test]
    if train_frame["params"].nunique() < 2 or len(train_frame[ck_cols].drop_duplicates()) < 3:
        raise InputError(f"--holdout {holdout} --fraction {fraction:g} leaves fewer than 3 checkpoints of at least "
                         f"2 model sizes to fit; lower --fraction or give more runs")
    if held == n_ck or test_frame.empty:
        raise InputError(f"--holdout {holdout} --fraction {fraction:g} holds out every checkpoint")
    # a held-out task the training part never saw cannot be predicted: drop it (said in the summary)
    test_frame = test_frame[test_frame["task"].isin(set(train_frame["task"]))]
    if test_frame.empty:
        raise InputError(f"--holdout {holdout}: no held-out run belongs to a task seen in the training part")
    part = lambda f: replace(data, frame=f.reset_index(drop=True))  # noqa: E731 - already validated rows
    n_test_ck = len(test_frame[ck_cols].drop_duplicates())
    return Split(train=_fresh(part(train_frame)), test=_fresh(part(test_frame)), holdout=holdout,
                 threshold=threshold, n_train_checkpoints=n_ck - held, n_test_checkpoints=n_test_ck)


#: keys within this relative distance are one group: the runs of one IsoFLOP budget have 6ND equal only up to
#: the rounding of their token counts (e.g. 1e-10 apart), and must be held out together
KEY_RTOL = 1e-6


def _same_key_groups(keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """`values` mapped to the smallest of their group of `keys`: sorted keys whose neighbours lie within
    `KEY_RTOL` of each other form one group. Every value must be one of `keys` (a row's key is its checkpoint's)."""
    ordered = np.unique(keys)
    if len(ordered) == 0:
        return np.asarray(values, float)
    new_group = np.concatenate([[True], np.diff(ordered) > KEY_RTOL * np.abs(ordered[1:])])
    group_min = ordered[new_group][np.cumsum(new_group) - 1]
    return group_min[np.searchsorted(ordered, values)]


def _holdout_key(frame: pd.DataFrame, key: str) -> pd.Series:
    """The quantity a holdout ranks runs by: compute 6ND, epochs D/U (fresh data: 1), or a column."""
    if key == "compute":
        return 6.0 * frame["params"] * frame["tokens"]
    if key == "epochs":
        return frame["tokens"] / frame["unique_tokens"].fillna(frame["tokens"])
    return frame[key]


def _fresh(data: EvalData) -> EvalData:
    """A copy without cached properties of the whole data (tasks, checkpoints, hash are per part)."""
    return EvalData(kind=data.kind, frame=data.frame, sources=data.sources, dropped_rows=data.dropped_rows)


# ------------------------------------------------------------------------------------------------ predicting
def _distances(points: pd.DataFrame, train: pd.DataFrame) -> pd.DataFrame:
    """Decades beyond the training part's largest params, tokens and compute (0 inside the range)."""
    out = {}
    for name, x, ref in (("params", points["params"], train["params"].max()),
                         ("tokens", points["tokens"], train["tokens"].max()),
                         ("compute", 6 * points["params"] * points["tokens"],
                          float((6 * train["params"] * train["tokens"]).max()))):
        out[f"distance_{name}"] = np.maximum(0.0, np.log10(np.asarray(x, float) / float(ref)))
    # tokens per parameter outside the training part's range, either side (an IsoFLOP suite's largest models
    # at its smallest budgets are trained on far fewer tokens per parameter than any smaller model was)
    ratio = np.log10(np.asarray(points["tokens"] / points["params"], float))
    train_ratio = np.log10(np.asarray(train["tokens"] / train["params"], float))
    out["distance_tokens_per_param"] = np.maximum(0.0, np.maximum(train_ratio.min() - ratio, ratio - train_ratio.max()))
    if "unique_tokens" in points.columns and "unique_tokens" in train.columns:  # epochs beyond the training part's
        out["distance_epochs"] = np.maximum(0.0, np.log10(np.asarray(_holdout_key(points, "epochs"), float)
                                                          / float(_holdout_key(train, "epochs").max())))
    return pd.DataFrame(out, index=points.index)


def _loss_predictive(fit, test: EvalData, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Held-out loss rows and a new checkpoint's predictive draws for each (rows x draws)."""
    obs = fit.route.observations(test)
    point = xr.DataArray(np.arange(len(obs)), dims="point")
    N = xr.DataArray(obs["params"].to_numpy(float), coords={"point": point}, dims="point")
    D = xr.DataArray(obs["tokens"].to_numpy(float), coords={"point": point}, dims="point")
    K = xr.DataArray(obs["k"].to_numpy(float), coords={"point": point}, dims="point")
    if "unique_tokens" in obs.columns:  # runs that repeated their data: the law at the effective design
        from .repetition import repeated_fit

        U = xr.DataArray(obs["unique_tokens"].to_numpy(float), coords={"point": point}, dims="point")
        fit = repeated_fit(fit, U, seed)
    pred = fit.predict(N, D, K, new_checkpoint=True, seed=seed)
    task = xr.DataArray(obs["task"].to_numpy(str), dims="point")
    draws = pred.sel(task=task).stack(sample=("chain", "draw")).transpose("point", "sample").values
    cols = ["task", "params", "tokens", "k"] + [c for c in ("model", "unique_tokens") if c in obs.columns]
    points = obs.rename(columns={"loss": "observed"})[cols + ["observed"]]
    return points, np.asarray(draws, dtype=float)


def _accuracy_predictive(fit, test: EvalData, seed: int, max_draws: int = 400,
                         k_top: int | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """Held-out (task, checkpoint, k) points with their empirical pass@k, and per point the predictive draws of
    that same statistic: a new checkpoint's Beta shapes (law + fresh checkpoint deviation + the fit's
    discrepancy beyond the data), fresh problems p ~ Beta(a, b) with the checkpoint's own sample counts,
    c ~ Binomial(n, p), then the mean unbiased pass@k over its problems. k runs over 1, 2, 4, ... up to the
    smallest sample count of the checkpoint (or `k_top`)."""
    from .passk import unbiased_pass_at_k
    from .routes.accuracy import accuracy_shapes, deviation_nu
    from .routes.extrapolation import task_discrepancy_scale

    rng = np.random.default_rng(seed)
    post = fit.posterior
    names = list(fit.route.coefficient_names) + [v for v in fit.route.noise_names
                                                 if v in post and "task" in post[v].dims]
    flat_all = {name: post[name].stack(sample=("chain", "draw")).transpose("sample", ...) for name in names}
    shared = {"data_log_range": post["data_log_range"].isel(chain=0, draw=0).values} if "data_log_range" in post else {}
    n_all = flat_all[names[0]].sizes["sample"]
    pick = np.sort(rng.choice(n_all, size=min(max_draws, n_all), replace=False))
    rows, draws = [], []
    for (task, N, D), g in test.frame.groupby(["task", "params", "tokens"], sort=True):
        flat = {name: np.asarray(v.isel(sample=pick).sel(task=task).values, float) for name, v in flat_all.items()}
        a, b = accuracy_shapes({**flat, **shared}, float(N), float(D), rng=rng, noise_nu=deviation_nu(fit.spec),
                               discrepancy=task_discrepancy_scale(fit.spec, task))
        n = g["n_samples"].to_numpy(np.int64)
        c_obs = g["n_correct"].to_numpy(np.int64)
        p = rng.beta(np.asarray(a)[:, None], np.asarray(b)[:, None], size=(len(pick), len(n)))
        c = rng.binomial(n[None, :], p)
        top = int(np.floor(np.log2(n.min()))) if k_top is None else min(int(np.log2(k_top)), int(np.log2(n.min())))
        for k in 2.0 ** np.arange(top + 1):
            rows.append({"task": task, "params": float(N), "tokens": float(D), "k": float(k),
                         "observed": float(np.mean(unbiased_pass_at_k(n, c_obs, k)))})
            draws.append(unbiased_pass_at_k(n[None, :], c, k).mean(axis=1))
    return pd.DataFrame(rows), np.asarray(draws, dtype=float)


def predictive(fit, test: EvalData, seed: int, k_top: int | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """Held-out points of `test` with their observed metric, and a new checkpoint's predictive draws of it
    (points x draws), on the fit's route: loss rows (`_loss_predictive`) or the empirical pass@k of each held-out
    checkpoint (`_accuracy_predictive`, k up to `k_top`; the loss route has its own k per row)."""
    if fit.route.metric_name == "loss":
        return _loss_predictive(fit, test, seed)
    return _accuracy_predictive(fit, test, seed, k_top=k_top)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.asarray(p, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(p) - np.log1p(-p)


def score_points(points: pd.DataFrame, draws: np.ndarray, metric_name: str, seed: int) -> pd.DataFrame:
    """Quantiles, interval coverage, randomised PIT and the median's error for every held-out point."""
    rng = np.random.default_rng(seed)
    out = points.copy()
    q = np.quantile(draws, QUANTILES, axis=1)
    for p, v in zip(QUANTILES, q):
        out[f"q{int(round(p * 100)):02d}"] = v
    obs = out["observed"].to_numpy(float)
    below, ties = np.mean(draws < obs[:, None], axis=1), np.mean(draws == obs[:, None], axis=1)
    out["pit"] = below + rng.uniform(size=len(obs)) * ties
    out["covered50"] = (out["q25"] <= obs) & (obs <= out["q75"])
    out["covered90"] = (out["q05"] <= obs) & (obs <= out["q95"])
    if metric_name == "loss":
        out["error"] = (out["q50"] - obs) / obs  # relative error of the median
    else:
        with np.errstate(invalid="ignore"):
            out["error"] = _logit(out["q50"].to_numpy()) - _logit(obs)  # log-odds error (inf/NaN at 0 or 1)
        out.loc[~np.isfinite(out["error"]), "error"] = np.nan
    out["metric_name"] = metric_name
    return out


def checkpoint_labels(points: pd.DataFrame) -> np.ndarray:
    """Per held-out point, an integer naming its checkpoint as the fit names it -- (params, tokens), and `model`
    and `unique_tokens` when the data have them (`routes.loss`) -- so a coverage's interval counts the points of
    one checkpoint, which hit or miss together, as one cluster (`coverage.coverage_interval`)."""
    keys = ["params", "tokens"] + [c for c in ("model", "unique_tokens") if c in points.columns]
    return points.groupby(keys, sort=True, dropna=False).ngroup().to_numpy()


def _coverage_cell(points: pd.DataFrame, error_name: str) -> dict[str, Any]:
    """Coverage of the 50% and 90% intervals and the median |error| of some held-out points."""
    err = points["error"].dropna()
    return {"n": int(len(points)), "coverage50": float(points["covered50"].mean()),
            "coverage90": float(points["covered90"].mean()),
            f"median_abs_{error_name}": float(np.median(np.abs(err))) if len(err) else None}


def summarize(points: pd.DataFrame, metric_name: str) -> dict[str, Any]:
    """Coverage of the 50% and 90% intervals (each with a 90% interval for the rate behind it, the points of
    one held-out checkpoint counted as correlated: `coverage.coverage_interval`),
    the median absolute and the mean signed error, PIT spread; the same coverage and error by extrapolation
    distance ("by_distance") and, with more than one task, by task ("by_task", with intervals and the share of
    observations below the median: which task's law extrapolates worst)."""
    err = points["error"].dropna()
    pit = points["pit"].to_numpy(float)
    error_name = "relative_error" if metric_name == "loss" else "logodds_error"
    bins = np.array([0.0, 1e-12, 0.25, 0.5, 1.0, np.inf])
    dist = points["distance"].to_numpy(float)
    by_distance = []
    for lo, hi in zip(bins[:-1], bins[1:]):
        m = (dist >= lo) & (dist < hi)
        if m.any():
            by_distance.append({"distance_from": float(lo), "distance_to": float(hi),
                                **_coverage_cell(points.loc[m], error_name)})
    cluster = checkpoint_labels(points)
    lower_is_better = metric_name == "loss"
    by_task = []
    tasks = pd.unique(points["task"]) if "task" in points and len(points) else []
    for task in tasks if len(tasks) > 1 else []:
        m = (points["task"] == task).to_numpy()
        by_task.append({"task": str(task), **_coverage_cell(points.loc[m], error_name),
                        "coverage50_interval": coverage_interval(points.loc[m, "covered50"].to_numpy(), cluster[m]),
                        "coverage90_interval": coverage_interval(points.loc[m, "covered90"].to_numpy(), cluster[m]),
                        "n_clusters": int(len(np.unique(cluster[m]))),
                        "share_observed_below_median": float(np.mean(pit[m] < 0.5)),
                        **_bias(pit[m] < 0.5, cluster[m], lower_is_better)})
    return {
        "n_points": int(len(points)),
        "coverage50": float(points["covered50"].mean()),
        "coverage90": float(points["covered90"].mean()),
        "coverage50_interval": coverage_interval(points["covered50"].to_numpy(), cluster),
        "coverage90_interval": coverage_interval(points["covered90"].to_numpy(), cluster),
        "n_clusters": int(len(np.unique(cluster))) if len(points) else 0,
        f"median_abs_{error_name}": float(np.median(np.abs(err))) if len(err) else None,
        f"mean_{error_name}": float(err.mean()) if len(err) else None,
        "n_error": int(len(err)),
        "share_observed_below_median": float(np.mean(pit < 0.5)),
        **_bias(pit < 0.5, cluster, lower_is_better),
        "pit_ks": float(_ks_uniform(pit)),
        "max_distance": float(dist.max()) if len(dist) else 0.0,
        "share_outside_tokens_per_param": float(np.mean(points["distance_tokens_per_param"] > 0))
        if "distance_tokens_per_param" in points else None,
        "by_distance": by_distance,
        "by_task": by_task,
    }


#: probability of the interval a one-sided verdict needs to exclude one half (a 90% interval would call one in
#: ten calibrated backtests one-sided)
BIAS_PROB = 0.99


def _bias(below: np.ndarray, cluster: np.ndarray, lower_is_better: bool) -> dict[str, Any]:
    """Did the law miss to one side beyond the data? The 90% interval of the rate of observations below the
    predictive median (points of one checkpoint correlated, as for coverage: `coverage.coverage_interval`) and
    the verdict "optimistic" (the held-out runs did worse than the median predicted: loss above it, pass@k
    below it) or "pessimistic" (better) when the `BIAS_PROB` interval excludes one half, else "none". A
    symmetric interval cannot centre a one-sided miss, so such a law's intervals fail at 50% before they fail
    at 90%."""
    interval, (lo, hi) = coverage_intervals(below, cluster, (0.9, BIAS_PROB))
    out = {"below_median_interval": interval, "below_median_interval_99": [lo, hi], "bias": "none"}
    if hi < 0.5 or lo > 0.5:  # never with no points (nan)
        # observations mostly below the median: a loss lower (better) than predicted, a pass@k lower (worse)
        out["bias"] = "pessimistic" if (lo > 0.5) == lower_is_better else "optimistic"
    return out


def bias_text(summary: dict) -> str | None:
    """One sentence on a one-sided miss (`_bias`), for the command line and the report; None when there is none."""
    bias = summary.get("bias")
    if bias not in ("optimistic", "pessimistic"):
        return None
    lo, hi = summary["below_median_interval_99"]
    return (f"The law was {bias} beyond the data: {summary['share_observed_below_median']:.0%} of the held-out "
            f"points lie below the predictive median (99% interval of the rate behind it [{lo:.0%}, {hi:.0%}]; "
            f"50% if centred), so the held-out runs did {'better' if bias == 'pessimistic' else 'worse'} than "
            "predicted. "
            "The intervals are symmetric around that median and cannot centre a one-sided miss: read the "
            f"predicted metric of larger runs as {'a pessimistic' if bias == 'pessimistic' else 'an optimistic'} "
            "estimate.")


def _ks_uniform(u: np.ndarray) -> float:
    """Kolmogorov-Smirnov distance of the PIT values from Uniform(0, 1) (0: perfectly calibrated)."""
    u = np.sort(np.asarray(u, float))
    n = len(u)
    if n == 0:
        return float("nan")
    i = np.arange(1, n + 1)
    return float(max(np.max(i / n - u), np.max(u - (i - 1) / n)))


# ------------------------------------------------------------------------------------------- discrepancy
#: the inner folds a backtest's learned discrepancy pools, as shares of its own holdout fraction: two
#: leave-the-largest-out backtests inside the training part, one as deep as the outer cut and one half as deep,
#: so the residuals span a range of distances
INNER_FOLD_SHARES = (1.0, 0.5)
#: the folds a fit learns its discrepancy from: its largest models and its largest-compute runs held out in turn
#: (an optimum extrapolates in both)
FIT_FOLDS = (("largest-params", DEFAULT_FRACTION), ("largest-compute", DEFAULT_FRACTION))
#: the inner fits' draws are capped here: they inform one number, the scale
INNER_MAX_DRAWS = 500


def distinct_splits(data: EvalData, folds: Sequence[tuple[str, float]]) -> tuple[list[tuple[str, float, Split]], list[str]]:
    """The (holdout, fraction, split) of each fold the data allow, each cut once: two fractions that cut a data
    set with few distinct sizes at the same group boundary give one fold, not the same residuals twice (and
    one fit less). Returns the splits and why the others were skipped."""
    splits, skipped, seen = [], [], {}
    for holdout, fraction in folds:
        try:
            split = split_data(data, holdout, fraction)
        except InputError as err:
            skipped.append(f"{holdout} {fraction:g}: {err}")
            continue
        if (holdout, split.threshold) in seen:
            skipped.append(f"{holdout} {fraction:g}: the same cut as {holdout} {seen[holdout, split.threshold]:g}")
            continue
        seen[holdout, split.threshold] = fraction
        splits.append((holdout, fraction, split))
    return splits, skipped


def inner_fold_residuals(data: EvalData, folds: Sequence[tuple[str, float]] = FIT_FOLDS, *,
                         route: str | None = None, priors: str | Path | dict | None = None, settings: Any = None,
                         seed: int = 0, keep_fits: bool = False) -> dict[str, Any]:
    """What a learned discrepancy is learned from: for each (holdout, fraction) fold the largest checkpoints of
    `data` are held out, the model without discrepancy is fitted to the rest, and each held-out point gives its
    residual on the scale the route's discrepancy acts on, its predictive variance there (`held_out_residuals`:
    log loss, or the logit of a checkpoint's pass@1) and its distance in e-folds beyond the fold's training
    range (`extrapolation_efolds`; per axis of `RANGE_AXES` in "efolds_by_axis", points x axes).
    Folds the data are too small for, or that repeat an earlier fold's cut, are skipped (said in "skipped",
    `distinct_splits`); none left: InputError.
    Returns {"residual", "variance", "efolds", "efolds_by_axis", "fold", "params", "tokens", "task"} (arrays
    over the pooled points),
    "folds", "skipped" and "per_task" (the model file's ``[discrepancy] per_task``, for `learn_discrepancy`);
    with `keep_fits`, "fits": each fold's `Fit`, in the order of "folds" (to inspect a fold, or to predict
    other points with it)."""
    from .fit import SamplerSettings, fit as run_fit, route_for
    from .priors import load_spec
    from .routes.extrapolation import extrapolation_efolds_by_axis, with_discrepancy

    route_obj = route_for(data, route)
    settings = settings or SamplerSettings(draws=500, tune=500, chains=2, pointwise=False)
    settings = replace(settings, draws=min(settings.draws, INNER_MAX_DRAWS),
                       tune=min(settings.tune, INNER_MAX_DRAWS), pointwise=False)
    spec = with_discrepancy(load_spec(route_obj.name, priors), 0.0)
    residuals, variances, distances, fold, used, designs, task_names, fits = [], [], [], [], [], [], [], []
    splits, skipped = distinct_splits(data, folds)
    for holdout, fraction, inner in splits:
        result = run_fit(inner.train, route=route_obj.name, priors=spec, settings=settings, progressbar=False)
        if keep_fits:
            fits.append(result)
        points, residual, variance = held_out_residuals(result, inner.test, seed)
        distances.append(np.column_stack(extrapolation_efolds_by_axis(
            result.posterior["data_log_range"], points["params"].to_numpy(float), points["tokens"].to_numpy(float))))
        residuals.append(residual)
        variances.append(variance)
        fold.append(np.full(len(points), len(used)))
        designs.append(points[["params", "tokens"]].to_numpy(float))
        task_names.append(points["task"].to_numpy(str))
        used.append({"holdout": holdout, "fraction": fraction, "n_points": int(len(points)),
                     "n_train_rows": len(inner.train), "max_rhat": result.diagnostics().max_rhat})
    if not used:
        raise InputError(f"too few checkpoints to learn the discrepancy ({'; '.join(skipped)})")
    by_axis = np.concatenate(distances)
    return {"residual": np.concatenate(residuals), "variance": np.concatenate(variances),
            "efolds": by_axis.max(axis=1), "efolds_by_axis": by_axis, "fold": np.concatenate(fold),
            "params": np.concatenate(designs)[:, 0], "tokens": np.concatenate(designs)[:, 1],
            "task": np.concatenate(task_names), "folds": used,
            "skipped": skipped, "per_task": bool(spec["discrepancy"].get("per_task", True)),
            **({"fits": fits} if keep_fits else {})}


def learn_discrepancy(data: EvalData, folds: Sequence[tuple[str, float]] = FIT_FOLDS, *,
                      route: str | None = None, priors: str | Path | dict | None = None, settings: Any = None,
                      seed: int = 0) -> dict[str, Any]:
    """The discrepancy scale of a route's law (sd per e-fold beyond the data: of log loss on the loss route, of
    the logit of the mean success mu on the accuracy route) learned from `data` itself, from all folds'
    held-out residuals together (`inner_fold_residuals`), r ~ Normal(0, predictive variance + (scale x
    distance)^2). With one task: the maximum-likelihood scale (`fit_discrepancy_scale`). With several and
    ``[discrepancy] per_task = true`` (the default): one scale per task, partially pooled
    (`discrepancy.fit_task_scales`), "scale" then the population's median (the scale of a task without held-out
    points). A posterior over one scale, a signed drift, sd growing as a power of the distance and a scale per
    axis did not hold out better (docs/backtest.md).
    Returns {"scale", "by_task" (empty: one scale for all), "pooling_sd", "shared_scale", "folds", "n_points",
    "max_efolds", "rms_residual", "n_dropped", "skipped"}: n_dropped counts the held-out points without a
    residual (accuracy checkpoints that solved nothing; 0 for losses)."""
    inner = inner_fold_residuals(data, folds, route=route, priors=priors, settings=settings, seed=seed)
    residual, variance, efolds = inner["residual"], inner["variance"], inner["efolds"]
    if inner["per_task"] and len(set(inner["task"][efolds > 0])) >= 2:
        scales = fit_task_scales(residual, variance, efolds, inner["task"])
    else:
        shared = fit_discrepancy_scale(residual, variance, efolds)
        scales = {"scale": shared, "by_task": {}, "pooling_sd": None, "shared_scale": shared}
    finite = np.isfinite(residual) & np.isfinite(variance)
    rms = float(np.sqrt(np.mean(residual[finite] ** 2))) if finite.any() else float("nan")
    return {**scales, "folds": inner["folds"], "n_points": int(finite.sum()),
            "max_efolds": float(np.max(efolds)), "rms_residual": rms, "n_dropped": int((~finite).sum()),
            "skipped": inner["skipped"]}


def held_out_residuals(fit, test: EvalData, seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """(points, residual r, predictive variance v) of a fit's held-out checkpoints, on the scale the route's
    discrepancy acts on, for `fit_discrepancy_scale`'s r ~ Normal(0, v + (s x)^2).

    Loss route: r = log(observed loss) - the median of a new checkpoint's predictive log loss, v its variance.
    Accuracy route: one point per held-out (task, checkpoint), r = logit of its *empirical* pass@1 (the mean of
    n_correct / n_samples over its problems) minus the median logit of the same statistic simulated for a new
    checkpoint with the checkpoint's own problems and sample counts (`_accuracy_predictive`), v from the
    predictive's 16-84% range ((q84 - q16) / 2)^2 (robust to the few simulated checkpoints that solve nothing,
    whose logit is -inf). Why the empirical pass@1 and not mu: mu of a held-out checkpoint is never observed
    (it would need a second model to estimate), while the empirical pass@1 is, and its expectation *is* mu
    (E[c/n] = p, E[p] = mu), so a shift d of logit mu moves the logit of the statistic by d (for many problems)
    and the learned s is an sd of logit mu, as the discrepancy term needs; the problems' and samples' own
    scatter and the checkpoint deviation are in v, as the loss route's noise is. Held-out checkpoints that
    solved nothing (at the chance floor, where the law is not seen) get r = -inf: `fit_discrepancy_scale` and
    `learn_discrepancy` leave them out (and count them)."""
    points, draws = predictive(fit, test, seed, k_top=1)
    if fit.route.metric_name == "loss":
        log_draws = np.log(draws)
        return points, np.log(points["observed"].to_numpy(float)) - np.median(log_draws, axis=1), \
            np.var(log_draws, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        logit_draws = _logit(draws)
        lo, mid, hi = np.quantile(logit_draws, [0.15865525, 0.5, 0.84134475], axis=1)
        residual = _logit(points["observed"].to_numpy(float)) - mid
        variance = ((hi - lo) / 2.0) ** 2
    return points, residual, variance


# ---------------------------------------------------------------------------------------------------- public
def backtest(data: EvalData, *, holdout: str = DEFAULT_HOLDOUT, fraction: float = DEFAULT_FRACTION,
             route: str | None = None, priors: str | Path | dict | None = None, settings: Any = None,
             seed: int | None = None, discrepancy: str | float = "learn",
             progressbar: bool = False) -> BacktestResult:
    """Fit on the smaller part of `data`, predict the held-out larger part, and score the predictions.

    holdout: `largest-params`, `largest-compute` (6ND) or `largest-tokens`; fraction: share of the checkpoints
    held out. settings: `SamplerSettings` (default 2 chains x 500 + 500, no pointwise groups); seed: of the
    predictive draws and PIT ties (default: the sampler's seed). discrepancy (the law's error per e-fold beyond
    the data; log loss or logit mu): "learn" (the scale comes from backtests *inside* the training part, with
    the same holdout, so the held-out part never informs it), "spec" (as the model specification says), or a
    number.
    Returns per-point scores and their summary.
    """
    from .fit import SamplerSettings, fit as run_fit, route_for
    from .priors import load_spec
    from .routes.extrapolation import discrepancy_by_task, discrepancy_scale, with_discrepancy

    if data.kind not in ("loss", "samples"):
        raise InputError(f"a backtest needs loss or samples data, not '{data.kind}'")
    settings = settings or SamplerSettings(draws=500, tune=500, chains=2, pointwise=False)
    seed = settings.seed if seed is None else seed
    route_obj = route_for(data, route)
    split = split_data(data, holdout, fraction)
    learned = None
    if discrepancy != "spec":
        spec = load_spec(route_obj.name, priors)
        by_task: dict[str, float] = {}
        if discrepancy == "learn":
            try:
                learned = learn_discrepancy(split.train, [(holdout, fraction * share) for share in INNER_FOLD_SHARES],
                                            route=route_obj.name, priors=priors, settings=settings, seed=seed)
                scale, by_task = learned["scale"], learned["by_task"]
            except InputError as err:  # too few checkpoints for a backtest inside the training part
                learned, scale = {"scale": 0.0, "by_task": {}, "note": f"not learned: {err}"}, 0.0
        else:
            try:
                scale = float(discrepancy)
            except (TypeError, ValueError):
                raise InputError(f"--discrepancy must be learn, spec or a number >= 0, got {discrepancy!r}") from None
            if not scale >= 0:
                raise InputError(f"--discrepancy must be learn, spec or a number >= 0, got {discrepancy!r}")
        priors = with_discrepancy(spec, scale, by_task)
    result = run_fit(split.train, route=route_obj.name, priors=priors, settings=settings, progressbar=progressbar)
    scored = score_split(result, split, seed)
    diag = result.diagnostics()
    summary = {
        "route": route_obj.name, "metric_name": route_obj.metric_name, "holdout": holdout,
        "fraction": fraction, "threshold": split.threshold, "threshold_quantity": HOLDOUTS[holdout],
        "n_train_rows": len(split.train), "n_test_rows": len(split.test),
        "n_train_checkpoints": split.n_train_checkpoints, "n_test_checkpoints": split.n_test_checkpoints,
        "tasks": list(split.train.tasks), "sources": list(data.sources),
        **summarize(scored, route_obj.metric_name),
        "diagnostics": {"max_rhat": diag.max_rhat, "min_ess_bulk": diag.min_ess_bulk,
                        "divergences": diag.divergences, "warnings": diag.warnings},
        "sampler": {"draws": settings.draws, "tune": settings.tune, "chains": settings.chains,
                    "seed": settings.seed, "sampler": settings.sampler},
        "model_spec": result.spec,
        "discrepancy": learned if learned is not None else {"scale": discrepancy_scale(result.spec),
                                                            "by_task": discrepancy_by_task(result.spec)},
    }
    return BacktestResult(points=scored.reset_index(drop=True), summary=summary, fit=result)


def score_split(fit, split: Split, seed: int) -> pd.DataFrame:
    """Every held-out point of `split` scored against `fit`'s predictive of a new checkpoint (with the
    discrepancy its spec carries), with its distances beyond the training part (`distance` along the holdout's
    quantity)."""
    points, draws = predictive(fit, split.test, seed)
    scored = score_points(points, draws, fit.route.metric_name, seed + 1)
    scored = pd.concat([scored, _distances(scored, split.train.frame)], axis=1)
    scored["distance"] = scored[f"distance_{HOLDOUTS[split.holdout]}"]
    return scored


def plot_backtest(result: BacktestResult, title: str | None = None):
    """Predicted against observed for every held-out point, as the error of the prediction against the
    extrapolation distance: median with 50% and 90% intervals (relative to the observation for a loss, in
    log-odds for pass@k), and the PIT histogram. Returns (fig, axes)."""
    import matplotlib.pyplot as plt

    pts, s = result.points, result.summary
    is_loss = s["metric_name"] == "loss"
    obs = pts["observed"].to_numpy(float)

    def rel(col: str) -> np.ndarray:
        v = pts[col].to_numpy(float)
        return v / obs - 1 if is_loss else _logit(v) - _logit(obs)

    fig, (ax, ax_pit) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [2.2, 1]})
    x = pts["distance"].to_numpy(float)
    rng = np.random.default_rng(0)
    x = x + rng.uniform(-0.012, 0.012, size=len(x)) * max(float(np.ptp(x)), 0.2)  # jitter: points share sizes
    color = np.where(pts["covered90"], "tab:blue", "tab:red")
    ax.vlines(x, rel("q05"), rel("q95"), color=color, alpha=0.35, lw=1)
    ax.vlines(x, rel("q25"), rel("q75"), color=color, alpha=0.8, lw=2.5)
    ax.scatter(x, rel("q50"), s=10, color="k", zorder=3, label="predictive median")
    ax.axhline(0, color="0.3", lw=0.8)
    ax.set_xlabel(f"extrapolation distance: decades of {s['threshold_quantity']} beyond the training data")
    ax.set_ylabel("prediction / observed - 1" if is_loss else "logit(prediction) - logit(observed)")
    ax.set_title(f"{title + chr(10) if title else ''}{s['holdout']}: 90% intervals cover {s['coverage90']:.0%}, 50% cover {s['coverage50']:.0%} "
                 f"of {s['n_points']} held-out points", fontsize=10)
    ax.legend(loc="best", fontsize=8, title="bars: 50% / 90% intervals (red: miss)", title_fontsize=8)
    ax_pit.hist(pts["pit"], bins=np.linspace(0, 1, 11), color="0.6", edgecolor="white")
    ax_pit.axhline(len(pts) / 10, color="k", lw=0.8, ls="--")
    ax_pit.set_xlabel("PIT (predictive probability below the observation)")
    ax_pit.set_title("flat if calibrated", fontsize=10)
    fig.tight_layout()
    return fig, (ax, ax_pit)
