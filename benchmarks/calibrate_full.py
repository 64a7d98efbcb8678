"""Full-size simulation-based calibration of the loss or accuracy route (>= 100 simulated data sets).

    PYTHONPATH=. python benchmarks/calibrate_full.py --n-sims 150 --out reports/calibration_full
    PYTHONPATH=. python benchmarks/calibrate_full.py --single-task --n-sims 200 --seed 5000 --draws 300 --tune 300 \
        --out reports/calibration_single

    PYTHONPATH=. python benchmarks/calibrate_full.py --route accuracy --n-sims 120 --draws 300 --tune 300 \
        --out reports/calibration_accuracy

`--route accuracy`: the accuracy testbed of `calibrate.default_design("accuracy")` (2 tasks, 20 Pythia-like
checkpoints, 64 problems x 128 samples, truths from `simulate.ACC_POPULATION`) at the T2 split budget.
`--single-task`: Chinchilla's case instead of the 3-task testbed: one task, k = 1 only (the k-free law, no
pooling level), the IsoFLOP + over-training design of `simulate_loss(seed=4, n_tasks=1, ks=(1,))`, N* at
2.56e19 training FLOPs with k <= 1 (the single-task test's budget, at the top of the data's compute range).

Writes calibration.{nc,json,png,pdf} into --out after every replicate (so a run stopped early still leaves
its figures), and prints the coverage table at the end. `--rescore DIR` recomputes calibration.json and the plot
from a stored DIR/calibration.nc (say after a change of the summary) without sampling. The sampler settings are smaller than a user fit's
(2 chains x 500 + 500 by default); the JSON reports the r-hat distribution over replicates.
"""

from __future__ import annotations

import argparse
import json
import time

from bayes_t2.budget import Constraints, SplitBudget
from bayes_t2.calibrate import DEFAULT_BUDGET, CalibrationDesign, calibrate, default_design, summary, write_outputs
from bayes_t2.fit import SamplerSettings
from bayes_t2.simulate import simulate_loss


def single_task_design() -> CalibrationDesign:
    frame, _ = simulate_loss(seed=4, n_tasks=1, ks=(1,))
    return CalibrationDesign("loss", frame[["params", "tokens"]], ks=(1,), n_tasks=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-sims", type=int, default=150)
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--draws", type=int, default=500)
    ap.add_argument("--tune", type=int, default=500)
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--out", default="reports/calibration_full")
    ap.add_argument("--route", default="loss", choices=("loss", "accuracy"))
    ap.add_argument("--priors", default=None, help="TOML overriding models/<route>.toml (the truth's checkpoint "
                    "deviations follow its family on the accuracy route).")
    ap.add_argument("--single-task", action="store_true", help="One task, k = 1 only (see the docstring).")
    ap.add_argument("--rescore", default=None, help="Folder with a stored calibration.nc: summarise it only.")
    args = ap.parse_args()
    if args.rescore:
        import xarray as xr

        scores = xr.load_dataset(f"{args.rescore}/calibration.nc", engine="h5netcdf")
        write_outputs(scores, args.out, overwrite=True)
        report(summary(scores))
        return
    started = time.perf_counter()

    def progress(scores, i):
        write_outputs(scores, args.out, overwrite=True)
        print(f"replicate {i + 1}/{args.n_sims} done at {time.perf_counter() - started:.0f} s, max r-hat "
              f"{float(scores['max_rhat'][-1]):.3f}, divergences {int(scores['divergences'][-1])}", flush=True)

    if args.single_task:
        design, budget = single_task_design(), SplitBudget(train_flops=2.56e19, inference_flops=1e12)
        constraints = Constraints(k_max=1)
    else:
        design, budget, constraints = default_design(args.route), DEFAULT_BUDGET, Constraints()
    scores = calibrate(design, n_sims=args.n_sims, seed=args.seed, budget=budget, constraints=constraints,
                       priors=args.priors,
                       settings=SamplerSettings(draws=args.draws, tune=args.tune, chains=args.chains,
                                                seed=args.seed), on_replicate=progress)
    report(summary(scores))


def report(summ: dict) -> None:
    print("coverage by randomised rank [95% Wilson interval]; inclusive = truth inside the interval, ends included")
    for q, r in summ["quantities"].items():
        c50, c90, i90 = r["coverage_50"], r["coverage_90"], r["inclusive_90"]
        print(f"{q:>8}: 50% -> {c50['coverage']:.3f} [{c50['wilson_lower']:.3f}, {c50['wilson_upper']:.3f}]  "
              f"90% -> {c90['coverage']:.3f} [{c90['wilson_lower']:.3f}, {c90['wilson_upper']:.3f}]  "
              f"inclusive 90% {i90['coverage']:.3f}  rank p {r['rank']['chi2_pvalue']:.3g}  "
              f"width/truth range {r.get('identification', {}).get('ratio', float('nan')):.2g}  "
              f"{'; '.join(r['flagged'])}")
    print(json.dumps(summ["diagnostics"]))


if __name__ == "__main__":
    main()
