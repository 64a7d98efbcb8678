"""Posterior of the metric at user-chosen (N, D, k) points."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from .data import read_table
from .errors import InputError
from .summary import prediction_records


def read_points(path: Path | None, *, params: float | None = None, tokens: float | None = None,
                k: float = 1) -> list[dict[str, float]]:
    """Points from a CSV (columns params, tokens, optional k) or one point from options; validated."""
    if path is None:
        frame, source = pd.DataFrame({"params": [params], "tokens": [tokens], "k": [k]}), "options"
    else:
        if not Path(path).exists():
            raise InputError(f"{path}: points file not found")
        frame, source = read_table(path), str(path)  # InputError naming the file (and row) on a bad file
        missing = [c for c in ("params", "tokens") if c not in frame.columns]
        if missing:
            raise InputError(f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(frame.columns)}")
        if "k" not in frame.columns:
            frame["k"] = 1
    points = []
    for i, row in enumerate(frame.itertuples(index=False), start=1):
        values = {}
        for col in ("params", "tokens", "k"):
            v = pd.to_numeric(getattr(row, col), errors="coerce")
            if not np.isfinite(v) or v <= 0 or (col == "k" and (v < 1 or v != int(v))):
                what = "an integer >= 1" if col == "k" else "a positive number"
                raise InputError(f"must be {what}, got {getattr(row, col)!r}", source=source,
                                 row=i if path is not None else None, column=col)
            values[col] = float(v)
        points.append(values)
    if not points:
        raise InputError(f"{source}: no points to predict")
    return points


def predict_points(fit, points: list[dict[str, float]], prob: float = 0.9, *, new_checkpoint: bool = True,
                   seed: int = 0) -> list[dict]:
    """Median and interval of the metric per point and task (a new checkpoint's, or the law's alone)."""
    dim = xr.DataArray(np.arange(len(points)), dims="point")
    N = xr.DataArray([p["params"] for p in points], coords={"point": dim}, dims="point")
    D = xr.DataArray([p["tokens"] for p in points], coords={"point": dim}, dims="point")
    K = xr.DataArray([p["k"] for p in points], coords={"point": dim}, dims="point")
    pred = fit.metric_at(N, D, K, new_checkpoint=new_checkpoint, seed=seed)
    return prediction_records(pred, points, fit.route.metric_name, prob)
