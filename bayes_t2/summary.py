"""Turn posterior results (per-draw optimum, predictions) into the records of DESIGN.md's JSON formats."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

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


def optimum_records(opt: xr.Dataset, metric_name: str, lower_is_better: bool, prob: float = 0.9) -> list[dict]:
    """One record per (task, budget): N, D, k, tokens/param, metric with intervals, Chinchilla, P(beats it)."""
    records = []
    for task in opt["task"].values:
        for b in opt["budget"].values:
            o = opt.sel(task=task, budget=b)
            t2, chin = o["metric"], o["chinchilla_metric"]
            beats = (t2 < chin) if lower_is_better else (t2 > chin)
            valid = np.isfinite(t2) & np.isfinite(chin)
            rec: dict[str, Any] = {
                "task": str(task),
                "budget": _budget_dict(opt, b),
                **{name: interval(o[name], prob) for name in ("N", "D", "k", "tokens_per_param", "metric")},
                "metric_name": metric_name,
                "chinchilla": {
                    "N": float(o["chinchilla_N"].max()), "D": float(o["chinchilla_D"].max()),
                    "k": float(o["chinchilla_k"].max()),
                    "metric": interval(chin, prob), "metric_k1": interval(o["chinchilla_metric_k1"], prob),
                },
                "p_beats_chinchilla": float(beats.where(valid).mean()) if bool(valid.any()) else float("nan"),
            }
            records.append(rec)
    return records


def _budget_dict(opt: xr.Dataset, b: Any) -> dict[str, Any]:
    coords = opt["budget"].sel(budget=b).coords
    out = {}
    for name in ("kind", "train_flops", "inference_flops", "total_flops", "queries", "tokens_per_sample"):
        if name in coords:
            value = coords[name].item()
            if isinstance(value, float) and not np.isfinite(value):
                continue
            out[name] = value if isinstance(value, str) else float(value)
    return out


def prediction_records(pred: xr.DataArray, points: list[dict[str, float]], metric_name: str,
                       prob: float = 0.9) -> list[dict]:
    """One record per (point, task): median and interval of the metric."""
    records = []
    for i, point in enumerate(points):
        for task in pred["task"].values:
            s = interval(pred.isel(point=i).sel(task=task), prob)
            records.append({"task": str(task), "params": point["params"], "tokens": point["tokens"],
                            "k": point["k"], "metric_name": metric_name, "median": s["median"],
                            "lower": s["lower"], "upper": s["upper"], "prob": prob})
    return records
