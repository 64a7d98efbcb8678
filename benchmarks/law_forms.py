"""Does another law form know which way the library's law misses beyond the data?

The inner folds of a backtest carry the size of the law's miss beyond the data but not its sign
(docs/backtest.md, "Discrepancy forms tried"). This script asks whether the *form* of the law does: on each
suite x holdout row it fits three forms to the training part by robust least squares on log loss (soft-L1,
`STARTS` seeded starts, the best kept) and predicts the held-out runs:

  * `C`  E + A/N^alpha + B/D^beta                          the library's law (Chinchilla's form);
  * `K`  E + ((A/N^alpha)^(1/beta) + B/D)^beta             Kaplan et al.'s joint form, with a floor;
  * `P`  E + (A/N^alpha + B/D^beta)^g                      C's reducible loss raised to a power (C at g = 1).

Per row: each form's median relative error on the held-out runs; `toward_K`, `toward_P`, the share of held-out
runs at which that form's prediction lies on the side of the observation from C's (the sign of the miss);
`gap_over_miss`, the median gap between K's or P's log prediction and C's (the larger) over the median
|log miss| of C; `chosen`, the form with the smallest median error on the inner folds (the same leave-the-largest-out folds the
library learns its discrepancy from: `backtest.INNER_FOLD_SHARES`), and its outer error, a cross-validated
choice of form. With `--caches DIR` (the caches of `discrepancy_forms.py`: the library's posterior predictive
of the same held-out runs), it also scores intervals that use the forms' disagreement, against the library's
learned scale (`learned`):

  * `spread+s`   a symmetric term of sd sqrt(d^2 + (s x)^2), d the largest |log prediction of K or P - that of C|;
  * `toward+s`   every draw moved a uniform fraction of the way toward K's or P's prediction (one of the two
                 at random), plus the learned term s x z: an interval stretched toward where the other forms lie.

    PYTHONPATH=. python benchmarks/law_forms.py --suites porian:CONFIG,... [--caches DIR] [--json OUT.json]

Prints one line per row and a summary (counts of rows, of 30 on Porian's 15 configurations x 2 holdouts). A
suite of several tasks (`gadre`) gives a row per task and holdout, each task's runs split and fitted alone.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

sys.path.insert(0, str(Path(__file__).resolve().parent))
from backtest_real import DATA, PORIAN_CONFIGS, suite_data  # noqa: E402
from discrepancy_forms import REPLICATES, _inner, _scores, inside  # noqa: E402
from discrepancy_oracle import one_sided  # noqa: E402

from bayes_t2.data import from_frame  # noqa: E402
from bayes_t2.backtest import DEFAULT_FRACTION, INNER_FOLD_SHARES, distinct_splits, split_data  # noqa: E402
from bayes_t2.discrepancy import fit_discrepancy_scale  # noqa: E402

FORMS = ("C", "K", "P")
#: random starts per least-squares fit (the best is kept)
STARTS = 40
#: soft-L1 scale on log loss: residuals beyond ~2% count linearly, so a few runs stopped inside their warm-up
#: do not steer the fit
F_SCALE = 0.02


def log_law(form: str, p: np.ndarray, n: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Log loss of `form` at params n and tokens d (both relative to the data's geometric means), in
    log-sum-exp form; p = (log E, log A, log alpha, log B, log beta[, log g]) (K: the fifth is log beta)."""
    log_n, log_d = np.log(n), np.log(d)
    if form == "C":
        e, a, alpha, b, beta = p
        return np.logaddexp.reduce([np.full_like(log_n, e), a - np.exp(alpha) * log_n,
                                    b - np.exp(beta) * log_d], axis=0)
    if form == "K":
        e, a, alpha, b, beta = p
        inner = np.logaddexp((a - np.exp(alpha) * log_n) / np.exp(beta), b - log_d)
        return np.logaddexp(e, np.exp(beta) * inner)
    e, a, alpha, b, beta, g = p
    return np.logaddexp(e, np.exp(g) * np.logaddexp(a - np.exp(alpha) * log_n, b - np.exp(beta) * log_d))


