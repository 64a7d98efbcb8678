"""Turn posterior results (per-draw optimum, predictions) into the records of DESIGN.md's JSON formats."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import xarray as xr

from .budget import SERVING_DEFAULTS, budget_from_dict
from .fmt import discrepancy_unit

SAMPLE_DIMS = ("chain", "draw")


def interval(values: xr.DataArray, prob: float) -> dict[str, float]:
    """Median, mean and equal-tailed `prob` interval over the sample dims (NaN draws ignored).

    The ends are posterior quantiles and belong to the interval; for a discrete quantity (k*, and N*, D* on a
    k segment end) the closed interval holds at least `prob` of the draws, usually more (bayes_t2.calibrate)."""
    x = np.asarray(values.stack(sample=[d for d in SAMPLE_DIMS if d in values.dims]).values, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return {"median": float("nan"), "mean": float("nan"), "lower": float("nan"), "upper": float("nan"),
                "prob": prob}
    lo, med, hi = np.quantile(x, [(1 - prob) / 2, 0.5, (1 + prob) / 2])
    return {"median": float(med), "mean": float(x.mean()), "lower": float(lo), "upper": float(hi), "prob": prob}


def _design(o: xr.Dataset, name: str, prob: float, budget: Any) -> dict[str, Any]:
    """One fixed design of a record: N, D, k, what it costs (FLOPs per query; with prices, dollars per query
    and for training: `budget.design_costs`) and its metric interval."""
    n, d, k = (float(o[f"{name}_{v}"]) for v in ("N", "D", "k"))
    return {"N": n, "D": d, "k": k, **{key: float(v) for key, v in budget.design_costs(n, d, k).items()},
            "metric": interval(o[f"{name}_metric"], prob)}


def _share(value: Any) -> float:
    v = float(value)
    return v if np.isfinite(v) else float("nan")


def optimum_records(opt: xr.Dataset, metric_name: str, lower_is_better: bool, prob: float = 0.9) -> list[dict]:
    """One record per (task, budget) in DESIGN.md's optimum.json format: the per-draw optimum's N, D, k,
    tokens/param and metric (intervals), the recommended design (at the posterior-median optimum), the
    chinchilla and train_optimal baselines, P(recommended beats each baseline) and the share of draws on
    each bound. `opt` is `Fit.optimize`'s result."""
    from .baselines import BOUND_NAMES

    records = []
    law = bool(opt.attrs.get("law", 0))
    for task in opt["task"].values:
        for b in opt["budget"].values:
            o = opt.sel(task=task, budget=b)
            budget = _budget_dict(opt, b)
            B = budget_from_dict(budget)
            feasible = bool(o["chinchilla_feasible"])
            chin = _design(o, "chinchilla", prob, B)
            chin["feasible"] = feasible
            chin["metric_k1"] = interval(o["chinchilla_metric_k1"], prob)
            bounds = {name: _share(o[f"bounds_{name}"]) for name in BOUND_NAMES if f"bounds_{name}" in o}
            rec: dict[str, Any] = {
                "task": str(task),
                "budget": budget,
                **{name: interval(o[name], prob) for name in ("N", "D", "k", "tokens_per_param", "metric")},
                "metric_name": metric_name,
                "metric_includes": "law" if law else "law and checkpoint scatter (a new run)",
                "recommended": _design(o, "recommended", prob, B),
                "chinchilla": chin,
                "train_optimal": _design(o, "train_optimal", prob, B),
                "p_beats_chinchilla": _share(o["p_beats_chinchilla"]),
                "p_beats_train_optimal": _share(o["p_beats_train_optimal"]),
                "bounds": {k: v for k, v in bounds.items() if np.isfinite(v) and v > 0},
                "constraints": json.loads(opt.attrs.get("constraints", "{}")),
            }
            if "epochs" in o:  # unique_tokens set: passes over the unique data, D/U
                rec["epochs"] = interval(o["epochs"], prob)
                rec["recommended"]["epochs"] = float(o["recommended_epochs"])
                rec["repetition"] = json.loads(opt.attrs.get("repetition", "{}"))
            if "extrapolation_efolds" in o:
                rec["extrapolation"] = extrapolation_record(o, prob)
                if opt.attrs.get("extrapolation_design"):  # repeated data: at the effective (N', D')
                    rec["extrapolation"]["design"] = opt.attrs["extrapolation_design"]
                scale = json.loads(opt.attrs.get("discrepancy_scale_by_task", "{}")).get(
                    str(task), float(opt.attrs.get("discrepancy_scale", 0.0)))  # this task's own, if per task
                rec["discrepancy"] = discrepancy_record(o, rec, scale, prob)
            records.append(rec)
    return records


