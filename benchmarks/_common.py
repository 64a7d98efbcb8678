"""What the backtest benchmarks share (backtest_real.py, backtest_repeated.py): the repository on sys.path,
the sampler and holdout options, and the sampler settings they build from them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def add_backtest_options(parser: argparse.ArgumentParser, *, draws: int, tune: int) -> None:
    """--fraction (held-out share, 0.25), --draws, --tune (the script's defaults), --chains (2), --seed (0)."""
    parser.add_argument("--fraction", type=float, default=0.25)
    parser.add_argument("--draws", type=int, default=draws)
    parser.add_argument("--tune", type=int, default=tune)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)


def sampler_settings(draws: int, tune: int, chains: int, seed: int):
    """The backtests' sampler settings (no pointwise log-likelihood: nothing here compares fits by LOO)."""
    from bayes_t2.fit import SamplerSettings

    return SamplerSettings(draws=draws, tune=tune, chains=chains, seed=seed, pointwise=False)
