"""Repeated data: does the data-constrained law predict held-out, longer-repeated runs better than the
repetition-blind law, with honest intervals?

Both fits see the same training runs (the least-repeated ones) and predict the held-out, most-repeated runs
(`--holdout most-repeated`: the runs with the largest epochs D/U, whole epoch groups, `--fraction` of them):
  * U-aware: the loss route with the `unique_tokens` column (R_D* per task pooled around the published 15.4,
    R_N* where the data inform it; models/loss.toml [repetition]);
  * blind:   the same data and model with repetition.enabled = "off" (every token counted as fresh).
Scores per fit: median |relative error| of the predictive median, the 50% / 90% interval coverage and the
median width of the 90% interval relative to its median.

Data: a CSV with a unique_tokens column (task, params, tokens, unique_tokens, loss), or by default the
simulated suite `bayes_t2.simulate.simulate_repeated` (seeded).

    PYTHONPATH=. python benchmarks/backtest_repeated.py [DATA.csv] [--holdout most-repeated] [--fraction 0.25]
        [--draws 500 --tune 500 --chains 2 --seed 0] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_backtest_options, sampler_settings  # noqa: E402


def run(data, holdout: str = "most-repeated", fraction: float = 0.25, draws: int = 500, tune: int = 500,
        chains: int = 2, seed: int = 0, discrepancy: str | float = "learn") -> dict:
    """{variant: summary} for the U-aware and the repetition-blind fit (bayes_t2.backtest.backtest)."""
    from bayes_t2.backtest import backtest
    from bayes_t2.priors import load_spec

    settings = sampler_settings(draws, tune, chains, seed)
    out = {}
    for variant, enabled in (("U-aware", "auto"), ("blind", "off")):
        spec = load_spec("loss")
        spec["repetition"] = {**spec.get("repetition", {}), "enabled": enabled}
        t0 = time.time()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = backtest(data, holdout=holdout, fraction=fraction, priors=spec, settings=settings,
                           discrepancy=discrepancy)
        s = res.summary
        post = res.fit.posterior
        out[variant] = {key: s.get(key) for key in ("n_train_rows", "n_test_rows", "n_train_checkpoints",
                                                    "n_test_checkpoints", "threshold")}
        out[variant].update({"median_abs_relative_error": s["median_abs_relative_error"],
                             "mean_relative_error": s["mean_relative_error"],
                             "coverage50": s["coverage50"], "coverage90": s["coverage90"],
                             "median_width90": float(((res.points["q95"] - res.points["q05"])
                                                      / res.points["q50"]).median()),
                             "max_rhat": s["diagnostics"]["max_rhat"], "seconds": round(time.time() - t0),
                             "R_D_star": _interval(post, "R_D_star"), "R_N_star": _interval(post, "R_N_star"),
                             "discrepancy": s.get("discrepancy", {}).get("scale")})
    return out


def _interval(post, name: str):
    import numpy as np

    if name not in post:
        return None
    x = post[name].values.ravel()
    return [float(np.quantile(x, q)) for q in (0.05, 0.5, 0.95)]


def main(argv=None) -> None:
    from bayes_t2.data import from_frame, read_data
    from bayes_t2.simulate import simulate_repeated

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="?", help="CSV with a unique_tokens column (default: simulated suite)")
    ap.add_argument("--holdout", default="most-repeated")
    add_backtest_options(ap, draws=500, tune=500)
    ap.add_argument("--sim-seed", type=int, default=1)
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    data = read_data(a.data) if a.data else from_frame(simulate_repeated(a.sim_seed)[0], source="simulate_repeated")
    result = run(data, a.holdout, a.fraction, a.draws, a.tune, a.chains, a.seed)
    text = json.dumps(result, indent=1)
    print(text)
    if a.json:
        Path(a.json).write_text(text)


if __name__ == "__main__":
    main()
