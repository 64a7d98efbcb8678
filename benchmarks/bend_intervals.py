"""How much the optimum's intervals widen when the optimizer inherits the law's discrepancy beyond the data.

Per suite: the discrepancy scale is learned from the data's own leave-the-largest-out structure
(`backtest.learn_discrepancy`, largest compute held out), the model is fitted to all the data with that scale,
and `Fit.optimize` solves budgets beyond the data. Each optimize returns both the bent optimum and the same
draws with z = 0 (same seed), so the table compares the 90% interval widths of N*, D*, k* and the metric with
and without the discrepancy, and the share of the width it makes (docs/decisions.md). Recorded in
docs/backtest.md.

    PYTHONPATH=. python benchmarks/bend_intervals.py --out reports/bend   # demo (learned, and 0.05), Porian, Gadre

(fits are saved in --out and reused by a second run; `demo@0.05` is the demo's fit with the scale fixed.)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data"
SUITES = ("demo", "demo@0.05", "porian:rw/base/short/chinchilla/standard/val",
          "porian:rw/base/long/kaplan/standard/val", "gadre:c4_original")
#: budgets beyond the data, as multiples of the data's largest training compute 6ND
MULTIPLES = (10.0, 100.0)


def suite_data(name: str, data_dir: Path):
    from bayes_t2.data import from_frame, read_data
    from bayes_t2.resources import data_dir as bundled

    if name == "demo":
        return read_data(bundled() / "default_loss.csv")
    if name.startswith("porian:"):
        config = name.split(":", 1)[1]
        frame = pd.read_csv(data_dir / "porian_isoflop_losses.csv")
        return from_frame(frame[frame["task"] == config][["task", "params", "tokens", "loss"]], source=name)
    if name.startswith("gadre:"):
        corpus = name.split(":", 1)[1]
        frame = pd.read_csv(data_dir / "gadre_overtraining_losses.csv")
        frame = frame[(frame["train_data"] == corpus) & frame["task"].isin(["c4_val", "paloma_falcon-refinedweb"])]
        return from_frame(frame[["task", "model", "params", "tokens", "loss"]], source=name)
    raise SystemExit(f"unknown suite {name}")


def _width(rec: dict, log: bool) -> float:
    lo, hi = rec["lower"], rec["upper"]
    return float(np.log(hi / lo)) if log else float(hi - lo)


def main(argv: list[str] | None = None) -> int:
    from bayes_t2.backtest import learn_discrepancy
    from bayes_t2.budget import SplitBudget
    from bayes_t2.fit import Fit, SamplerSettings, fit
    from bayes_t2.priors import load_spec
    from bayes_t2.summary import optimum_records

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suites", default=",".join(SUITES))
    parser.add_argument("--draws", type=int, default=300)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--holdout", default="largest-compute")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    settings = SamplerSettings(draws=args.draws, tune=args.draws, chains=args.chains, seed=args.seed,
                               pointwise=False)
    rows = []
    for name in args.suites.split(","):
        started = time.time()
        suite, _, fixed = name.partition("@")  # demo@0.05: the demo's fit with a fixed scale
        data = suite_data(suite, args.data)
        saved = args.out / (suite.replace(":", "_").replace("/", "_") + ".nc")
        if saved.exists():  # the fit (with its learned scale in the spec) from an earlier run
            result = Fit.load(saved)
        else:
            learned = learn_discrepancy(data, args.holdout, 0.25, settings=settings, seed=args.seed)
            spec = load_spec("loss", None)
            spec["discrepancy"] = {**spec.get("discrepancy", {}), "scale": learned["scale"]}
            result = fit(data, priors=spec, settings=settings, progressbar=False)
            result.save(saved, overwrite=True)
        if fixed:
            result.spec = {**result.spec, "discrepancy": {"scale": float(fixed)}}
        scale = float(result.spec["discrepancy"]["scale"])
        frame = data.frame
        cmax = float((6.0 * frame["params"] * frame["tokens"]).max())
        # the T2 per-query budget where the data measure k; else one that does not cap N (k is moot)
        inference = 2e9 if (frame["k"] > 1).any() else 1e13
        budgets = [SplitBudget(m * cmax, inference) for m in MULTIPLES]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opt = result.optimize(budgets, seed=args.seed)
        diag = result.diagnostics()
        for rec in optimum_records(opt, "loss", True, 0.9):
            disc = rec["discrepancy"]
            row = {"suite": name, "task": rec["task"], "train_flops": rec["budget"]["train_flops"],
                   "x_data_compute": rec["budget"]["train_flops"] / cmax, "scale": scale,
                   "inference_flops": inference,
                   "efolds": rec["extrapolation"]["efolds"]["median"],
                   "decades_params": rec["extrapolation"]["params"]["median"],
                   "max_rhat": diag.max_rhat}
            for q in ("N", "D", "k", "metric"):
                log = q != "metric"
                w, w0 = _width(rec[q], log), _width(disc.get("without", rec)[q], log) if "without" in disc else None
                row[f"{q}_width"] = w
                row[f"{q}_width0"] = w0 if w0 is not None else w
                row[f"{q}_share"] = disc["share"][q]
            rows.append(row)
        print(f"{name}: scale {scale:.4g}, {time.time() - started:.0f} s", flush=True)
        pd.DataFrame(rows).to_csv(args.out / "bend_intervals.csv", index=False)
    table = pd.DataFrame(rows)
    (args.out / "bend_intervals.json").write_text(json.dumps(rows, indent=1))
    print(table.to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
