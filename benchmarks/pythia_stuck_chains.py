"""Pythia GSM8K (accuracy route): which fits of a backtest's training part have a chain stuck in the stiff corner
(token exponent beta ~ 5-6, step size ~1e-5, every draw at the 1023-step tree limit), with nutpie's default
jittered start and with every chain started at the prior's support point (no jitter).

    PYTHONPATH=. python benchmarks/pythia_stuck_chains.py largest-params:0 largest-compute:1 [--no-jitter]

Each argument is HOLDOUT:SEED (25% held out, 2 chains x 300 + 300 draws); prints one JSON line per fit: max
r-hat, seconds, and per chain the mean log density, step size and beta. docs/backtest.md quotes the results.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fits", nargs="+", help="HOLDOUT:SEED")
    parser.add_argument("--no-jitter", action="store_true", help="start every chain at the support point")
    parser.add_argument("--draws", type=int, default=300)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    if args.no_jitter:
        import nutpie

        compile_model = nutpie.compile_pymc_model
        nutpie.compile_pymc_model = lambda model, **kw: compile_model(model, jitter_rvs=set(), **kw)
    from backtest_real import DATA, suite_data

    from bayes_t2.backtest import split_data
    from bayes_t2.fit import SamplerSettings, fit

    if not DATA.exists():
        print(f"skipped: no shared data at {DATA}")
        return 0
    data, _ = suite_data("pythia", DATA)
    for spec in args.fits:
        holdout, seed = spec.split(":")
        train = split_data(data, holdout, 0.25).train
        settings = SamplerSettings(draws=args.draws, tune=args.draws, chains=2, seed=int(seed), pointwise=False)
        started = time.perf_counter()
        result = fit(train, settings=settings, progressbar=False, discrepancy=0.0)
        stats = result.tree["sample_stats"].to_dataset()
        print(json.dumps({"fit": spec, "jitter": not args.no_jitter, "seconds": round(time.perf_counter() - started),
                          "max_rhat": round(result.diagnostics().max_rhat, 3),
                          "logp": stats["logp"].mean("draw").values.round(0).tolist(),
                          "step_size": stats["step_size"].mean("draw").values.round(5).tolist(),
                          "beta": result.posterior["beta"].mean(["draw", "task"]).values.round(2).tolist()}),
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
