"""Benchmark: what grows with scale. Accuracy-route fit time against problems and distinct cells, and the peak
memory of the optimizer sweep on a large posterior.

    python benchmarks/bench_scale.py [--problems 1e3,1e4,1e5,1e6] [--memory-draws 100000 --memory-budgets 200]
    python benchmarks/bench_scale.py --tiny        # seconds: the smoke test tests/test_benchmarks.py runs

1. Fit: per-problem counts are simulated from the model's generative process (`simulate_accuracy_population`:
   checkpoints scatter around the law; `--no-deviations`: exactly on the default law, `simulate_samples`;
   2 tasks, a 5 x 5 Pythia-like checkpoint grid, 32 samples per problem), collapsed to distinct (task,
   checkpoint, n_samples, n_correct) cells (`collapse_samples`, the sufficient statistics), and the accuracy
   model is sampled with nutpie (compile time reported apart). Sampling time follows the number of cells,
   which saturates at tasks x checkpoints x (n_samples + 1), not the number of problems.
2. Memory: `optimize` on draws x budgets in a fresh subprocess each (peak RSS from resource.getrusage, minus
   the same process's peak before the sweep): the whole sweep held at once (`Fit.optimize`) against the
   records solved a chunk of budgets at a time, with the posterior chunked over draws by dask
   (`Fit.optimum_records`). The two must give the same records (checked on a subset).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GRID = [(n, d) for n in (14e6, 160e6, 1.0e9, 2.8e9, 12e9) for d in (2_097_152.0 * s for s in (32, 1000, 10_000,
                                                                                             30_000, 143_000))]


def fit_accuracy(n_problems_total: int, *, n_tasks: int, n_samples: int, draws: int, tune: int, seed: int,
                 checkpoints=GRID, deviations: bool = True) -> dict:
    """Simulate ~n_problems_total per-problem rows, collapse them, fit; timings and sizes.

    deviations: the model's own generative process (a truth from `ACC_POPULATION`, each checkpoint off the law
    as real checkpoints are); False: every checkpoint exactly on the default law, a corner the model's
    deviation terms fit badly once counts are huge (README)."""
    from bayes_t2 import samplers
    from bayes_t2.routes.accuracy import accuracy_config, build_accuracy_model, collapse_samples, \
        simulate_samples
    from bayes_t2.simulate import simulate_accuracy_population

    per = max(1, round(n_problems_total / (n_tasks * len(checkpoints))))
    if deviations:
        frame, _ = simulate_accuracy_population(seed, checkpoints, n_tasks=n_tasks, n_problems=per,
                                                n_samples=n_samples)
    else:
        frame, _ = simulate_samples(seed, n_tasks=n_tasks, checkpoints=checkpoints, n_problems=per,
                                    n_samples=n_samples)
    t0 = time.perf_counter()
    cells = collapse_samples(frame)
    collapse_s = time.perf_counter() - t0
    spec = accuracy_config()
    model = build_accuracy_model(cells, spec)
    key = samplers.model_key("accuracy", json.dumps(spec, sort_keys=True), model, "nutpie")
    t0 = time.perf_counter()
    tree = samplers.sample(model, key, sampler="nutpie", draws=draws, tune=tune, chains=2, seed=seed,
                           target_accept=0.9, progressbar=False)
    total = time.perf_counter() - t0
    compile_s = samplers.stats.last_compile_seconds
    stats = tree["sample_stats"].to_dataset()
    return {"problems": len(frame), "cells": len(cells), "collapse_s": collapse_s, "compile_s": compile_s,
            "sample_s": total - compile_s, "divergences": int(stats["diverging"].sum()),
            "steps_per_draw": float(stats["n_steps"].mean()) if "n_steps" in stats else float("nan")}


# ----------------------------------------------------------------------------------------------- memory
def fake_fit(n_draws: int, n_tasks: int, seed: int = 0):
    """A loss-route Fit whose posterior is n_draws random coefficient sets (the optimizer's input only)."""
    import xarray as xr

    from bayes_t2.fit import FIT_FORMAT, Fit
    from bayes_t2.laws import LOSS_COEFFICIENTS
    from bayes_t2.priors import load_spec, spec_to_json

    rng = np.random.default_rng(seed)
    lo = {"E": 0.5, "A": 50, "alpha": 0.2, "B": 50, "beta": 0.2, "G": 0.2, "gamma": 0.1}
    hi = {"E": 3.0, "A": 2000, "alpha": 0.6, "B": 5000, "beta": 0.6, "G": 2.0, "gamma": 0.8}
    post = xr.Dataset({name: (("chain", "draw", "task"), rng.uniform(lo[name], hi[name], (1, n_draws, n_tasks)))
                       for name in LOSS_COEFFICIENTS},
                      coords={"chain": [0], "draw": np.arange(n_draws), "task": [f"t{i}" for i in range(n_tasks)]})
    tree = xr.DataTree.from_dict({"posterior": post})
    tree.attrs.update({"bayes_t2_format": FIT_FORMAT, "route": "loss", "model_spec": spec_to_json(load_spec("loss")),
                       "scaling": "{}"})
    return Fit(tree)


def budgets(n: int):
    from bayes_t2.budget import SplitBudget

    return [SplitBudget(float(c), float(i)) for c, i in zip(np.geomspace(1e19, 1e24, n), np.geomspace(1e9, 1e14, n))]


def memory_child(mode: str, n_draws: int, n_budgets: int, n_tasks: int, draws_per_chunk: int,
                 budgets_per_chunk: int) -> dict:
    """Run in a fresh process: peak RSS of one way of solving all budgets (MB above the pre-sweep peak)."""
    import resource

    import dask

    from bayes_t2.optimum import sweep_kernel
    from bayes_t2.summary import optimum_records

    result = fake_fit(n_draws, n_tasks)
    todo = budgets(n_budgets)
    sweep_kernel()
    result.optimize(todo[:1], None)  # warm: kernel loaded, imports done
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    if mode == "all-at-once":
        opt = result.optimize(todo)
        records = optimum_records(opt, "loss", True)
    else:
        with dask.config.set(scheduler="threads"):
            records = result.optimum_records(todo, budgets_per_chunk=budgets_per_chunk,
                                             draws_per_chunk=draws_per_chunk)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    probe = [(r["task"], r["budget"]["train_flops"], r["N"]["median"], r["metric"]["upper"]) for r in records[::37]]
    return {"mode": mode, "peak_mb": peak - base, "base_mb": base, "seconds": seconds, "records": len(records),
            "probe": probe}


def measure_memory(n_draws: int, n_budgets: int, n_tasks: int, draws_per_chunk: int, budgets_per_chunk: int):
    out = []
    for mode in ("all-at-once", "chunked"):
        cmd = [sys.executable, __file__, "--memory-child", mode, "--memory-draws", str(n_draws), "--memory-budgets",
               str(n_budgets), "--memory-tasks", str(n_tasks), "--draws-per-chunk", str(draws_per_chunk),
               "--budgets-per-chunk", str(budgets_per_chunk)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        out.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", default="1e3,1e4,1e5,1e6", help="total per-problem rows, comma-separated")
    ap.add_argument("--tasks", type=int, default=2)
    ap.add_argument("--n-samples", type=int, default=32, help="samples per problem")
    ap.add_argument("--draws", type=int, default=500)
    ap.add_argument("--tune", type=int, default=500)
    ap.add_argument("--memory-draws", type=int, default=100_000)
    ap.add_argument("--memory-budgets", type=int, default=200)
    ap.add_argument("--memory-tasks", type=int, default=1)
    ap.add_argument("--draws-per-chunk", type=int, default=25_000)
    ap.add_argument("--budgets-per-chunk", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-fit", action="store_true", help="memory part only")
    ap.add_argument("--no-deviations", action="store_true", help="fit part: checkpoints exactly on the law "
                    "(default: the model's generative process, with checkpoint deviations)")
    ap.add_argument("--tiny", action="store_true", help="seconds-long smoke run (tests)")
    ap.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.memory_child:
        print(json.dumps(memory_child(args.memory_child, args.memory_draws, args.memory_budgets, args.memory_tasks,
                                      args.draws_per_chunk, args.budgets_per_chunk)))
        return 0
    if args.tiny:
        args.problems, args.draws, args.tune = "200,2000", 100, 100
        args.memory_draws, args.memory_budgets, args.draws_per_chunk, args.budgets_per_chunk = 2000, 12, 500, 5
    ok = True
    if not args.skip_fit:
        checkpoints = GRID[::6] if args.tiny else GRID
        print(f"accuracy route, {args.tasks} tasks x {len(checkpoints)} checkpoints, {args.n_samples} samples per "
              f"problem, checkpoints {'on the law' if args.no_deviations else 'off the law (deviations)'}, "
              f"nutpie 2 chains x {args.tune}+{args.draws}")
        print(f"{'problems':>10} {'cells':>7} {'collapse s':>10} {'compile s':>9} {'sample s':>8} "
              f"{'steps/draw':>10} {'div':>4}")
        rows = []
        for p in [int(float(x)) for x in args.problems.split(",")]:
            r = fit_accuracy(p, n_tasks=args.tasks, n_samples=args.n_samples, draws=args.draws, tune=args.tune,
                             seed=args.seed, checkpoints=checkpoints, deviations=not args.no_deviations)
            rows.append(r)
            print(f"{r['problems']:>10,} {r['cells']:>7,} {r['collapse_s']:>10.3f} {r['compile_s']:>9.1f} "
                  f"{r['sample_s']:>8.1f} {r['steps_per_draw']:>10.1f} {r['divergences']:>4}", flush=True)
        cap = args.tasks * len(checkpoints) * (args.n_samples + 1)
        print(f"cells are bounded by tasks x checkpoints x (n_samples + 1) = {cap:,}; problems grew "
              f"{rows[-1]['problems'] / rows[0]['problems']:,.0f}x, cells {rows[-1]['cells'] / rows[0]['cells']:.1f}x, "
              f"sampling time {rows[-1]['sample_s'] / rows[0]['sample_s']:.1f}x")
        ok &= all(r["cells"] <= cap for r in rows)
    print(f"\noptimize: {args.memory_draws:,} draws x {args.memory_budgets} budgets x {args.memory_tasks} task(s) "
          f"(fresh subprocess each; peak RSS above the pre-sweep peak)")
    res = measure_memory(args.memory_draws, args.memory_budgets, args.memory_tasks, args.draws_per_chunk,
                         args.budgets_per_chunk)
    for r in res:
        how = ("whole sweep in memory, then summarised" if r["mode"] == "all-at-once" else
               f"{args.budgets_per_chunk} budgets at a time, draws in dask chunks of {args.draws_per_chunk:,}")
        print(f"  {r['mode']:<12} peak +{r['peak_mb']:8.1f} MB  {r['seconds']:7.1f} s  ({how}; "
              f"{r['records']} records)")
    same = res[0]["probe"] == res[1]["probe"]
    print(f"  records agree: {'OK' if same else 'MISMATCH'}")
    ok &= same
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
