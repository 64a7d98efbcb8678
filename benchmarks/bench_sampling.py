"""Benchmark: time to a reliable fit (min bulk ESS >= 400, no divergences) for each NUTS sampler.

    python benchmarks/bench_sampling.py [--samplers nutpie,pymc,numpyro] [--datasets embedded,large]
    python benchmarks/bench_sampling.py --tiny      # seconds-long smoke run (tests/test_benchmarks.py)

Each (sampler, data set) runs in a fresh subprocess (its own compile, a wall-clock limit): the loss route is
compiled once (time reported apart: nutpie numba, PyMC's backend; numpyro compiles inside sampling with jax),
then sampled with 2 chains x (tune = draws) from --start draws, doubling until min bulk ESS >= 400 over the law's
coefficients with no divergences. "Reliable" means it got there. Data: the embedded set (data/default_loss.csv,
8 tasks, 4,032 rows) and a 10x larger simulated set (`simulate_loss`, more IsoFLOP budgets and sizes). The
posterior means of the coefficients must agree across samplers within Monte Carlo error (|difference| <= 4
combined MCSE).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGET_ESS = 400.0


def dataset(name: str):
    from bayes_t2.data import from_frame, read_data
    from bayes_t2.simulate import simulate_loss

    if name == "embedded":
        return read_data(ROOT / "data" / "default_loss.csv")
    if name == "large":  # 10x the embedded set's rows: 60 budgets x 12 sizes (+6 over-trained), 8 tasks, 7 k
        frame, _ = simulate_loss(seed=2026, n_tasks=8, budgets=np.geomspace(1.25e16, 2.56e19, 60), sizes_per_budget=12)
        return from_frame(frame, source="large")
    if name == "tiny":  # one task, Chinchilla's k-free law, 4 budgets: compiles and samples in seconds
        frame, _ = simulate_loss(seed=3, n_tasks=1, budgets=np.geomspace(1.25e16, 2.56e19, 4), sizes_per_budget=4,
                                 n_overtrained=2, ks=(1,))
        return from_frame(frame.drop(columns=["k"]), source="tiny")
    raise SystemExit(f"unknown data set {name}")


def run_one(sampler: str, name: str, start: int, max_draws: int, seed: int, target: float) -> dict:
    """In this process: compile once, then sample with doubling draws until reliable (or max_draws)."""
    import warnings

    warnings.filterwarnings("ignore")
    from bayes_t2 import samplers
    from bayes_t2.fit import diagnose
    from bayes_t2.priors import load_spec, spec_to_json
    from bayes_t2.routes.loss import LossRoute

    data = dataset(name)
    spec = load_spec("loss")
    model = LossRoute.build_model(data.frame, spec)
    key = samplers.model_key("loss", spec_to_json(spec), model, sampler)
    coefs = [c for c in LossRoute.coefficient_names]
    draws, compile_s, attempts = start, None, []
    while True:
        t0 = time.perf_counter()
        with model:
            tree = samplers.sample(model, key, sampler=sampler, draws=draws, tune=draws, chains=2, seed=seed,
                                   target_accept=0.9, progressbar=False)
        total = time.perf_counter() - t0
        if compile_s is None:
            compile_s = samplers.stats.last_compile_seconds if sampler != "numpyro" else float("nan")
        sample_s = total - (samplers.stats.last_compile_seconds if not samplers.stats.last_hit else 0.0)
        if sampler == "numpyro":
            sample_s = total  # jax compiles inside sampling
        d = diagnose(tree, coefs)
        attempts.append({"draws": draws, "sample_s": sample_s, "min_ess": d.min_ess_bulk, "divergences": d.divergences,
                         "max_rhat": d.max_rhat})
        print(json.dumps({"attempt": attempts[-1]}), file=sys.stderr, flush=True)  # read if timed out
        reliable = d.min_ess_bulk >= target and d.divergences == 0
        if reliable or draws * 2 > max_draws:
            break
        draws *= 2
    import arviz as az

    post = tree["posterior"].to_dataset()[coefs]
    varying = [v for v in coefs if float(post[v].std()) > 0]
    mcse = az.mcse(post[varying], method="mean")
    means = {v: np.asarray(post[v].mean(("chain", "draw"))).tolist() for v in varying}
    return {"sampler": sampler, "data": name, "rows": len(data), "compile_s": compile_s, "reliable": reliable,
            "attempts": attempts, "means": means, "mcse": {v: np.asarray(mcse[v]).tolist() for v in varying}}


def finished_attempts(stderr: str) -> list[dict]:
    """The attempts a child reported (one JSON line each on stderr) before it was stopped: a timed-out sampler
    still says how far it got."""
    out = []
    for line in stderr.splitlines():
        if line.startswith('{"attempt"'):
            out.append(json.loads(line)["attempt"])
    return out


def agree(a: dict, b: dict) -> tuple[bool, float]:
    """Max |mean_a - mean_b| / sqrt(mcse_a^2 + mcse_b^2) over coefficients and tasks; agree if <= 4."""
    worst = 0.0
    for v in a["means"]:
        d = np.abs(np.subtract(a["means"][v], b["means"][v]))
        se = np.sqrt(np.square(a["mcse"][v]) + np.square(b["mcse"][v]))
        worst = max(worst, float(np.max(d / se)))
    return worst <= 4.0, worst


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samplers", default=None, help="comma-separated (default: nutpie,pymc and numpyro if installed)")
    ap.add_argument("--datasets", default="embedded,large")
    ap.add_argument("--start", type=int, default=500, help="first draws (= tune) per chain")
    ap.add_argument("--max-draws", type=int, default=4000)
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per (sampler, data set)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tiny", action="store_true", help="one-task data, 200 draws: a smoke run")
    ap.add_argument("--json", dest="json_path", help="write the results here")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    target = TARGET_ESS
    if args.tiny:
        args.datasets, args.start, args.max_draws, target = "tiny", 200, 200, 100.0
    if args.child:
        print(json.dumps(run_one(args.child[0], args.child[1], args.start, args.max_draws, args.seed, target)))
        return 0
    from bayes_t2.samplers import numpyro_available

    names = args.samplers.split(",") if args.samplers else ["nutpie", "pymc"] + (["numpyro"] if numpyro_available()
                                                                                else [])
    print(f"target: min bulk ESS >= {target:.0f}, 0 divergences; 2 chains, tune = draws, doubling from {args.start}")
    print(f"{'data':<9} {'rows':>6} {'sampler':<8} {'compile s':>9} {'sample s':>8} {'draws':>6} {'min ESS':>7} "
          f"{'div':>4} {'r-hat':>6} {'total s':>8}  reliable")
    results = []
    for name in args.datasets.split(","):
        for sampler in names:
            cmd = [sys.executable, __file__, "--child", sampler, name, "--start", str(args.start), "--max-draws",
                   str(args.max_draws), "--seed", str(args.seed)] + (["--tiny"] if args.tiny else [])
            # own session, so a timeout also ends the chain processes PyMC forks
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    start_new_session=True)
            try:
                stdout, stderr = proc.communicate(timeout=args.timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                _, stderr = proc.communicate()
                done = finished_attempts(stderr)
                print(f"{name:<9} {'':>6} {sampler:<8} timed out after {args.timeout:.0f} s; finished: "
                      + ("; ".join(f"{a['draws']} draws in {a['sample_s']:.0f} s, min ESS {a['min_ess']:.0f}, "
                                   f"{a['divergences']} div" for a in done) or "no attempt"), flush=True)
                results.append({"sampler": sampler, "data": name, "timed_out": True, "attempts": done})
                continue
            if proc.returncode != 0:
                print(f"{name:<9} {sampler:<8} failed: {stderr.strip().splitlines()[-1:]}", flush=True)
                results.append({"sampler": sampler, "data": name, "failed": True})
                continue
            r = json.loads(stdout.strip().splitlines()[-1])
            results.append(r)
            last = r["attempts"][-1]
            total = (0.0 if np.isnan(r["compile_s"]) else r["compile_s"]) + last["sample_s"]
            print(f"{name:<9} {r['rows']:>6} {sampler:<8} {r['compile_s']:>9.1f} {last['sample_s']:>8.1f} "
                  f"{last['draws']:>6} {last['min_ess']:>7.0f} {last['divergences']:>4} {last['max_rhat']:>6.3f} "
                  f"{total:>8.1f}  {'yes' if r['reliable'] else 'no'}", flush=True)
    ok = True
    for name in args.datasets.split(","):
        done = [r for r in results if r["data"] == name and "means" in r]
        for other in done[1:]:
            same, worst = agree(done[0], other)
            ok &= same
            print(f"{name}: posterior means {done[0]['sampler']} vs {other['sampler']}: max |diff|/MCSE = "
                  f"{worst:.2f} -> {'agree' if same else 'DISAGREE'}")
        reliable = [r for r in done if r["reliable"]]
        if reliable:
            best = min(reliable, key=lambda r: (0 if np.isnan(r["compile_s"]) else r["compile_s"])
                       + r["attempts"][-1]["sample_s"])
            print(f"{name}: fastest reliable sampler: {best['sampler']}")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(results, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
