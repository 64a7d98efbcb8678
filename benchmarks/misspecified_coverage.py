"""Coverage of held-out larger models and of the optimum when the data are misspecified (bayes_t2.misspecified):
rows of a checkpoint share an effect, or the law bends beyond the fitted range; the default model (checkpoint
effect + learned discrepancy) against a plain one. Results (records and summary) are saved after every data set.

    python benchmarks/misspecified_coverage.py --n-sims 10 --seed 100 --out reports/misspecified.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd

from bayes_t2.fit import SamplerSettings
from bayes_t2.io import write_json
from bayes_t2.misspecified import CASES, replicate, summarize
from bayes_t2.simulate import T2_BUDGET


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--n-sims", type=int, default=10)
    ap.add_argument("--seed", type=int, default=100)
    ap.add_argument("--draws", type=int, default=300)
    ap.add_argument("--tune", type=int, default=300)
    ap.add_argument("--out", type=Path, default=Path("reports/misspecified.json"))
    args = ap.parse_args()
    settings = SamplerSettings(draws=args.draws, tune=args.tune, chains=2, seed=args.seed, pointwise=False)
    records: list[dict] = []
    started = time.time()
    for i in range(args.n_sims):
        for case in args.cases.split(","):
            records += replicate(case, args.seed + i, budget=T2_BUDGET, settings=settings)
            frame = pd.DataFrame(records)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            write_json(args.out, {"summary": summarize(frame), "records": records}, overwrite=True)
            print(f"data set {i + 1}/{args.n_sims} {case}: {time.time() - started:.0f} s", flush=True)
    for row in summarize(pd.DataFrame(records)):
        print(json.dumps(row))


if __name__ == "__main__":
    main()
