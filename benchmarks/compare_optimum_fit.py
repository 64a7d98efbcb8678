"""Check a fit's per-draw optimum against the independent reference solver, draw by draw.

    python benchmarks/compare_optimum_fit.py FIT.nc [--train-flops 2.56e19 --inference-flops 2e9]
        [--total-flops C --queries Q] [--min-params 1e6] [--k-max K] [--max-tokens D] [--max-params N]
        [--save OUT.npz]

Solves the optimum of every posterior draw and task with the shipped optimizer (`Fit.optimize`, numba) and
with `bayes_t2.reference` (dense grid + scipy bounded polish, numpy objective), scores both designs with the
reference's numpy objective, and prints for each task: the median and 90% equal-tailed interval of the
metric at the optimum (pass@k or loss), the median k* and N*, and the number of draws where the two disagree
by more than 1e-6 relative in the objective (optimizer worse / reference worse). `--save` keeps the per-draw
designs and values. Also prints the objective at one fixed design (the posterior-median optimum) beside the
per-draw optimum's: a per-draw optimum cannot be below it draw by draw.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bayes_t2.budget import Constraints, SplitBudget, TotalBudget  # noqa: E402
from bayes_t2.fit import Fit  # noqa: E402
from bayes_t2.reference import numpy_objective, objective_at, reference_optimum  # noqa: E402

TOL = 1e-6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("fit")
    ap.add_argument("--train-flops", type=float, default=2.56e19)
    ap.add_argument("--inference-flops", type=float, default=2e9)
    ap.add_argument("--total-flops", type=float)
    ap.add_argument("--queries", type=float)
    ap.add_argument("--tokens-per-sample", type=float, default=1.0)
    ap.add_argument("--min-params", type=float, default=1e6)
    ap.add_argument("--max-params", type=float)
    ap.add_argument("--max-tokens", type=float)
    ap.add_argument("--k-max", type=int)
    ap.add_argument("--save")
    args = ap.parse_args(argv)

    if args.total_flops is not None:
        budget = TotalBudget(args.total_flops, args.queries, args.tokens_per_sample)
    else:
        budget = SplitBudget(args.train_flops, args.inference_flops, args.tokens_per_sample)
    con = Constraints(max_tokens=args.max_tokens, max_params=args.max_params, k_max=args.k_max,
                      min_params=args.min_params)
    fit = Fit.load(args.fit)
    route = fit.route
    _, names = numpy_objective(route)
    coefs = fit.coefficients()
    print(f"{args.fit}: route {route.name}, {coefs.sizes['chain']} x {coefs.sizes['draw']} draws, budget {budget}, {con}")

    t0 = time.perf_counter()
    opt = fit.optimize([budget], con).isel(budget=0)
    t_opt = time.perf_counter() - t0
    saved = {}
    for task in fit.tasks:
        th = np.stack([coefs[c].sel(task=task).values.ravel() for c in names], axis=-1)
        o = opt.sel(task=task)
        N, D, k = (o[q].values.ravel() for q in ("N", "D", "k"))
        t0 = time.perf_counter()
        ref = reference_optimum(route, th, budget, con)
        t_ref = time.perf_counter() - t0
        v_opt = objective_at(route, th, N, D, k)
        v_ref = ref[:, 3]
        worse = v_opt > v_ref + TOL * np.abs(v_ref)
        better = v_ref > v_opt + TOL * np.abs(v_opt)
        m_opt, m_ref = route.metric_from_objective(v_opt), route.metric_from_objective(v_ref)
        # one fixed design: the posterior-median optimum (N, its D and k under the budget)
        Nf = float(np.median(N))
        if isinstance(budget, SplitBudget):
            c = budget.inference_flops / (2 * budget.tokens_per_sample)
            kf = max(1.0, min(con.k_max_f, np.floor(c / Nf)))
            Df = min(budget.train_flops / (6 * Nf), con.max_tokens_f)
            m_fix = route.metric_from_objective(objective_at(route, th, np.full(len(th), Nf), np.full(len(th), Df),
                                                             np.full(len(th), kf)))
        else:
            m_fix = None

        def s(x: np.ndarray) -> str:
            return f"{np.median(x):.5g} [{np.quantile(x, 0.05):.5g}, {np.quantile(x, 0.95):.5g}] mean {np.mean(x):.5g}"

        print(f"task {task}:")
        print(f"  optimizer  metric {s(m_opt)}; k* median {np.median(k):.0f} [{np.quantile(k, .05):.0f}, "
              f"{np.quantile(k, .95):.0f}], N* median {np.median(N):.4g}  ({t_opt:.2f} s all tasks)")
        print(f"  reference  metric {s(m_ref)}; k* median {np.median(ref[:, 2]):.0f} [{np.quantile(ref[:, 2], .05):.0f}, "
              f"{np.quantile(ref[:, 2], .95):.0f}], N* median {np.median(ref[:, 0]):.4g}  ({t_ref:.1f} s)")
        if m_fix is not None:
            print(f"  fixed design N {Nf:.4g}, k {kf:.0f}: metric {s(m_fix)}")
        print(f"  draws: {len(th)}; optimizer worse than reference (> {TOL:g} rel.): {int(worse.sum())}; "
              f"reference worse: {int(better.sum())}; k* differs: {int(np.sum(k != ref[:, 2]))}; "
              f"max rel. gap {np.max((v_opt - v_ref) / np.abs(v_ref)):.2e}")
        saved.update({f"{task}/opt": np.column_stack([N, D, k, v_opt]), f"{task}/ref": ref})
    if args.save:
        np.savez(args.save, **saved)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
