"""Backtest on the real suites in ../shared/data: leave the largest out, score a new checkpoint's intervals.

Suites (each fitted on its own):
  porian:<configuration>  Porian et al. 2024 IsoFLOP runs of one training configuration (single task, k = 1);
                          by default the four configurations with a published IsoFLOP exponent;
  porian-runs             all fifteen configurations as tasks of one fit, every run named (its own checkpoint);
  gadre                   Gadre et al. 2024 over-trained runs, 8 validation losses x 3 corpora (24 tasks);
  pythia                  Pythia GSM8K per-problem counts (accuracy route).
Holdouts: largest-params and largest-compute, 25% of the checkpoints each (`bayes_t2.backtest.backtest`).

    PYTHONPATH=. python benchmarks/backtest_real.py [--suites porian,gadre,pythia] [--holdouts largest-params,
        largest-compute] [--draws 300 --tune 300 --chains 2] [--priors loss=FILE.toml] [--discrepancy learn|S]
        [--also-without] [--min-tokens-per-param 1] --out DIR

Writes DIR/<suite>__<holdout>.json (the `bayes-t2 backtest --json` document), DIR/<...>.png, DIR/table.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, add_backtest_options, sampler_settings  # noqa: E402

DATA = REPO.parent / "shared" / "data"
PORIAN_CONFIGS = ("rw/tuned/short/const/standard/val", "rw/base/short/chinchilla/standard/val",
                  "rw/base/long/kaplan/standard/val", "owt2/tuned/short/const/standard/val")


def suite_data(name: str, data_dir: Path, min_tokens_per_param: float = 0.0):
    """(EvalData, route) of a suite; loss suites keep only runs of at least `min_tokens_per_param`."""
    from bayes_t2.data import from_frame

    if name.startswith("porian:"):
        config = name.split(":", 1)[1]
        frame = pd.read_csv(data_dir / "porian_isoflop_losses.csv")
        rows = frame[(frame["task"] == config) & (frame["tokens"] >= min_tokens_per_param * frame["params"])]
        rows = rows[["task", "params", "tokens", "loss"]]
        return from_frame(rows, source=f"porian:{config}"), "loss"
    if name == "porian-runs":  # every configuration a task, every run its own checkpoint (a `model` name)
        frame = pd.read_csv(data_dir / "porian_isoflop_losses.csv")
        frame = frame[frame["tokens"] >= min_tokens_per_param * frame["params"]]
        frame["model"] = (frame["task"] + "|" + frame["params"].astype("int64").astype(str) + "|"
                          + frame["tokens"].astype("int64").astype(str))
        return from_frame(frame[["task", "model", "params", "tokens", "loss"]], source="porian runs"), "loss"
    if name == "gadre":
        frame = pd.read_csv(data_dir / "gadre_overtraining_losses.csv")
        frame["task"] = frame["train_data"] + "/" + frame["task"]
        frame = frame[frame["tokens"] >= min_tokens_per_param * frame["params"]]
        return from_frame(frame[["task", "model", "params", "tokens", "loss"]], source="gadre"), "loss"
    if name == "pythia":
        frame = pd.read_csv(data_dir / "pythia_gsm8k_samples.csv")
        return from_frame(frame, source="pythia_gsm8k"), "accuracy"
    raise SystemExit(f"unknown suite {name}")


def main(argv: list[str] | None = None) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bayes_t2.backtest import backtest, plot_backtest
    from bayes_t2.io import write_json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suites", default=",".join([f"porian:{c}" for c in PORIAN_CONFIGS] + ["gadre", "pythia"]))
    parser.add_argument("--holdouts", default="largest-params,largest-compute")
    add_backtest_options(parser, draws=300, tune=300)
    parser.add_argument("--priors", action="append", default=[], help="route=FILE.toml (repeatable)")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--discrepancy", default="learn", help="learn (default), spec or a number")
    parser.add_argument("--min-tokens-per-param", type=float, default=0.0,
                        help="loss suites: fit and score only runs of at least this many tokens per parameter")
    parser.add_argument("--also-without", action="store_true",
                        help="also score the same fit without the discrepancy (columns *_without): the fit is the "
                             "same (the discrepancy acts at prediction time only), so this is the 'before'")
    args = parser.parse_args(argv)
    if not args.data.exists():
        print(f"skipped: no shared data at {args.data}")
        return 0
    priors = dict(p.split("=", 1) for p in args.priors)
    args.out.mkdir(parents=True, exist_ok=True)
    warnings.filterwarnings("ignore")
    settings = sampler_settings(args.draws, args.tune, args.chains, args.seed)
    rows = []
    for suite in args.suites.split(","):
        data, route = suite_data(suite, args.data, args.min_tokens_per_param)
        for holdout in args.holdouts.split(","):
            started = time.perf_counter()
            result = backtest(data, holdout=holdout, fraction=args.fraction, route=route,
                              priors=priors.get(route), settings=settings, discrepancy=args.discrepancy)
            s = result.summary
            stem = f"{suite.replace('/', '_').replace(':', '_')}__{holdout}"
            write_json(args.out / f"{stem}.json", result.records(), overwrite=True)
            fig, _ = plot_backtest(result, title=suite)
            fig.savefig(args.out / f"{stem}.png", dpi=110)
            plt.close(fig)
            err = next(k for k in s if k.startswith("median_abs_"))
            row = {"suite": suite, "holdout": holdout, "points": s["n_points"],
                   "max_distance": round(s["max_distance"], 2), "coverage50": round(s["coverage50"], 3),
                   "coverage90": round(s["coverage90"], 3),
                   "coverage50_interval": [round(v, 3) for v in s["coverage50_interval"]],
                   "coverage90_interval": [round(v, 3) for v in s["coverage90_interval"]],
                   "median_abs_error": round(s[err], 4),
                   "error": err.replace("median_abs_", ""), "below_median": round(s["share_observed_below_median"], 2),
                   "pit_ks": round(s["pit_ks"], 3), "rhat": round(s["diagnostics"]["max_rhat"], 3),
                   "divergences": s["diagnostics"]["divergences"], "seconds": round(time.perf_counter() - started),
                   "scale": round(float(s["discrepancy"].get("scale") or 0.0), 4),
                   "inner_rhat": round(max([f["max_rhat"] for f in s["discrepancy"].get("folds", [])] or [float("nan")]), 3)}
            if args.also_without:  # the same fit scored with the scale at 0
                without = without_discrepancy(result, data, holdout, args.fraction, settings.seed)
                row.update({"coverage50_without": round(without["coverage50"], 3),
                            "coverage90_without": round(without["coverage90"], 3),
                            "median_abs_error_without": round(without[err], 4)})
            rows.append(row)
            print(json.dumps(row), flush=True)
    table = pd.DataFrame(rows)
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(str(v) for v in r) + " |" for r in table.itertuples(index=False)]
    (args.out / "table.md").write_text("\n".join(lines) + "\n")
    print(table.to_string(index=False))
    return 0


def without_discrepancy(result, data, holdout: str, fraction: float, seed: int) -> dict:
    """The summary scores of a backtest's own fit predicted with the discrepancy scale at 0."""
    import copy

    from bayes_t2.backtest import score_split, split_data, summarize

    fit = copy.copy(result.fit)
    fit.spec = {**fit.spec, "discrepancy": {**(fit.spec.get("discrepancy") or {}), "scale": 0.0}}
    scored = score_split(fit, split_data(data, holdout, fraction), seed)
    return summarize(scored, fit.route.metric_name)


if __name__ == "__main__":
    raise SystemExit(main())
