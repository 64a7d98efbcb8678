"""Throughput of the decision kernel (draws x designs per second) and wall time of one decision.

Run: PYTHONPATH=. python benchmarks/bench_decide.py   (2 threads; timings on a shared machine are noisy)
"""

from __future__ import annotations

import time

import numpy as np
import xarray as xr

from bayes_t2.budget import SplitBudget, TotalBudget
from bayes_t2.decide import decide, evaluate_designs
from bayes_t2.fit import FIT_FORMAT, Fit
from bayes_t2.laws import LOSS_COEFFICIENTS
from bayes_t2.routes.loss import LossRoute

TRUTH = np.array([1.7, 400.0, 0.34, 410.0, 0.28, 0.3, 0.5])


def main(S: int = 4000, M: int = 2000, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    thetas = TRUTH * np.exp(0.05 * rng.standard_normal((S, TRUTH.size)))
    N = np.geomspace(1e7, 1e10, M)
    designs = np.stack([N, 2.56e19 / (6 * N), np.maximum(1.0, np.floor(1e9 / N))], axis=1)
    evaluate_designs(LossRoute, thetas, designs)  # compile / load from cache
    best = np.inf
    for _ in range(5):
        t = time.perf_counter()
        evaluate_designs(LossRoute, thetas, designs)
        best = min(best, time.perf_counter() - t)
    print(f"kernel: {S} draws x {M} designs in {best * 1e3:.1f} ms = {S * M / best / 1e6:.1f} M evaluations/s")

    ds = xr.Dataset({k: (("chain", "draw", "task"), thetas[:, i].reshape(1, S, 1))
                     for i, k in enumerate(LOSS_COEFFICIENTS)},
                    coords={"chain": [0], "draw": np.arange(S), "task": ["a"]})
    tree = xr.DataTree.from_dict({"posterior": ds})
    tree.attrs.update({"bayes_t2_format": FIT_FORMAT, "route": "loss", "model_spec": "{}", "scaling": "{}"})
    fit = Fit(tree)
    for budget in (SplitBudget(2.56e19, 2e9), TotalBudget(1e21, 1e9)):
        for risk in ("mean", "cvar:0.1"):
            decide(fit, budget, risk=risk)
            t = time.perf_counter()
            decide(fit, budget, risk=risk)
            print(f"decide {budget.kind:5s} {risk:8s}: {time.perf_counter() - t:.2f} s ({S} draws, 1 task)")


if __name__ == "__main__":
    main()
