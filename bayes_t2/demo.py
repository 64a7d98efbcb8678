"""`bayes-t2 demo`: the whole loss-route pipeline on the embedded default data, with the full PDF report."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .budget import Constraints, SplitBudget
from .data import read_data
from .fit import Fit, SamplerSettings, fit
from .io import atomic_write, write_json
from .resources import data_dir
from .summary import optimum_records

# The T2 paper's split budget: 2.56e19 training FLOPs, 2e9 inference FLOPs per query.
DEMO_BUDGET = SplitBudget(train_flops=2.56e19, inference_flops=2e9)


def run_demo(out_dir: Path, *, draws: int = 500, tune: int = 500, chains: int = 2, seed: int = 0,
             progressbar: bool = False, echo: Callable[[str], Any] = print) -> dict[str, Any]:
    """Fit, solve, compare with the truth the data were simulated from, write fit.nc/optimum.json/report.pdf."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data_file = data_dir() / "default_loss.csv"
    truth = json.loads((data_dir() / "default_loss.truth.json").read_text())
    data = read_data(data_file)
    echo(f"demo: fitting {len(data)} rows of {data_file.name} ({len(data.tasks)} tasks)")
    result = fit(data, settings=SamplerSettings(draws=draws, tune=tune, chains=chains, seed=seed),
                 progressbar=progressbar)
    result.save(out_dir / "fit.nc", overwrite=True)
    diag = result.diagnostics()
    opt = result.optimize([DEMO_BUDGET], Constraints())
    records = optimum_records(opt, result.route.metric_name, result.route.lower_is_better, 0.9)
    write_json(out_dir / "optimum.json", records, overwrite=True)
    true_n = true_optimum_params(truth, DEMO_BUDGET)
    covered = [r["N"]["lower"] <= true_n[r["task"]] <= r["N"]["upper"] for r in records]
    lines = [
        f"bayes-t2 demo: {len(data.tasks)} tasks, budget {DEMO_BUDGET.label()}",
        f"diagnostics: max r-hat {diag.max_rhat:.3f}, min bulk ESS {diag.min_ess_bulk:.0f}, "
        f"divergences {diag.divergences}" + ("" if diag.ok else " -- " + "; ".join(diag.warnings)),
        f"the 90% interval of N* contains the true optimum for {sum(covered)} of {len(covered)} tasks",
    ]
    for r in records:
        lines.append(f"  {r['task']:<12} N* {r['N']['median']:.3g} [{r['N']['lower']:.3g}, {r['N']['upper']:.3g}]"
                     f" (true {true_n[r['task']]:.3g}), k* {r['k']['median']:.0f}, tokens/param "
                     f"{r['tokens_per_param']['median']:.0f} vs Chinchilla 20; P(beats Chinchilla) "
                     f"{r['p_beats_chinchilla']:.2f}")
    text = "\n".join(lines)
    atomic_write(out_dir / "summary.txt", lambda p: p.write_text(text + "\n"), overwrite=True)
    from .report import write_report

    write_report(result, out_dir / "report.pdf", DEMO_BUDGET, Constraints(), overwrite=True, progress=progressbar,
                 fit_name="fit.nc")
    echo(f"demo: wrote {out_dir}/fit.nc, optimum.json, summary.txt, report.pdf")
    return {"records": records, "budget_label": DEMO_BUDGET.label(), "text": text, "fit": result,
            "covered": covered}


def true_optimum_params(truth: dict, budget: SplitBudget,
                        constraints: Constraints | None = None) -> dict[str, float]:
    """The optimum N* computed from the simulation's true coefficients (one 'draw' per task)."""
    import xarray as xr

    from .laws import LOSS_COEFFICIENTS
    from .optimum import optimize_posterior

    tasks = sorted(truth["tasks"])
    coefs = xr.Dataset({c: (("draw", "task"), np.array([[truth["tasks"][t][c] for t in tasks]]))
                        for c in LOSS_COEFFICIENTS}, coords={"draw": [0], "task": tasks})
    opt = optimize_posterior(coefs, [budget], constraints or Constraints())
    return {t: float(opt["N"].sel(task=t).values.ravel()[0]) for t in tasks}