#: quantities whose interval width is measured in log (they span decades); the metric's on its own scale
LOG_WIDTH = ("N", "D", "k", "tokens_per_param")


def extrapolation_record(o: xr.Dataset, prob: float) -> dict[str, Any]:
    """Where each draw's optimum lies relative to the fitted data: decades beyond the data's range in params,
    tokens and compute 6ND (0 inside), and the e-folds the discrepancy grows with (median and interval)."""
    out: dict[str, Any] = {axis: interval(o[f"extrapolation_{axis}"], prob)
                           for axis in ("params", "tokens", "compute", "tokens_per_param")
                           if f"extrapolation_{axis}" in o}
    out["efolds"] = interval(o["extrapolation_efolds"], prob)
    out["unit"] = "decades beyond the fitted data's range (efolds: e-folds, the discrepancy's distance)"
    return out


#: relative widths below this are float rounding of one value (e.g. D = C/(6N) at a fixed N), counted as 0
WIDTH_RTOL = 1e-9


def interval_width(summary: dict[str, float], log: bool) -> float:
    """upper - lower of an `interval` summary, in log for quantities that span decades; 0 for a width below
    `WIDTH_RTOL` relative to the value (rounding, not spread)."""
    lo, hi = summary["lower"], summary["upper"]
    if log:
        width = float(np.log(hi) - np.log(lo)) if lo > 0 and hi > 0 else float("nan")
        return 0.0 if abs(width) < WIDTH_RTOL else width
    width = float(hi - lo)
    return 0.0 if abs(width) < WIDTH_RTOL * max(abs(lo), abs(hi)) else width


def width_share(width: float, width_without: float) -> float:
    """The share of an interval's width that the discrepancy makes: (W - W0) / W, W with the discrepancy and
    W0 with z = 0 (same draws, same seed); 0 when both are 0, NaN when W = 0 < W0 or either is undefined.
    Not clipped: a negative share means the discrepancy narrowed the interval (docs/decisions.md)."""
    if not (np.isfinite(width) and np.isfinite(width_without)):
        return float("nan")
    if width == 0.0:
        return 0.0 if width_without == 0.0 else float("nan")
    return float((width - width_without) / width)


def discrepancy_record(o: xr.Dataset, rec: dict[str, Any], scale: float, prob: float) -> dict[str, Any]:
    """The discrepancy scale the optimum inherited and, per quantity, the share of its interval's width that
    comes from it (0 for every quantity when the scale is 0: nothing is bent)."""
    names = ("N", "D", "k", "tokens_per_param", "metric")
    if "N_no_discrepancy" not in o:
        return {"scale": scale, "share": {n: 0.0 for n in names}}
    without = {n: interval(o[f"{n}_no_discrepancy"], prob) for n in names}
    return {"scale": scale,
            "share": {n: width_share(interval_width(rec[n], n in LOG_WIDTH), interval_width(without[n], n in LOG_WIDTH))
                      for n in names},
            "without": without}


def _budget_dict(opt: xr.Dataset, b: Any) -> dict[str, Any]:
    """The JSON `budget` object (`Budget.as_dict`) of budget b, from the optimum's budget coordinates."""
    coords = opt["budget"].sel(budget=b).coords
    out: dict[str, Any] = {}
    for name in ("kind", "train_flops", "inference_flops", "total_flops", "queries", "tokens_per_sample",
                 *SERVING_DEFAULTS):
        if name in coords:
            value = coords[name].item()
            if isinstance(value, float) and not np.isfinite(value):
                continue
            out[name] = value if isinstance(value, (str, bool)) else float(value)
    prices = {name: coords[f"{name}_price"].item() for name in ("train", "prefill", "decode")
              if f"{name}_price" in coords}
    if prices and all(np.isfinite(v) for v in prices.values()):
        out["prices"] = {k: float(v) for k, v in prices.items()}
    return budget_from_dict(out).as_dict()


