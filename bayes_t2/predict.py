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
                k: float = 1, unique_tokens: float | None = None) -> list[dict[str, float]]:
    """Points from a CSV (columns params, tokens, optional k, optional unique_tokens) or one point from
    options; validated. unique_tokens (0 < U <= tokens; blank or NaN: fresh data) is kept only when given."""
    if path is None:
        frame, source = pd.DataFrame({"params": [params], "tokens": [tokens], "k": [k]}), "options"
        if unique_tokens is not None and not (isinstance(unique_tokens, float) and np.isnan(unique_tokens)):
            frame["unique_tokens"] = [unique_tokens]
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
        if "unique_tokens" in frame.columns:
            raw = getattr(row, "unique_tokens")
            blank = raw is None or (isinstance(raw, str) and not raw.strip()) or (isinstance(raw, float) and np.isnan(raw))
            v = np.nan if blank else pd.to_numeric(raw, errors="coerce")
            if not blank and not (np.isfinite(v) and 0 < v <= values["tokens"]):
                raise InputError(f"must be a positive number <= tokens ({values['tokens']:g}), got {raw!r}",
                                 source=source, row=i if path is not None else None, column="unique_tokens")
            values["unique_tokens"] = float(v)
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
    if any("unique_tokens" in p for p in points):  # runs on repeated data: the data-constrained law
        from .repetition import repeated_fit

        U = xr.DataArray([p.get("unique_tokens", np.nan) for p in points], coords={"point": dim}, dims="point")
        fit = repeated_fit(fit, U, seed)
    pred = fit.metric_at(N, D, K, new_checkpoint=new_checkpoint, seed=seed)
    return prediction_records(pred, points, fit.route.metric_name, prob)


# ------------------------------------------------------------------------------- metric draws at designs
class SharedEffects:
    """A stand-in for `numpy.random.Generator` in `route.metric(..., rng=...)`: each request for random
    numbers of shape (S, M) (S posterior draws x M designs) is drawn for the S draws alone and repeated over
    the M designs. So every design sees the same fresh checkpoint effect in a given draw (common random
    numbers): comparisons between designs (P(beats), regret, the best design) are not blurred by noise drawn
    independently per design, and the same seed gives the same effects whatever the designs."""

    def __init__(self, seed: int, n_samples: int, n_designs: int) -> None:
        self._rng = np.random.default_rng(seed)
        self._shape = (n_samples, n_designs)

    def _shared(self, draw, size) -> np.ndarray:
        size = tuple(np.atleast_1d(size)) if size is not None else ()
        if size != self._shape:
            raise ValueError(f"SharedEffects expects draws x designs {self._shape}, got {size}")
        return np.broadcast_to(draw((self._shape[0], 1)), size)

    def standard_normal(self, size=None) -> np.ndarray:
        return self._shared(lambda s: self._rng.standard_normal(s), size)

    def standard_t(self, df, size=None) -> np.ndarray:
        return self._shared(lambda s: self._rng.standard_t(df, s), size)


def metric_draws(fit, coefficients: xr.Dataset, N, D, k, *, law: bool = False, seed: int = 0) -> np.ndarray:
    """The metric of every posterior draw at every design -> array [S, M].

    coefficients: one task's posterior (the route's coefficient and noise variables) with a single sample
    dim `sample` of size S; N, D, k: arrays broadcastable to [S, M] (a fixed design is a column, a per-draw
    design a column of S values). law=False (default): what a newly trained run would show, the law plus a
    fresh checkpoint effect per draw drawn with `seed` and shared by all designs (`SharedEffects`), exactly
    as `Fit.predict(new_checkpoint=True)` draws it; law=True: the law alone."""
    route = fit.route
    S = coefficients.sizes["sample"]
    N, D, k = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in (N, D, k)))
    if N.ndim == 1:
        N, D, k = N[None, :], D[None, :], k[None, :]
    M = N.shape[1]
    N, D, k = (np.broadcast_to(x, (S if x.shape[0] == S else 1, M)) for x in (N, D, k))

    def arr(x: np.ndarray) -> xr.DataArray:
        return xr.DataArray(x, dims=("sample", "design")) if x.shape[0] == S else \
            xr.DataArray(x[0], dims=("design",))

    names = list(route.coefficient_names) + ([] if law else [v for v in route.noise_names if v in coefficients])
    coefs = coefficients[names]
    for name in names:  # data constants stored per draw (e.g. the fitted data's range): one copy
        da = coefs[name]
        if "sample" in da.dims and da.ndim > 1 and "task" not in da.dims and bool((da == da.isel(sample=0)).all()):
            coefs[name] = da.isel(sample=0, drop=True)
    if law:
        out = route.metric(coefs, arr(N), arr(D), arr(k))
    else:
        out = route.metric(coefs, arr(N), arr(D), arr(k), rng=SharedEffects(seed, S, M), spec=fit.spec)
    out = out.transpose("sample", "design") if isinstance(out, xr.DataArray) else out
    return np.broadcast_to(np.asarray(out, dtype=float), (S, M)).copy()
