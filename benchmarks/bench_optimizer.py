"""Benchmark: the numba optimum sweep against a global scipy loop, split budgets.

    python benchmarks/bench_optimizer.py [--draws 4000 --tasks 8 --budgets 50 --scipy-problems 300]

Times `optimize_array` (the kernel behind `optimize_posterior`) on draws x tasks x budgets problems after a
warm-up call (compilation or cache load excluded), both the exact loss path and the generic global search
(scan + Brent polish, the path every non-loss objective takes), and a scipy loop that is itself global (a
vectorised numpy scan of every constant-k segment end and a log grid in N, then `minimize_scalar(bounded)`
over the best cells) on a random subset of the same problems, in the same process, scaled per problem.
Checks that the answers agree (neither worse than the other beyond 1e-9 relative) and prints problems/second
and the speed-up of each numba path over the scipy loop.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
from scipy.optimize import minimize_scalar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numba  # noqa: E402

from bayes_t2.budget import Constraints, SplitBudget  # noqa: E402
from bayes_t2.laws import loss_law  # noqa: E402
from bayes_t2.optimum import OUTPUTS, optimize_array  # noqa: E402

ROW = {name: i for i, name in enumerate(OUTPUTS)}


def random_draws(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.uniform(0.5, 3.0, n), rng.uniform(50, 2000, n), rng.uniform(0.2, 0.6, n),
                            rng.uniform(50, 5000, n), rng.uniform(0.2, 0.6, n), rng.uniform(0.2, 2.0, n),
                            rng.uniform(0.1, 0.8, n)])


def make_budgets(n: int, seed: int) -> list[SplitBudget]:
    rng = np.random.default_rng(seed + 1)
    train = 10.0 ** rng.uniform(19, 24, n)
    infer = 10.0 ** rng.uniform(9, 14, n)
    return [SplitBudget(float(c), float(i)) for c, i in zip(train, infer)]


def scipy_split(theta, Ct, Ci, T, lo, kmax, xatol=1e-10, n_grid=48, n_polish=4, full=20000):
    """A global scipy implementation of the split-budget optimum (no data wall / max_params): scan, then polish.

    Scan (vectorised numpy): every constant-k segment end N = C_inf/(2kT) (or, beyond `full` segments, the
    first full/2 and a geometric set) plus a log grid of `n_grid` sizes at the k each affords; polish: scipy's
    bounded Brent (`minimize_scalar`) in log N over the cells of the `n_polish` best scan points, inside their
    own constant-k segment, ends included."""
    c = Ci / (2 * T)
    hi = c
    K = max(1.0, min(kmax, math.floor(c / lo)))
    if K <= full:
        ks = np.arange(1.0, K + 1.0)
    else:
        ks = np.unique(np.concatenate([np.arange(1.0, full // 2 + 1.0),
                                       np.round(np.geomspace(full // 2 + 1, K, full // 2))]))
    grid = np.geomspace(lo, hi, n_grid)
    pts = np.concatenate([np.minimum(hi, c / ks), grid])
    pk = np.concatenate([ks, np.maximum(1.0, np.minimum(kmax, np.floor(c / grid)))])
    order = np.lexsort((pk, pts))
    pts, pk = pts[order], pk[order]
    vals = loss_law(*theta, pts, Ct / (6 * pts), pk)
    best = (math.inf, math.nan, math.nan)
    for j in np.argsort(vals, kind="stable")[:n_polish]:
        k = pk[j]
        a = max(pts[j - 1] if j > 0 else lo, lo if k >= kmax else max(lo, c / (k + 1)))
        b = min(pts[j + 1] if j < pts.size - 1 else hi, min(hi, c / k))
        a, b = min(a, pts[j]), max(b, pts[j])

        def seg(u, k=k):
            N = math.exp(u)
            return loss_law(*theta, N, Ct / (6 * N), k)

        cand = [(math.log(pts[j]), vals[j])]
        if b > a:
            res = minimize_scalar(seg, bounds=(math.log(a), math.log(b)), method="bounded", options={"xatol": xatol})
            cand += [(res.x, res.fun), (math.log(a), seg(math.log(a))), (math.log(b), seg(math.log(b)))]
        for u, v in cand:
            if v < best[0]:
                best = (float(v), math.exp(u), k)
    return best  # (loss, N, k)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=4000, help="posterior draws (default 4000)")
    ap.add_argument("--tasks", type=int, default=8, help="tasks (default 8)")
    ap.add_argument("--budgets", type=int, default=50, help="split budgets (default 50)")
    ap.add_argument("--scipy-problems", type=int, default=300, help="problems timed with scipy (default 300)")
    ap.add_argument("--repeats", type=int, default=3, help="timed numba runs, best kept (default 3)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    thetas = random_draws(args.draws * args.tasks, args.seed)
    budgets = make_budgets(args.budgets, args.seed)
    cons = Constraints()
    n_problems = thetas.shape[0] * len(budgets)
    print(f"problems: {args.draws} draws x {args.tasks} tasks x {args.budgets} budgets = {n_problems:,} "
          f"(numba threads: {numba.get_num_threads()})")

    results = {}
    for method in ("exact", "search"):
        t0 = time.perf_counter()
        optimize_array(thetas[:4], budgets[:2], cons, method=method)  # warm-up: compile or load the cache
        warm = time.perf_counter() - t0
        times, cpu = [], []
        for _ in range(args.repeats if method == "exact" else 1):
            t0, c0 = time.perf_counter(), time.process_time()
            out = optimize_array(thetas, budgets, cons, method=method)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        results[method] = (out, min(times), min(cpu))
        print(f"numba {method:6s}: {min(times):8.3f} s  {n_problems / min(times):14,.0f} problems/s"
              f"   ({min(cpu) / n_problems * 1e6:.2f} CPU-us/problem; warm-up {warm:.2f} s)")

    # the warm-up law (a fit with [warmup] on) takes the generic search with its own objective; its answers are
    # checked against the reference solver in tests/test_warmup.py, here only its speed
    from bayes_t2.routes.loss import WarmupLossRoute

    w = np.random.default_rng(args.seed + 3).uniform(0.3, 30.0, thetas.shape[0])
    thetas_w = np.ascontiguousarray(np.column_stack([thetas, w]))
    kw = dict(objective=WarmupLossRoute.objective_nb, theta_names=WarmupLossRoute.coefficient_names)
    optimize_array(thetas_w[:4], budgets[:2], cons, **kw)
    t0, c0 = time.perf_counter(), time.process_time()
    optimize_array(thetas_w, budgets, cons, **kw)
    t_w, cpu_w = time.perf_counter() - t0, time.process_time() - c0
    print(f"numba search, warm-up law: {t_w:8.3f} s  {n_problems / t_w:14,.0f} problems/s"
          f"   ({cpu_w / n_problems * 1e6:.2f} CPU-us/problem)")

    rng = np.random.default_rng(args.seed + 2)
    picks = rng.choice(n_problems, size=min(args.scipy_problems, n_problems), replace=False)
    ref = []
    t0, c0 = time.perf_counter(), time.process_time()
    for p in picks:
        i, j = divmod(int(p), len(budgets))
        b = budgets[j]
        ref.append(scipy_split(thetas[i], b.train_flops, b.inference_flops, b.tokens_per_sample,
                               cons.min_params, cons.k_max_f))
    t_scipy = time.perf_counter() - t0
    cpu_per_problem = (time.process_time() - c0) / len(picks)
    per_problem = t_scipy / len(picks)
    print(f"scipy loop  : {per_problem * 1e3:8.3f} ms/problem {1 / per_problem:14,.0f} problems/s"
          f"   ({len(picks)} problems in {t_scipy:.2f} s; all {n_problems:,} would take "
          f"{per_problem * n_problems:,.0f} s)")

    ok = True
    for method, (out, t, t_cpu) in results.items():
        ii, jj = np.divmod(picks, len(budgets))
        v = out[ROW["metric"], ii, jj]
        n = out[ROW["N"], ii, jj]
        k = out[ROW["k"], ii, jj]
        rv = np.array([r[0] for r in ref])
        rn = np.array([r[1] for r in ref])
        rk = np.array([r[2] for r in ref])
        dv = np.max((v - rv) / rv)
        dv_scipy = np.max((rv - v) / v)
        same_k = k == rk
        dn = np.max(np.abs(n[same_k] / rn[same_k] - 1)) if same_k.any() else 0.0
        agree = dv <= 1e-9  # never worse than the global scipy loop (k may differ where values tie)
        ok &= bool(agree)
        print(f"agreement ({method}): max (numba - scipy)/scipy loss = {dv:.1e} (scipy worse by up to "
              f"{dv_scipy:.1e}), same k {same_k.mean():.1%}, max |N/N_scipy - 1| = {dn:.1e} "
              f"-> {'OK' if agree else 'MISMATCH'}")
        print(f"speed-up ({method}): {per_problem * n_problems / t:,.0f}x the scipy loop in wall time, "
              f"{cpu_per_problem * n_problems / t_cpu:,.0f}x in CPU time (numba on all threads, scipy on one)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