def fit_form(form: str, params: np.ndarray, tokens: np.ndarray, loss: np.ndarray,
             seed: int = 0) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The best of `STARTS` robust least-squares fits of `form` to log loss; returns its log prediction."""
    rng = np.random.default_rng(seed)
    n0, d0 = np.exp(np.mean(np.log(params))), np.exp(np.mean(np.log(tokens)))
    n, d, y = params / n0, tokens / d0, np.log(loss)
    level = np.median(y)
    centre = np.array([level - 1.0, level - 1.5, np.log(0.3), level - 1.5, np.log(0.3), 0.0])[:6 if form == "P" else 5]
    best = None
    for _ in range(STARTS):
        with np.errstate(all="ignore"):
            result = least_squares(lambda p: log_law(form, p, n, d) - y, centre + rng.normal(0.0, 1.0, centre.size),
                                   loss="soft_l1", f_scale=F_SCALE)
        if np.isfinite(result.cost) and (best is None or result.cost < best.cost):
            best = result
    return lambda N, D: log_law(form, best.x, N / n0, D / d0)


def _fit_all(frame: pd.DataFrame, seed: int) -> dict[str, Callable]:
    return {f: fit_form(f, *(frame[c].to_numpy(float) for c in ("params", "tokens", "loss")), seed=seed)
            for f in FORMS}


def _median_error(log_pred: np.ndarray, log_obs: np.ndarray) -> float:
    return float(np.median(np.abs(np.expm1(log_pred - log_obs))))


def analyse_row(data, holdout: str, fraction: float = DEFAULT_FRACTION, seed: int = 0) -> tuple[dict, pd.DataFrame]:
    """One row's numbers and its held-out runs with each form's log prediction (columns log_C, log_K, log_P)."""
    split = split_data(data, holdout, fraction)
    inner, _ = distinct_splits(split.train, [(holdout, fraction * share) for share in INNER_FOLD_SHARES])
    inner_miss = {f: [] for f in FORMS}
    for _, _, fold in inner:
        fits = _fit_all(fold.train.frame, seed)
        test = fold.test.frame
        for f in FORMS:
            inner_miss[f].append(fits[f](test.params.to_numpy(float), test.tokens.to_numpy(float))
                                 - np.log(test.loss.to_numpy(float)))
    fits = _fit_all(split.train.frame, seed)
    test = split.test.frame[["params", "tokens", "loss"]].reset_index(drop=True)
    log_obs = np.log(test.loss.to_numpy(float))
    for f in FORMS:
        test[f"log_{f}"] = fits[f](test.params.to_numpy(float), test.tokens.to_numpy(float))
    miss = log_obs - test.log_C.to_numpy()
    row = {"points": len(test), "below_C": float(np.mean(miss < 0))}
    for f in FORMS:
        row[f"error_{f}"] = _median_error(test[f"log_{f}"].to_numpy(), log_obs)
        row[f"inner_error_{f}"] = (float(np.median(np.abs(np.expm1(np.concatenate(inner_miss[f])))))
                                   if inner_miss[f] else float("nan"))
        if f != "C":
            row[f"toward_{f}"] = float(np.mean(np.sign(test[f"log_{f}"].to_numpy() - test.log_C.to_numpy())
                                               == np.sign(miss)))
    gap = np.max([np.abs(test[f"log_{f}"].to_numpy() - test.log_C.to_numpy()) for f in FORMS[1:]], axis=0)
    row["gap_over_miss"] = float(np.median(gap) / np.median(np.abs(miss)))
    known = [f for f in FORMS if np.isfinite(row[f"inner_error_{f}"])]
    row["chosen"] = min(known, key=lambda f: row[f"inner_error_{f}"]) if known else "C"
    row["error_chosen"] = row[f"error_{row['chosen']}"]
    return row, test


def score_with_cache(cache: dict[str, np.ndarray], test: pd.DataFrame, seed: int) -> dict[str, float]:
    """Coverages of the library's predictive (learned scale) and of the two intervals built on the forms'
    disagreement, on the cached posterior draws of the same held-out runs (matched by params and tokens)."""
    rng = np.random.default_rng(seed)
    keys = [f"{n:.9g}|{d:.9g}" for n, d in zip(cache["outer_params"], cache["outer_tokens"])]
    by_key = test.assign(key=[f"{n:.9g}|{d:.9g}" for n, d in zip(test.params, test.tokens)]).drop_duplicates("key")
    aligned = by_key.set_index("key").reindex(keys)
    if aligned["log_C"].isna().any():
        raise ValueError("the cache's held-out runs are not this split's")
    alt = np.stack([aligned[f"log_{f}"].to_numpy() - aligned.log_C.to_numpy() for f in FORMS[1:]])
    base = np.tile(cache["outer_log_draws"], REPLICATES)
    z = rng.standard_normal(base.shape)
    x = cache["outer_x"]
    s = fit_discrepancy_scale(*_inner(cache))
    spread = np.abs(alt).max(axis=0)
    fraction = rng.uniform(0.0, 1.0, base.shape[1])
    which = rng.integers(0, len(alt), base.shape[1])
    candidates = {
        "learned": base + z * (s * x)[:, None],
        "spread+s": base + z * np.sqrt(spread ** 2 + (s * x) ** 2)[:, None],
        "toward+s": base + (fraction[:, None] * alt[which]).T + z * (s * x)[:, None],
    }
    out = {"scale": s}
    for name, log_draws in candidates.items():
        scores = _scores(np.exp(log_draws), cache["outer_obs"], {})
        out[f"{name}_50"], out[f"{name}_90"] = scores["coverage50"], scores["coverage90"]
    return out


def summarize(table: pd.DataFrame) -> dict:
    sided = one_sided(table.below_C)  # at least 80% of the held-out runs on one side of C's prediction
    summary = {"rows": len(table), "rows_one_sided": int(sided.sum()),
               "median_error": {f: float(table[f"error_{f}"].median()) for f in (*FORMS, "chosen")},
               "chosen_beats_C": int((table.error_chosen < table.error_C - 1e-12).sum()),
               "chosen_worse_than_C": int((table.error_chosen > table.error_C + 1e-12).sum()),
               "gap_over_miss_median": float(table.gap_over_miss.median()),
               "rows_gap_within_2x_of_miss": int(table.gap_over_miss.between(0.5, 2.0).sum())}
    for f in FORMS[1:]:
        toward = table[f"toward_{f}"] > 0.5
        summary[f"rows_{f}_toward"] = int(toward.sum())
        summary[f"rows_{f}_toward_one_sided"] = int((toward & sided).sum())
        summary[f"rows_{f}_beats_C"] = int((table[f"error_{f}"] < table.error_C).sum())
    for name in ("learned", "spread+s", "toward+s"):
        if f"{name}_50" in table:
            flags = [inside(a, b) for a, b in zip(table[f"{name}_50"], table[f"{name}_90"])]
            summary[f"cells_{name}"] = [int(sum(f[0] for f in flags)), int(sum(f[1] for f in flags))]
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suites", default=",".join(f"porian:{c}" for c in PORIAN_CONFIGS))
    parser.add_argument("--holdouts", default="largest-params,largest-compute")
    parser.add_argument("--fraction", type=float, default=DEFAULT_FRACTION)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--caches", type=Path, help="discrepancy_forms.py caches of the same rows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    rows = []
    for suite in args.suites.split(","):
        data, route = suite_data(suite, args.data)
        if route != "loss":
            print(f"{suite}: skipped (loss suites only)")
            continue
        tasks = sorted(data.frame["task"].unique())
        for task, holdout in [(t, h) for t in tasks for h in args.holdouts.split(",")]:
            # several tasks: each task's runs are a row of their own (the forms are fitted task by task)
            task_data = data if len(tasks) == 1 else from_frame(
                data.frame.loc[data.frame["task"] == task, ["task", "params", "tokens", "loss"]], source=task)
            row, test = analyse_row(task_data, holdout, args.fraction, args.seed)
            row = {"suite": suite if len(tasks) == 1 else f"{suite}:{task}", "holdout": holdout, **row}
            stem = f"{suite.replace(':', '_').replace('/', '_')}__{holdout}.npz"
            if args.caches and len(tasks) == 1 and (args.caches / stem).exists():
                row.update(score_with_cache(dict(np.load(args.caches / stem)), test, args.seed))
            rows.append(row)
            print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
    if not rows:
        return 0
    table = pd.DataFrame(rows)
    summary = summarize(table)
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "rows": rows}, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
