"""How far can any rule for a symmetric discrepancy scale go? Score every scale on the held-out points themselves.

`discrepancy_forms.py` learns the scale inside each row's training part and scores it on the held-out part.
This script asks the question the other way round, on the same caches: for each suite x holdout row, which
scales s -- the library's form, an extra Normal(0, (s x)^2) on log loss at x e-folds beyond the data -- would
put the held-out coverages inside the targets (50% intervals 40-60%, 90% intervals 80-95%)? The answer bounds
every rule that picks one symmetric scale per row, however it learns it:

  * `feasible`: the scales (on a grid) at which both targets hold; "none" when no scale does. A row whose
    held-out points lie on one side of the median cannot be centred by a symmetric term of any size.
  * `s90`: the smallest scale at which the 90% intervals cover at least 90% (0 when they already do at 0) --
    the scale the row needed -- beside `s_learned`, the maximum-likelihood scale of the inner folds (what the
    library uses with one task). Their rank correlation across rows says whether the inner folds carry the
    size of the outer miss at all.
  * the cells a single constant scale would win across all rows (the best constant in hindsight: an upper
    bound for any rule that ignores the data), and the cells of the best scale per row in hindsight (an upper
    bound for any rule of this form).
  * the same with a signed shift in hindsight (the held-out points' own median log residual per e-fold, added
    as mu x): what knowing the sign and size of the miss would buy.
  * the least-squares slope (through 0) of the log residual on the distance, inside the training part (the
    inner folds) and beyond it (the held-out part): whether the miss the data show inside themselves has the
    sign of the one beyond, counted over all rows and over the rows whose held-out points lie mostly on one
    side of the median (`ONE_SIDED`), the rows a signed correction would have to centre.

The held-out points decide every "hindsight" number here, so none of them is a method: they measure how much
of the gap to the targets a scale rule could close, and how much needs the sign the inner folds do not carry.

    PYTHONPATH=. python benchmarks/discrepancy_forms.py --suites porian:...,... --out DIR --forms "current (ML s)"
    PYTHONPATH=. python benchmarks/discrepancy_oracle.py DIR [DIR ...] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from discrepancy_forms import REPLICATES, _inner, inside  # noqa: E402

#: scales scored per row (sd of log loss per e-fold beyond the data)
SCALES = np.concatenate([[0.0], np.geomspace(1e-3, 1.0, 91)])


def coverages(log_draws: np.ndarray, obs: np.ndarray, x: np.ndarray, scales: np.ndarray, seed: int,
              shift: np.ndarray | None = None) -> np.ndarray:
    """(len(scales), 2) coverages of the 50% and 90% intervals with the symmetric term s x added to log loss
    (one standard-normal draw per predictive draw and replicate, the same for every s: common random numbers),
    plus an optional fixed shift per point."""
    rng = np.random.default_rng(seed)
    base = np.tile(log_draws, REPLICATES)
    z = rng.standard_normal(base.shape)
    if shift is not None:
        base = base + shift[:, None]
    log_obs = np.log(obs)
    out = np.empty((len(scales), 2))
    for i, s in enumerate(scales):
        q = np.quantile(base + z * (s * x)[:, None], [0.05, 0.25, 0.75, 0.95], axis=1)
        out[i] = [np.mean((q[1] <= log_obs) & (log_obs <= q[2])), np.mean((q[0] <= log_obs) & (log_obs <= q[3]))]
    return out


#: a row is one-sided when at least this share of its held-out points lies on one side of the median
ONE_SIDED = 0.8


def one_sided(below_median: np.ndarray) -> np.ndarray:
    """Rows whose held-out points lie at least `ONE_SIDED` on one side of the median (the shares are ratios of
    counts, so 6 of 30 must count: a small tolerance)."""
    below_median = np.asarray(below_median, float)
    return np.maximum(below_median, 1 - below_median) >= ONE_SIDED - 1e-9


def slope_through_origin(residual: np.ndarray, efolds: np.ndarray) -> float:
    """Least-squares slope of log residuals on the distance beyond the data, with no intercept (a law's miss
    is 0 at the data's edge): log loss per e-fold."""
    return float(residual @ efolds / (efolds @ efolds))


def n_inside(c50: float, c90: float) -> int:
    """How many of a row's two coverages lie inside their targets (its cells)."""
    return sum(inside(c50, c90))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = pd.Series(a).rank().to_numpy(), pd.Series(b).rank().to_numpy()
    return float(np.corrcoef(ra, rb)[0, 1])


def permutation_p(a: np.ndarray, b: np.ndarray, seed: int, n: int = 10_000) -> float:
    """One-sided p-value of a rank correlation at least as large as observed, under independence."""
    rng = np.random.default_rng(seed)
    ra, rb = pd.Series(a).rank().to_numpy(), pd.Series(b).rank().to_numpy()
    observed = np.corrcoef(ra, rb)[0, 1]
    null = np.array([np.corrcoef(ra, rng.permutation(rb))[0, 1] for _ in range(n)])
    return float((1 + np.sum(null >= observed)) / (n + 1))


def analyse_row(cache: dict[str, np.ndarray], holdout: str, seed: int) -> tuple[dict, np.ndarray]:
    """One row's hindsight numbers (and, with fold predictions cached, the frontier trend's coverages), and its
    coverages at every scale in `SCALES`."""
    from bayes_t2.discrepancy import fit_discrepancy_scale

    obs, x, log_draws = cache["outer_obs"], cache["outer_x"], cache["outer_log_draws"]
    median = np.median(log_draws, axis=1)
    trend: dict[str, tuple[float, float, float]] = {}
    cov = coverages(log_draws, obs, x, SCALES, seed)
    ok = np.array([all(inside(a, b)) for a, b in cov])
    reach = np.nonzero(cov[:, 1] >= 0.90)[0]
    inner_r, inner_v, inner_x = _inner(cache)
    s_learned = fit_discrepancy_scale(inner_r, inner_v, inner_x)
    learned = coverages(log_draws, obs, x, np.array([s_learned]), seed)[0]
    # a signed shift in hindsight: the held-out points' own median log residual per e-fold
    resid = np.log(obs) - median
    mu = float(np.median(resid[x > 0] / x[x > 0])) if np.any(x > 0) else 0.0
    shifted = coverages(log_draws, obs, x, SCALES, seed, shift=mu * x)
    if "fold_outer_median" in cache:
        shift = frontier_shift(cache, holdout)
        for name, factor in (("trend", 1.0), ("trend_half", 0.5)):
            for label, s in (("", 0.0), ("+s", s_learned)):
                c50, c90 = coverages(log_draws, obs, x, np.array([s]), seed, shift=factor * shift)[0]
                med = np.exp(median + factor * shift)
                trend[f"{name}{label}"] = (c50, c90, float(np.median(np.abs(med / obs - 1))))
    row = {"points": len(obs), "below_median": float(np.mean(resid < 0)),
           "inner_slope": slope_through_origin(inner_r, inner_x), "inner_max_x": float(inner_x.max()),
           "outer_slope": slope_through_origin(resid, x), "outer_max_x": float(x.max()),
           "s_learned": s_learned, "learned_50": learned[0], "learned_90": learned[1],
           "s90": float(SCALES[reach[0]]) if len(reach) else float("inf"),
           "feasible": (f"{SCALES[ok].min():.3g}-{SCALES[ok].max():.3g}" if ok.any() else "none"),
           "zero_50": cov[0, 0], "zero_90": cov[0, 1],
           "hindsight_scale_cells": max(n_inside(a, b) for a, b in cov),
           "mu_hindsight": mu,
           "hindsight_shift_cells": max(n_inside(a, b) for a, b in shifted),
           "error": float(np.median(np.abs(np.exp(median) / obs - 1)))}
    for name, (c50, c90, err) in trend.items():
        row[f"{name}_50"], row[f"{name}_90"], row[f"{name}_err"] = c50, c90, err
    return row, cov


AXIS = {"largest-params": 0, "largest-compute": 2}  # column of `RANGE_AXES` each holdout extrapolates along


def frontier_shift(cache: dict[str, np.ndarray], holdout: str) -> np.ndarray:
    """Not hindsight: how each held-out point's median log prediction moved as the training data's frontier
    grew (the inner folds' fits, then the training part's), carried on to the point's own coordinate. Per
    point, the least-squares slope b of the fits' median log predictions on their frontiers f_j (the largest
    log params or log 6ND each fit saw), times (the point's log params or log 6ND - the training part's
    frontier): a Richardson-style extrapolation of the extrapolation. Zero where the folds did not move the
    frontier."""
    axis = AXIS[holdout]
    frontier = cache["fold_range"][:, axis, 1]
    medians = cache["fold_outer_median"]  # fits x points
    if np.ptp(frontier) <= 0:
        return np.zeros(medians.shape[1])
    fc = frontier - frontier.mean()
    slope = (fc @ (medians - medians.mean(axis=0))) / (fc @ fc)
    log_n, log_d = np.log(cache["outer_params"]), np.log(cache["outer_tokens"])
    coordinate = log_n if axis == 0 else np.log(6.0) + log_n + log_d
    return slope * np.maximum(coordinate - frontier[-1], 0.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("caches", type=Path, nargs="+", help="directories of discrepancy_forms.py caches")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    rows, covs = [], []
    for directory in args.caches:
        for path in sorted(directory.glob("*.npz")):
            row, cov = analyse_row(dict(np.load(path)), path.stem.rsplit("__", 1)[1], args.seed)
            rows.append({"row": path.stem, **row})
            covs.append(cov)
    if not rows:
        print("no caches")
        return 0
    table = pd.DataFrame(rows)
    cells = np.array([[n_inside(a, b) for a, b in cov] for cov in covs])  # rows x scales
    learned_cells = sum(n_inside(a, b) for a, b in zip(table["learned_50"], table["learned_90"]))
    best_constant = int(np.argmax(cells.sum(axis=0)))
    finite = np.isfinite(table["s90"].to_numpy())
    summary = {
        "rows": len(table),
        "cells_learned": int(learned_cells),
        "cells_best_constant": int(cells[:, best_constant].sum()),
        "best_constant_scale": float(SCALES[best_constant]),
        "cells_hindsight_scale_per_row": int(table["hindsight_scale_cells"].sum()),
        "rows_with_a_feasible_scale": int((table["feasible"] != "none").sum()),
        "cells_hindsight_shift_and_scale": int(table["hindsight_shift_cells"].sum()),
        "spearman_learned_vs_s90": spearman(table["s_learned"][finite], table["s90"][finite]),
        "p_value": permutation_p(table["s_learned"][finite].to_numpy(), table["s90"][finite].to_numpy(), args.seed),
        "rows_s90_finite": int(finite.sum()),
    }
    same_sign = np.sign(table["inner_slope"]) == np.sign(table["outer_slope"])
    sided = one_sided(table["below_median"])
    summary.update({"slope_same_sign": int(same_sign.sum()), "rows_one_sided": int(sided.sum()),
                    "slope_same_sign_one_sided": int((same_sign & sided).sum())})
    for name in ("trend", "trend+s", "trend_half", "trend_half+s"):
        if f"{name}_50" in table:
            summary[f"cells_{name}"] = sum(n_inside(a, b) for a, b in zip(table[f"{name}_50"], table[f"{name}_90"]))
            summary[f"median_error_{name}"] = float(table[f"{name}_err"].median())
    summary["median_error"] = float(table["error"].median())
    pd.set_option("display.width", 250)
    print(table.round(3).to_string(index=False))
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "rows": table.to_dict(orient="records")}, indent=1,
                                        default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
