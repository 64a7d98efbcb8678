"""Does a coverage's interval hold the rate behind it? Simulated backtests with a known rate.

Each scenario draws data sets of held-out checkpoints (C checkpoints of m points each; with probability rho a
point shares its checkpoint's one hit-or-miss, else it hits on its own, both at the known rate) and records how
often the 90% interval of `bayes_t2.coverage.coverage_interval` holds the rate, beside a percentile bootstrap
over the checkpoints run on the same data sets (the baseline). Nominal: 90%.

    python benchmarks/coverage_intervals.py [--reps 300] [--seed 0]
    python benchmarks/coverage_intervals.py --rescore DIR   # re-score the backtest JSONs under DIR

(docs/backtest.md, "How sure each coverage is").
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

import _common  # noqa: F401  (the repository on sys.path)
from bayes_t2.coverage import coverage_interval

#: (checkpoints, points per checkpoint (varied by +-50%), within-checkpoint correlation)
SCENARIOS = [(20, 1, 0.0), (31, 1, 0.0), (13, 20, 0.1), (13, 20, 0.5), (13, 20, 0.9), (10, 18, 0.3),
             (27, 11, 0.2), (27, 11, 0.6), (40, 5, 0.9)]
RATES = (0.5, 0.9, 0.95)


def bootstrap_interval(covered: np.ndarray, cluster: np.ndarray, rng: np.random.Generator,
                       prob: float = 0.9, resamples: int = 2000) -> tuple[float, float]:
    """The baseline: equal-tailed percentile interval of the pooled share over checkpoint resamples."""
    hits = np.bincount(cluster, weights=covered)
    sizes = np.bincount(cluster).astype(float)
    n = len(sizes)
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=resamples)
    share = (weights @ hits) / (weights @ sizes)
    tail = (1.0 - prob) / 2.0
    return float(np.quantile(share, tail)), float(np.quantile(share, 1.0 - tail))


def simulate(n_checkpoints: int, size: int, rho: float, rate: float, rng: np.random.Generator):
    sizes = rng.integers(max(1, size // 2), size * 3 // 2 + 1, n_checkpoints) if size > 1 else np.ones(n_checkpoints, int)
    cluster = np.repeat(np.arange(n_checkpoints), sizes)
    shared = (rng.random(n_checkpoints) < rate)[cluster]
    own = rng.random(cluster.size) < rate
    return np.where(rng.random(cluster.size) < rho, shared, own).astype(float), cluster


def run(reps: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for n_checkpoints, size, rho in SCENARIOS:
        for rate in RATES:
            held = {"beta-binomial": 0, "bootstrap": 0}
            for _ in range(reps):
                covered, cluster = simulate(n_checkpoints, size, rho, rate, rng)
                lo, hi = coverage_interval(covered, cluster)
                held["beta-binomial"] += lo <= rate <= hi
                lo, hi = bootstrap_interval(covered, cluster, rng)
                held["bootstrap"] += lo <= rate <= hi
            rows.append({"checkpoints": n_checkpoints, "points_each": size, "rho": rho, "rate": rate,
                         **{k: v / reps for k, v in held.items()}})
            print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def rescore(directory: Path) -> None:
    """Coverage and its interval for every backtest JSON under `directory`, as `backtest.summarize` gives them."""
    from bayes_t2.backtest import summarize

    for path in sorted(directory.rglob("*.json")):
        doc = json.loads(path.read_text())
        if not isinstance(doc, dict) or "points" not in doc:
            continue
        points = pd.DataFrame(doc["points"])
        s = summarize(points, str(points["metric_name"].iloc[0]))
        cells = [f"{level}%: {s[f'coverage{level}']:.0%} [{s[f'coverage{level}_interval'][0]:.0%}, "
                 f"{s[f'coverage{level}_interval'][1]:.0%}]" for level in ("50", "90")]
        print(f"{path.relative_to(directory)}: {s['n_points']} points ({s['n_clusters']} checkpoints), "
              + ", ".join(cells))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rescore", type=Path)
    args = parser.parse_args(argv)
    if args.rescore:
        rescore(args.rescore)
        return 0
    table = run(args.reps, args.seed)
    print(table.to_string(index=False, float_format=lambda x: f"{x:.2f}"))
    for name in ("beta-binomial", "bootstrap"):
        print(f"{name}: the 90% interval held the rate in {table[name].min():.0%}-{table[name].max():.0%} of "
              "data sets per scenario")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