def extrapolation_lines(records: list[dict]) -> list[str]:
    """One line per record that says how far beyond the fitted data the optimum lies and how much of each
    interval's width the law's discrepancy makes (the CLI prints them; the report's headline shows them)."""
    lines = []
    for r in records:
        ex, disc = r.get("extrapolation"), r.get("discrepancy")
        if not ex:
            continue

        def dec(axis: str) -> str:
            i = ex[axis]
            return f"{i['median']:.2f} [{i['lower']:.2f}, {i['upper']:.2f}]"

        where = ("the optimum's effective design (N', D' of the repeated data)" if ex.get("design") == "effective"
                 else "the optimum")
        text = (f"task '{r['task']}': {where} lies {dec('params')} decades beyond the data in parameters, "
                f"{dec('tokens')} in tokens, {dec('compute')} in compute (median [{ex['params']['prob']:.0%} "
                f"interval]); ")
        if disc and disc.get("scale", 0.0) > 0:
            shares = ", ".join(f"{label} {_pct(disc['share'][name])}" for name, label in
                               (("N", "N*"), ("D", "D*"), ("k", "k*"), ("metric", r.get("metric_name", "metric"))))
            text += (f"the law's discrepancy beyond the data (sd {disc['scale']:.3g} of "
                     f"{discrepancy_unit(r.get('metric_name'))} per e-fold) makes "
                     f"this share of each interval's width: {shares}")
        else:
            text += "no discrepancy term (scale 0): the intervals assume the law holds that far"
        lines.append(text)
    return lines


def _pct(x: float) -> str:
    return "n/a" if not np.isfinite(x) else f"{x:.0%}"


def prediction_records(pred: xr.DataArray, points: list[dict[str, float]], metric_name: str,
                       prob: float = 0.9) -> list[dict]:
    """One record per (point, task): median and interval of the metric."""
    records = []
    for i, point in enumerate(points):
        for task in pred["task"].values:
            s = interval(pred.isel(point=i).sel(task=task), prob)
            rec = {"task": str(task), "params": point["params"], "tokens": point["tokens"],
                   "k": point["k"], "metric_name": metric_name, "median": s["median"],
                   "lower": s["lower"], "upper": s["upper"], "prob": prob}
            if "unique_tokens" in point:  # a run on repeated data (NaN: fresh)
                rec["unique_tokens"] = point["unique_tokens"]
            records.append(rec)
    return records


def bound_warnings(records: list[dict]) -> list[str]:
    """One line per task and bound that a share of posterior draws' optima sit on (records of
    `optimum_records` or `decide.decision_records`), plus one per infeasible Chinchilla baseline and per
    negative regret (a per-draw optimum beaten on its own law: a bug, reported rather than clipped)."""
    lines = []
    for r in records:
        cons = r.get("constraints", {})
        src = cons.get("min_params_source", "default")
        where = {"min_params": f"the smallest model considered ({cons.get('min_params', float('nan')):.3g} "
                               f"parameters, {'set by --min-params' if src == 'user' else 'a tenth of the smallest model in the data' if src == 'data' else 'the default'}; change with --min-params)",
                 "max_params": f"--max-params {cons.get('max_params') or float('nan'):.3g}",
                 "k_max": f"--k-max {cons.get('k_max') or float('nan'):.0f}",
                 "max_tokens": f"the data wall (--max-tokens {cons.get('max_tokens') or float('nan'):.3g})",
                 "k_beyond_data": "a k beyond the largest k in the data (the sampling term is extrapolated)"}
        for name, share in r.get("bounds", {}).items():
            verb = "sits at" if name == "k_beyond_data" else "sits on"
            lines.append(f"task '{r['task']}': the optimum of {share:.0%} of posterior draws {verb} "
                         f"{where.get(name, name)}; there the bound, not the law, decides")
        chin = r.get("chinchilla", {})
        if chin.get("feasible") is False:
            lines.append(f"task '{r['task']}': the Chinchilla baseline (D = 20 N) is infeasible at this budget: no "
                         f"model of at least the smallest size considered, trained on 20 tokens per parameter, "
                         f"fits the budgets and constraints with one sample per query; its metric and "
                         f"P(beats Chinchilla) are n/a")
        for design in ("chosen", "chinchilla", "train_optimal", "median_optimum"):
            neg = r.get(design, {}).get("negative_regret") if isinstance(r.get(design), dict) else None
            if neg and np.isfinite(neg.get("share", np.nan)) and neg["share"] > 0:
                lines.append(f"task '{r['task']}': the {design.replace('_', ' ')} design beats the per-draw "
                             f"optimum on its own law in {neg['share']:.1%} of draws (regret down to "
                             f"{neg['min']:.3g}): the optimizer missed those optima; regrets are shown unclipped")
    return lines
