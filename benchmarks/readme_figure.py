"""The README's headline figure: the optimum (N*, D*, tokens/param, k*) against compute for the embedded example
data, with the Chinchilla design, at the T2 paper's split budget.

    python benchmarks/readme_figure.py                       # fits the example data as `make demo` does
    python benchmarks/readme_figure.py --fit reports/demo/fit.nc   # or reuse the demo's fit

Writes docs/optimum_vs_budget.png. Uses only the public API.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import bayes_t2 as bt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fit", type=Path, help="an existing fit of the example data (default: fit it)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "optimum_vs_budget.png")
    args = parser.parse_args()
    if args.fit is not None:
        fit = bt.load(args.fit)
    else:
        fit = bt.fit(bt.read_data(bt.example_data("loss")), draws=1000, tune=1000, chains=2, seed=0)
    fig, _ = bt.plots.optimum_vs_budget(fit, train_flops=2.56e19, inference_flops=2e9)
    fig.savefig(args.out, dpi=110, bbox_inches="tight")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
