"""`bayes-t2 demo`: the whole pipeline on the embedded default data of both routes, with the full PDF reports."""

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


#: Embedded data per route: (data file, truth file, output sub-folder).
DEMO_DATA = {"loss": ("default_loss.csv", "default_loss.truth.json", ""),
             "accuracy": ("default_samples.csv", "default_samples.truth.json", "accuracy")}


def run_demo(out_dir: Path, *, draws: int = 500, tune: int = 500, chains: int = 2, seed: int = 0,
             progressbar: bool = False, echo: Callable[[str], Any] = print,
             routes: tuple[str, ...] = ("loss",)) -> dict[str, Any]:
    """For each route: fit its embedded data, solve the optimum at the T2 budget, compare with the truth the
    data were simulated from, write fit.nc, optimum.json and report.pdf (loss route in `out_dir`, accuracy route
    in `out_dir/accuracy`); summary.txt holds both. Returns the loss route's results (and each route's under
    its name)."""
    unknown = [r for r in routes if r not in DEMO_DATA]
    if unknown or not routes:
        from .errors import InputError

        raise InputError(f"demo routes must be among {', '.join(DEMO_DATA)}, got {', '.join(routes) or 'none'}")
    out_dir = Path(out_dir)
    results = {route: _demo_route(route, out_dir, SamplerSettings(draws=draws, tune=tune, chains=chains, seed=seed),
                                  progressbar, echo) for route in routes}
    text = "\n\n".join(r["text"] for r in results.values())
    atomic_write(out_dir / "summary.txt", lambda p: p.write_text(text + "\n"), overwrite=True)
    first = results[routes[0]]
    return {**first, "text": text, **results}


def _demo_route(route: str, out_dir: Path, settings: SamplerSettings, progressbar: bool,
                echo: Callable[[str], Any]) -> dict[str, Any]:
    data_name, truth_name, sub = DEMO_DATA[route]
    where = out_dir / sub if sub else out_dir
    where.mkdir(parents=True, exist_ok=True)
    truth = json.loads((data_dir() / truth_name).read_text())
    data = read_data(data_dir() / data_name)
    echo(f"demo ({route} route): fitting {len(data)} rows of {data_name} ({len(data.tasks)} tasks)")
    result = fit(data, settings=settings, progressbar=progressbar)
    result.save(where / "fit.nc", overwrite=True)
    diag = result.diagnostics()
    opt = result.optimize([DEMO_BUDGET], Constraints())
    records = optimum_records(opt, result.route.metric_name, result.route.lower_is_better, 0.9)
    write_json(where / "optimum.json", records, overwrite=True)
    true_n = true_optimum_params(truth, DEMO_BUDGET, route=result.route)
    covered = [r["N"]["lower"] <= true_n[r["task"]] <= r["N"]["upper"] for r in records]
    metric = result.route.metric_name
    lines = [
        f"bayes-t2 demo, {route} route ({data_name}): {len(data.tasks)} tasks, budget {DEMO_BUDGET.label()}",
        f"diagnostics: max r-hat {diag.max_rhat:.3f}, min bulk ESS {diag.min_ess_bulk:.0f}, "
        f"divergences {diag.divergences}, sampling {result.tree.attrs['sampling_seconds']:.0f} s"
        + ("" if diag.ok else " -- " + "; ".join(diag.warnings)),
        f"the 90% interval of N* contains the true optimum for {sum(covered)} of {len(covered)} tasks",
    ]
    for r in records:
        lines.append(f"  {r['task']:<12} N* {r['N']['median']:.3g} [{r['N']['lower']:.3g}, {r['N']['upper']:.3g}]"
                     f" (true {true_n[r['task']]:.3g}), k* {r['k']['median']:.0f}, tokens/param "
                     f"{r['tokens_per_param']['median']:.0f} vs Chinchilla 20; {metric} {r['metric']['median']:.4g}"
                     f" vs Chinchilla {r['chinchilla']['metric']['median']:.4g}; P(beats Chinchilla) "
                     f"{r['p_beats_chinchilla']:.2f}")
    from .report import write_report

    write_report(result, where / "report.pdf", DEMO_BUDGET, Constraints(), overwrite=True, progress=progressbar,
                 fit_name="fit.nc")
    echo(f"demo ({route} route): wrote {where}/fit.nc, optimum.json, report.pdf")
    return {"records": records, "budget_label": DEMO_BUDGET.label(), "text": "\n".join(lines), "fit": result,
            "covered": covered}


def true_optimum_params(truth: dict, budget: SplitBudget, constraints: Constraints | None = None,
                        route: Any = None) -> dict[str, float]:
    """The optimum N* computed from the simulation's true coefficients (one 'draw' per task) by the
    independent reference solver (`bayes_t2.reference`), not by the optimizer whose answer it checks; `route`
    is the route object whose law the truth describes (default: the loss route)."""
    import xarray as xr

    from .reference import reference_route_optimum
    from .routes.loss import LossRoute

    route = route or LossRoute
    names = route.coefficient_names
    tasks = sorted(truth["tasks"])
    coefs = xr.Dataset({c: (("draw", "task"), np.array([[truth["tasks"][t][c] for t in tasks]]))
                        for c in names}, coords={"draw": [0], "task": tasks})
    opt = reference_route_optimum(route, coefs, [budget], constraints or Constraints())
    return {t: float(opt["N"].sel(task=t).values.ravel()[0]) for t in tasks}
