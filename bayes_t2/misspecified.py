"""Coverage under the misspecification users meet: does a 90% interval still hold 90% when the data are not
the model's own?

Each replicate simulates a loss-route data set (`simulate.simulate_loss`: the IsoFLOP + over-training testbed,
a truth drawn from the simulator's population) with one departure from the model's independent-rows, exact-law
assumptions (`CASES`):

* ``checkpoint_effect``: every row of one checkpoint (all its tasks and k values) shares a log-loss shift of
  sd `CHECKPOINT_SD`, on top of the 1% independent noise: correlated rows.
* ``bend``: the law bends beyond the training part's largest model and token count (`simulate.bent_loss_law`,
  drift `DRIFT`: the size exponent grows by 2 x drift per e-fold past the fitted range), so larger runs do
  better than the fitted law says, as in the public suites' backtests.

The largest models are held out (`backtest.backtest`, the function behind `bayes-t2 backtest`), the model is
fitted to the rest in two configurations (`VARIANTS`: the default one with its checkpoint effect and a
discrepancy scale learned from the training part, and a plain one without either), and two things are scored:
the coverage of the 50% / 90% predictive intervals of the held-out observations (a new checkpoint's loss), and
the coverage of the optimum's N* and k* intervals (`Fit.optimize` at the budget) against the true optimum of
the true (bent) law, solved by the independent reference solver (`reference.reference_optimum_of`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .budget import Budget, Constraints
from .errors import InputError

CHECKPOINT_SD = 0.02
DRIFT = 0.05
CASES: dict[str, dict[str, float]] = {"checkpoint_effect": {"checkpoint_sd": CHECKPOINT_SD},
                                      "bend": {"drift": DRIFT}}
VARIANTS = ("default", "plain")
PROBS = (0.5, 0.9)
DESIGN_KW = dict(n_tasks=2, ks=(1, 4, 16, 64), noise=0.01)


def simulate_case(case: str, seed: int, holdout: str = "largest-params", fraction: float = 0.25
                  ) -> tuple[pd.DataFrame, dict]:
    """(frame, truth) of one replicate of `case`; the bend starts at the training part's largest params and
    tokens (so the held-out part is where the law bends)."""
    from .backtest import split_data
    from .data import from_frame
    from .simulate import simulate_loss

    if case not in CASES:
        raise InputError(f"case must be one of {', '.join(CASES)}, got {case!r}")
    frame0, truth = simulate_loss(seed, **DESIGN_KW)
    ckpt = frame0[["model", "params", "tokens"]].drop_duplicates()
    kw: dict[str, Any] = {}
    if case == "checkpoint_effect":
        kw["checkpoint_sd"] = CASES[case]["checkpoint_sd"]
    else:
        train = split_data(from_frame(frame0, source="sim"), holdout, fraction).train.frame
        kw["bend"] = {"drift": CASES[case]["drift"], "params": float(train["params"].max()),
                      "tokens": float(train["tokens"].max())}
    return simulate_loss(seed, truth=truth, checkpoints=ckpt, ks=DESIGN_KW["ks"], noise=DESIGN_KW["noise"], **kw)


def true_optimum(truth: dict, budget: Budget, constraints: Constraints) -> pd.DataFrame:
    """The true law's optimum per task (N, D, k, loss), bent or not, from the independent reference solver."""
    from .laws import LOSS_COEFFICIENTS, loss_law
    from .reference import reference_optimum_of
    from .simulate import bent_loss_law

    tasks = sorted(truth["tasks"])
    theta = np.array([[truth["tasks"][t][c] for c in LOSS_COEFFICIENTS] for t in tasks], dtype=float)
    bend = truth.get("bend")

    def objective(th: np.ndarray, N: np.ndarray, D: np.ndarray, k: np.ndarray) -> np.ndarray:
        c = {name: th[:, j, None] for j, name in enumerate(LOSS_COEFFICIENTS)}
        if bend is None:
            return loss_law(*(c[n] for n in LOSS_COEFFICIENTS), N, D, k)
        return bent_loss_law(c, N, D, k, **bend)

    out = reference_optimum_of(objective, theta, budget, constraints)
    return pd.DataFrame(out, index=tasks, columns=["N", "D", "k", "loss"])


