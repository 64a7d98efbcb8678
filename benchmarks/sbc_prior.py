"""Simulation-based calibration from the model's prior (bayes_t2.sbc), full size, with partial results saved
after every replicate (sbc.{nc,json,png,pdf} in --out).

    python benchmarks/sbc_prior.py --route loss --n-sims 100 --seed 0 --out reports/sbc_loss
    python benchmarks/sbc_prior.py --route accuracy --n-sims 100 --seed 0 --out reports/sbc_accuracy
    python benchmarks/sbc_prior.py --route loss --priors warmup.toml --out reports/sbc_loss_warmup  # a variant
    python benchmarks/sbc_prior.py --rescore reports/sbc_loss   # re-summarise a stored sbc.nc
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import xarray as xr

from bayes_t2.fit import SamplerSettings
from bayes_t2.sbc import run_sbc, sbc_design, sbc_summary, write_sbc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--route", default="loss", choices=("loss", "accuracy"))
    ap.add_argument("--n-sims", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--draws", type=int, default=300)
    ap.add_argument("--tune", type=int, default=300)
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--n-tasks", type=int, default=None)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--priors", type=Path, default=None, help="a model file overriding models/<route>.toml")
    ap.add_argument("--rescore", type=Path, default=None, help="folder holding an sbc.nc to re-summarise")
    args = ap.parse_args()
    if args.rescore:
        scores = xr.load_dataset(args.rescore / "sbc.nc", engine="h5netcdf")
        write_sbc(scores, args.rescore, overwrite=True, seed=int(scores.attrs.get("seed", 0)))
        report(sbc_summary(scores, int(scores.attrs.get("seed", 0))))
        return
    out = args.out or Path(f"reports/sbc_{args.route}")
    design = sbc_design(args.route, n_tasks=args.n_tasks)
    print(f"SBC from the prior, {args.route} route: {design.describe()}", flush=True)
    started = time.time()

    def save(scores: xr.Dataset, i: int) -> None:
        write_sbc(scores, out, overwrite=True, seed=args.seed)
        print(f"replicate {i + 1}/{args.n_sims}: max r-hat {float(scores['max_rhat'][-1]):.3f}, "
              f"{time.time() - started:.0f} s", flush=True)

    run_sbc(design, n_sims=args.n_sims, seed=args.seed, on_replicate=save, priors=args.priors,
            settings=SamplerSettings(draws=args.draws, tune=args.tune, chains=args.chains, seed=args.seed))
    report(json.loads((out / "sbc.json").read_text()))


def report(summ: dict) -> None:
    print(f"{summ['n_replicates_ranked']} replicates x {summ['n_tasks']} tasks; diagnostics {summ['diagnostics']}")
    for q, r in summ["quantities"].items():
        p = {name: "n/a" if r[name] is None else f"{r[name]:.3g}" for name in ("chi2_pvalue", "ecdf_pvalue")}
        print(f"{q:22s} n {r['n']:4d}  chi2 p {p['chi2_pvalue']}  ECDF p {p['ecdf_pvalue']}  "
              f"50% {r['coverage_50']['coverage']:.2f}  90% {r['coverage_90']['coverage']:.2f}  mean rank {r['mean_rank']:.2f}  "
              f"unranked (ESS < 9) {r['unranked_low_ess']}")
    print("degenerate:", summ["degenerate"], "flagged:", summ["flagged"], "passes (Bonferroni):", summ["passes"])


if __name__ == "__main__":
    main()
