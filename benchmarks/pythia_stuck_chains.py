"""Pythia GSM8K (accuracy route): which fits of a backtest's training part have a chain stuck in the stiff corner
(token exponent beta ~ 5-6, step size ~1e-5, every draw at the 1023-step tree limit), by where the chains start:
nutpie's default jittered start, the prior's support point (no jitter), the MAP (L-BFGS from the support point)
or the mean of a mean-field ADVI fit (3000 steps), each with uniform(-0.1, 0.1) jitter on the unconstrained scale.

    PYTHONPATH=. python benchmarks/pythia_stuck_chains.py largest-params:0 largest-compute:1 [--start jitter|support|map|advi]
        [--upper 10]      # the exponents' bound on their log (default: models/accuracy.toml's log 2; 10: none)

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
    parser.add_argument("--start", choices=("jitter", "support", "map", "advi"), default="jitter")
    parser.add_argument("--draws", type=int, default=300)
    parser.add_argument("--upper", type=float, default=None,
                        help="the exponents' bound on their log (models/accuracy.toml; e.g. 10 for none)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    if args.start == "support":
        import nutpie

        compile_model = nutpie.compile_pymc_model
        nutpie.compile_pymc_model = lambda model, **kw: compile_model(model, jitter_rvs=set(), **kw)
    elif args.start in ("map", "advi"):
        start_from_point(args.start)
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
        priors = None if args.upper is None else {"priors": {name: {"upper": args.upper}
                                                              for name in ("log_alpha", "log_beta")}}
        result = fit(train, settings=settings, progressbar=False, discrepancy=0.0, priors=priors)
        stats = result.tree["sample_stats"].to_dataset()
        print(json.dumps({"fit": spec, "start": args.start, "seconds": round(time.perf_counter() - started),
                          "max_rhat": round(result.diagnostics().max_rhat, 3),
                          "logp": stats["logp"].mean("draw").values.round(0).tolist(),
                          "step_size": stats["step_size"].mean("draw").values.round(5).tolist(),
                          "beta": result.posterior["beta"].mean(["draw", "task"]).values.round(2).tolist()}),
              flush=True)
    return 0


def start_from_point(how: str, jitter: float = 0.1, advi_steps: int = 3000) -> None:
    """Make bayes_t2's nutpie runs start every chain near one point of the unconstrained space: the MAP or the
    mean of a mean-field ADVI fit (seeded with the fit's seed), plus uniform jitter seeded per chain."""
    import dataclasses

    import numpy as np
    import nutpie
    import pymc as pm

    import bayes_t2.samplers as samplers

    run = samplers._sample_nutpie

    def patched(model, key, *, seed, **kwargs):
        with model:
            if how == "map":
                point = pm.find_MAP(progressbar=False, seed=seed)
            else:
                approx = pm.fit(n=advi_steps, method="advi", progressbar=False, random_seed=seed)
                point = {name: value.values for name, value in approx.mean_data.data_vars.items()}
        names = [model.rvs_to_values[v].name for v in model.free_RVs]
        start = np.concatenate([np.asarray(point[name], float).ravel() for name in names])
        compile_model = nutpie.compile_pymc_model

        def compile_near(m, **kw):
            compiled = compile_model(m, **kw)
            return dataclasses.replace(compiled, initial_point_func=lambda s: start + np.random.default_rng(s).uniform(
                -jitter, jitter, start.shape))

        nutpie.compile_pymc_model = compile_near
        samplers.clear_cache()
        try:
            return run(model, key, seed=seed, **kwargs)
        finally:
            nutpie.compile_pymc_model = compile_model

    samplers._sample_nutpie = patched


if __name__ == "__main__":
    raise SystemExit(main())