def _variant_spec(variant: str) -> tuple[dict, str | float]:
    from .priors import load_spec

    spec = load_spec("loss")
    if variant == "default":
        return spec, "learn"
    if variant == "plain":
        spec["checkpoint_effect"] = {**spec.get("checkpoint_effect", {}), "enabled": "off"}
        return spec, 0.0
    raise InputError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")


def replicate(case: str, seed: int, *, budget: Budget, settings: Any, constraints: Constraints = Constraints(),
              variants: Sequence[str] = VARIANTS, holdout: str = "largest-params", fraction: float = 0.25
              ) -> list[dict[str, Any]]:
    """One simulated data set of `case`, backtested under each variant: one record per (variant, task) with
    the held-out points' coverage and the optimum's coverage."""
    from .backtest import backtest
    from .data import from_frame

    frame, truth = simulate_case(case, seed, holdout, fraction)
    data = from_frame(frame, source=f"{case}-{seed}")
    resolved = constraints.resolve_min_params(float(frame["params"].min()))
    truth_opt = true_optimum(truth, budget, resolved)
    records = []
    for variant in variants:
        spec, discrepancy = _variant_spec(variant)
        res = backtest(data, holdout=holdout, fraction=fraction, priors=spec, settings=settings, seed=seed,
                       discrepancy=discrepancy)
        opt = res.fit.optimize([budget], resolved).isel(budget=0)
        for task in truth_opt.index:
            pts = res.points[res.points["task"] == task]
            rec = {"case": case, "seed": seed, "variant": variant, "task": task, "n_points": int(len(pts)),
                   "points_covered50": int(pts["covered50"].sum()), "points_covered90": int(pts["covered90"].sum()),
                   "median_abs_relative_error": float(np.median(np.abs(pts["error"]))),
                   "mean_relative_error": float(np.mean(pts["error"])),
                   "max_rhat": res.summary["diagnostics"]["max_rhat"],
                   "discrepancy_scale": (res.summary.get("discrepancy") or {}).get("scale")}
            for q in ("N", "k"):
                draws = np.asarray(opt[q].sel(task=task).values, dtype=float).ravel()
                draws = draws[np.isfinite(draws)]
                t = float(truth_opt.loc[task, q])
                rec[f"true_{q}"], rec[f"median_{q}"] = t, float(np.median(draws))
                for p in PROBS:
                    lo, hi = np.quantile(draws, [(1 - p) / 2, (1 + p) / 2])
                    rec[f"{q}_covered{round(100 * p)}"] = bool(lo <= t <= hi)
            records.append(rec)
    return records


def summarize(records: pd.DataFrame) -> list[dict[str, Any]]:
    """Per (case, variant): coverage of the held-out points' and the optimum's 50% / 90% intervals, with 95%
    Wilson intervals (points of one data set are correlated, so the points' interval is optimistic)."""
    from .calibrate import wilson

    rows = []
    for (case, variant), g in records.groupby(["case", "variant"], sort=False):
        row: dict[str, Any] = {"case": case, "variant": variant, "n_datasets": int(g["seed"].nunique()),
                               "n_points": int(g["n_points"].sum()), "n_optima": int(len(g))}
        for p in ("50", "90"):
            hits, n = int(g[f"points_covered{p}"].sum()), int(g["n_points"].sum())
            row[f"points_{p}"] = _cov(hits, n, wilson)
            for q in ("N", "k"):
                row[f"{q}_{p}"] = _cov(int(g[f"{q}_covered{p}"].sum()), int(len(g)), wilson)
        row["median_abs_relative_error"] = float(g["median_abs_relative_error"].median())
        row["mean_relative_error"] = float(g["mean_relative_error"].mean())
        row["median_max_rhat"] = float(g["max_rhat"].median())
        rows.append(row)
    return rows


def _cov(hits: int, n: int, wilson) -> dict[str, float]:
    lo, hi = wilson(hits, n)
    return {"coverage": hits / n if n else math.nan, "wilson_lower": lo, "wilson_upper": hi, "n": n}


def to_json(records: pd.DataFrame) -> str:
    return json.dumps({"summary": summarize(records), "records": records.to_dict(orient="records")}, indent=1,
                      default=float)
