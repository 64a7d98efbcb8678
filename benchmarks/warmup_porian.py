"""The under-training law on Porian et al.'s IsoFLOP runs: PSIS-LOO of the law with and without the warm-up
(`[warmup] enabled = "on"` vs "off"), per training configuration, on all of its runs.

    PYTHONPATH=. python benchmarks/warmup_porian.py [--configs CONFIG,...] [--draws 300]

Prints one line per configuration: elpd_loo of each fit, the difference and its standard error (positive:
the warm-up law predicts left-out runs better), the posterior median and 90% interval of w (warm-up tokens
per parameter), each fit's noise sd sigma and max r-hat. docs/backtest.md quotes the results; the backtests
of the same configurations come from `backtest_real.py --priors loss=FILE` with a file that sets
`[warmup] enabled = "on"`.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO  # noqa: E402
from backtest_real import DATA, PORIAN_CONFIGS  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default=",".join(PORIAN_CONFIGS))
    parser.add_argument("--draws", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    path = DATA / "porian_isoflop_losses.csv"
    if not path.exists():
        print(f"skipped: no shared data at {path}")
        return 0
    warnings.filterwarnings("ignore")
    sys.path.insert(0, str(REPO))
    from bayes_t2.criticism import compare_fits
    from bayes_t2.data import from_frame
    from bayes_t2.fit import SamplerSettings, fit

    frame = pd.read_csv(path)
    settings = SamplerSettings(draws=args.draws, tune=args.draws, chains=2, seed=args.seed, pointwise=True)
    for config in args.configs.split(","):
        data = from_frame(frame[frame["task"] == config][["task", "params", "tokens", "loss"]], source=config)
        fits = {name: fit(data, settings=settings, progressbar=False, discrepancy=0.0,
                          priors={"warmup": {"enabled": name}}) for name in ("off", "on")}
        table, _ = compare_fits({f"warmup {k}": v for k, v in fits.items()})
        w = fits["on"].posterior["warmup"].values.ravel()
        diff = table.loc["warmup off", "elpd_diff"] - table.loc["warmup on", "elpd_diff"]
        dse = float(table.loc[table.index[1], "dse"])
        print(f"{config}: {len(data.frame)} runs; elpd_loo off {table.loc['warmup off', 'elpd']:.1f}, on "
              f"{table.loc['warmup on', 'elpd']:.1f}; on - off {-diff:.1f} (se {dse:.1f}); bad Pareto k off "
              f"{table.loc['warmup off', 'n_bad_k']}, on {table.loc['warmup on', 'n_bad_k']}; w median {np.median(w):.2f} "
              f"[{np.quantile(w, 0.05):.2f}, {np.quantile(w, 0.95):.2f}]; sigma off "
              f"{float(fits['off'].posterior['sigma'].median()):.4f}, on {float(fits['on'].posterior['sigma'].median()):.4f}; "
              f"max r-hat off {fits['off'].diagnostics().max_rhat:.3f}, on {fits['on'].diagnostics().max_rhat:.3f}",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
