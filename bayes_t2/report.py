"""The multi-page PDF report a reviewer reads without the tool.

Pages: headline (recommended N, D, k against Chinchilla), data and fitted law (three tasks a page),
coefficients, diagnostics, optimum against budget, the decision table with risk measures (four tasks a page),
and the inputs needed to reproduce it. A page whose content cannot be computed honestly (e.g. no budget in the
sweep buys the smallest model) is replaced by a page that says why, instead of plotting nonsense.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.backends.backend_pdf import PdfPages

from . import __version__, plots
from .budget import Budget, Constraints, check_feasible
from .errors import InputError
from .io import atomic_write, check_writable
from .progress import progress as progress_bar
from .summary import optimum_records

TASKS_PER_PAGE = 3
BACKTEST_TITLE = "How well this law extrapolated on your data"
#: the backtest page is drawn by default when the data have at least this many model sizes
BACKTEST_MIN_SIZES = 3
#: draws per chain (and tuning steps) of the backtest's extra fit: small, it is a check, not the answer
BACKTEST_DRAWS = 300
DECISION_TASKS_PER_PAGE = 4
PDF_RC = {"pdf.fonttype": 42}  # embed TrueType: the text of every page can be searched and extracted


@dataclass
class Report:
    """What was written: the file, the page titles, and the problems stated on the pages."""

    path: Path
    pages: list[str]
    problems: list[str] = field(default_factory=list)


def check_reportable(fit) -> None:
    """Refuse a fit whose posterior has nothing to report (no draws, or no finite coefficient draw)."""
    coefs = fit.coefficients()
    n = coefs.sizes.get("chain", 0) * coefs.sizes.get("draw", 0)
    if n == 0:
        raise InputError("the posterior is empty (0 draws): refit with --draws >= 1")
    finite = np.ones((coefs.sizes["chain"], coefs.sizes["draw"]), dtype=bool)
    for name in coefs.data_vars:
        da = coefs[name]
        finite &= np.isfinite(da.values).reshape(finite.shape + (-1,)).all(axis=-1)
    if not finite.any():
        raise InputError("the posterior has no draw with finite coefficients; the fit failed")


def write_report(fit, path: str | Path, budget: Budget, constraints: Constraints = Constraints(), *,
                 prob: float = 0.9, risk: str = "mean", target: float | None = None, overwrite: bool = False,
                 progress: bool = False, fit_name: str = "FIT.nc", law: bool = False, seed: int = 0,
                 backtest: bool | None = None, data: Any = None, backtest_draws: int = BACKTEST_DRAWS) -> Report:
    """Build every page and write the PDF atomically (refusing to replace `path` unless `overwrite`).

    Raises InputError, before writing anything, for an empty posterior, a budget that cannot buy the
    smallest model or a malformed risk. `risk` and `target` are those of `bayes_t2.decide.decide` for the
    decision pages; a target no design reaches is stated on those pages. `fit_name` is how the inputs page
    refers to the fit file in its commands. law, seed: as `Fit.optimize` (metrics of a new run by default).
    backtest: the page "How well this law extrapolated on your data" (`bayes_t2.backtest`: one more fit of
    the model, `backtest_draws` draws x 2 chains); None (default) = on when the data have at least
    `BACKTEST_MIN_SIZES` model sizes. data: the fitted EvalData; by default rebuilt from the fit file (loss
    route; the accuracy route's per-problem counts are not in it, so its backtest needs `data`).
    """
    from .baselines import resolve_constraints
    from .decide import decide, parse_risk
    from .summary import bound_warnings

    from .repetition import repeated_view

    path = check_writable(path, overwrite=overwrite)
    base = fit
    fit = repeated_view(fit, constraints, seed)  # unique_tokens: the optimum at the effective design
    check_reportable(fit)
    constraints = resolve_constraints(fit, constraints)
    check_feasible(budget, constraints)
    parse_risk(risk)
    opt = fit.optimize([budget], constraints, law=law, seed=seed)
    records = optimum_records(opt, fit.route.metric_name, fit.route.lower_is_better, prob)
    problems = [f"diagnostics: {w}" for w in base.diagnostics().warnings]
    problems += [f"{r['task']}: no posterior draw gives a valid optimum at this budget" for r in records
                 if not np.isfinite(r["N"]["median"])]
    problems += bound_warnings(records)
    pages: list[tuple[str, Callable[[], Any]]] = [
        ("headline", lambda: _headline(base, records, budget, constraints, problems)[0])]
    for start in range(0, len(fit.tasks), TASKS_PER_PAGE):
        tasks = fit.tasks[start:start + TASKS_PER_PAGE]
        pages.append((f"data and law: {', '.join(tasks)}",
                      lambda tasks=tasks: plots.plot_law(base, tasks, compute_max=_compute(budget))[0]))
    pages += [
        ("coefficients", lambda: plots.plot_coefficients(base)[0]),
        ("diagnostics", lambda: plots.plot_diagnostics(base, prob=prob)[0]),
        ("optimum against budget", lambda: plots.plot_optimum_vs_budget(fit, budget, constraints)[0]),
        ("optimum against prompt length", lambda: plots.plot_optimum_vs_prompt(fit, budget, constraints)[0]),
    ]
    if constraints.unique_tokens is not None:
        pages.append(("optimum against unique tokens",
                      lambda: plots.plot_optimum_vs_unique_tokens(base, budget, constraints, seed=seed)[0]))
    if any("extrapolation" in r for r in records):
        pages.append(("beyond the data", lambda: _extrapolation_page(records)))
    if _wants_backtest(base, data, backtest):
        pages.append((BACKTEST_TITLE, lambda: _backtest_page(base, data, backtest_draws)))
    decision: dict[str, Any] = {}

    def decision_page(tasks: list[str]):
        if "ds" not in decision:  # one search for all tasks, on the first decision page
            decision["ds"] = decide(fit, budget, constraints, risk=risk, target=target, prob=prob, law=law,
                                    seed=seed)
        return plots.plot_decision(decision["ds"].sel(task=tasks))[0]

    for start in range(0, len(fit.tasks), DECISION_TASKS_PER_PAGE):
        tasks = fit.tasks[start:start + DECISION_TASKS_PER_PAGE]
        pages.append((f"decision: {', '.join(tasks)}", lambda tasks=tasks: decision_page(tasks)))
    pages.append(("inputs", lambda: _inputs_page(fit, budget, constraints, prob, fit_name, risk, target, law,
                                                 seed)))
    titles: list[str] = []

    def write(tmp: Path) -> None:
        with plots.style(PDF_RC), PdfPages(tmp) as pdf, progress_bar("report", len(pages), progress) as advance:
            info = pdf.infodict()
            info["Title"] = f"bayes-t2 report: {budget.label()}"
            info["Subject"] = f"data sha256 {fit.tree.attrs.get('data_sha256', 'unknown')}"
            info["Creator"] = f"bayes-t2 {__version__}"
            for title, build in pages:
                advance(0, title)
                try:
                    fig = build()
                except InputError as err:
                    problems.append(f"{title}: {err}")
                    fig = _problem_page(title, str(err))
                try:
                    pdf.savefig(fig)
                finally:
                    plt.close(fig)
                titles.append(title)
                advance(1)

    atomic_write(path, write, overwrite=overwrite)
    return Report(path=path, pages=titles, problems=problems)


def _compute(budget: Budget) -> float:
    return float(getattr(budget, "train_flops", None) or getattr(budget, "total_flops"))


def _headline(fit, records, budget: Budget, constraints: Constraints, problems: list[str]):
    diag = fit.diagnostics()
    cons = {k: v for k, v in constraints.as_dict().items()
            if v is not None and k not in ("min_params", "min_params_source")}
    includes = records[0].get("metric_includes", "law") if records else "law"
    lines = [
        f"Budget: {budget.label()}" + (f"; constraints: {_kv(cons)}" if cons else "; no constraints")
        + f"; {constraints.min_params_note()}",
        f"Fit: route '{fit.route.name}', {len(fit.tasks)} task(s), {diag.n_samples} posterior draws; "
        f"max r-hat {diag.max_rhat:.3f}, min bulk ESS {diag.min_ess_bulk:.0f}, {diag.divergences} divergences",
        f"Data: sha256 {fit.tree.attrs.get('data_sha256', 'unknown')[:16]}…, "
        f"{', '.join(json.loads(fit.tree.attrs.get('data_sources', '[]')))}",
        "N* = parameters, D* = training tokens, k* = samples per query at each draw's optimum (median "
        f"[interval]); the metric is the {includes}. Recommended = the design at the posterior-median optimum. "
        "Chinchilla = the largest D = 20N model the budget allows; train-optimal = the law's own compute-optimal "
        "model for k = 1; each draws the k its inference budget affords (FLOPs/query = 2NkT).",
        "P(beats X) = posterior probability that the recommended design does strictly better than design X, both "
        "scored on the same posterior draw (and the same checkpoint effect).",
    ]
    if constraints.unique_tokens is not None and records:
        from . import fmt

        lines.append(fmt.repetition_line(constraints.unique_tokens, records[0].get("repetition", {})) + "; epochs "
                     "D*/U: " + ", ".join(f"{r['task']} {fmt.interval(r['epochs'])}" for r in records if "epochs" in r))
    return plots.plot_headline(records, title="bayes-t2: what to train and how to serve it", lines=lines,
                               problems=problems)


def _kv(d: dict) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in d.items())


def _budget_options(budget: Budget, constraints: Constraints) -> str:
    b = budget.as_dict()
    opts = ([f"--train-flops {b['train_flops']:g}", f"--inference-flops {b['inference_flops']:g}"]
            if b["kind"] == "split" else [f"--total-flops {b['total_flops']:g}", f"--queries {b['queries']:g}"])
    if b["tokens_per_sample"] != 1.0:
        opts.append(f"--tokens-per-sample {b['tokens_per_sample']:g}")
    if budget.prompt_tokens:
        opts.append(f"--prompt-tokens {budget.prompt_tokens:g}")
    if not budget.kv_cache:
        opts.append("--no-kv-cache")
    if budget.context_flops:
        opts.append(f"--context-flops {budget.context_flops:g}")
    for key, opt in (("max_tokens", "--max-tokens"), ("max_params", "--max-params"), ("k_max", "--k-max"),
                     ("unique_tokens", "--unique-tokens")):
        value = getattr(constraints, key)
        if value is not None:
            opts.append(f"{opt} {value:g}")
    if constraints.min_params_source == "user":
        opts.append(f"--min-params {constraints.min_params_f:g}")
    return " ".join(opts)


def _inputs_page(fit, budget: Budget, constraints: Constraints, prob: float, fit_name: str, risk: str,
                 target: float | None, law: bool = False, seed: int = 0):
    """Everything needed to reproduce the report: data hash and sources, versions, model spec, sampler."""
    attrs = fit.tree.attrs
    settings = json.loads(attrs.get("sampler_settings", "{}"))
    sources = json.loads(attrs.get("data_sources", "[]"))
    fit_cmd = (f"bayes-t2 fit {' '.join(sources) or 'DATA'} --out {fit_name} --route {attrs.get('route')} "
               + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in settings.items()
                          if k in ("draws", "tune", "chains", "seed", "sampler", "target_accept")))
    left = [
        ("data sha256", attrs.get("data_sha256", "unknown")),
        ("data sources", ", ".join(sources) or "unknown"),
        ("fitted with", f"bayes-t2 {attrs.get('bayes_t2_version', '?')} (report: bayes-t2 {__version__})"),
        ("route / metric", f"{attrs.get('route')} / {fit.route.metric_name}"),
        ("sampler settings", json.dumps(settings)),
        ("random seed", str(settings.get("seed", "?"))),
        ("sampling time", f"{attrs.get('sampling_seconds', '?')} s"),
        ("reference scaling", attrs.get("scaling", "{}")),
        ("budget", json.dumps(budget.as_dict())),
        ("constraints", constraints.to_json()),
        ("intervals", f"equal-tailed, {prob:.0%}, ends included: for the integer k* (and N*, D*, which follow "
                      f"it at a split budget) they hold at least {prob:.0%} of the posterior, i.e. are conservative"),
        ("decision", f"risk {risk}" + ("" if target is None else f", target {target:g}")
         + ("; metrics of the law alone (--law)" if law else f"; metrics of a new run (law + checkpoint scatter, "
            f"seed {seed})")),
        ("reproduce the fit", fit_cmd),
        ("reproduce the report", f"bayes-t2 report {fit_name} --out report.pdf "
                                 f"{_budget_options(budget, constraints)} --prob {prob:g} --risk {risk}"
                                 + ("" if target is None else f" --target {target:g}")
                                 + (" --law" if law else f" --seed {seed}")),
    ]
    text = []
    for key, value in left:
        wrapped = textwrap.wrap(str(value), 78, break_long_words=True, break_on_hyphens=False) or [""]
        text.append(f"{key}:")
        text += [f"    {line}" for line in wrapped]
    spec = [w for line in _spec_lines(json.loads(attrs.get("model_spec", "{}")))
            for w in textwrap.wrap(line, 72, subsequent_indent=" " * (len(line) - len(line.lstrip()) + 4))]
    with plots.style():
        fig = plt.figure(figsize=plots.PAGE)
        fig.suptitle("Inputs: what it takes to reproduce this report", fontsize=11, x=0.03, ha="left")
        fig.text(0.03, 0.92, "\n".join(text), va="top", family="monospace", fontsize=7.5)
        half = (len(spec) + 1) // 2 if len(spec) > 60 else len(spec)
        size = 7.5 if half <= 70 else max(4.5, 7.5 * 70 / half)
        fig.text(0.60, 0.92, "model specification (priors):\n" + "\n".join(spec[:half]), va="top",
                 family="monospace", fontsize=size)
        if half < len(spec):
            fig.text(0.80, 0.92, "\n".join(spec[half:]), va="top", family="monospace", fontsize=size)
    return fig


def _spec_lines(spec: dict, indent: str = "") -> list[str]:
    """The model specification, one line per leaf table (e.g. a prior: median, log_sd, pool_sd)."""
    lines = []
    for key, value in spec.items():
        if isinstance(value, dict) and any(isinstance(v, dict) for v in value.values()):
            lines.append(f"{indent}{key}:")
            lines += _spec_lines(value, indent + "  ")
        elif isinstance(value, dict):
            lines.append(f"{indent}{key}: " + ", ".join(f"{k}={v}" for k, v in value.items()))
        else:
            lines.append(f"{indent}{key}: {value}")
    return lines


def _extrapolation_page(records: list[dict]):
    """How far beyond the fitted data each optimum lies, and how much of each interval the law's
    discrepancy makes (the lines `optimize` prints, one paragraph per task)."""
    from .summary import extrapolation_lines

    body = [w for line in extrapolation_lines(records) for w in (textwrap.wrap(line, 130) + [""])]
    intro = ("Every optimum lies beyond the data it was fitted to. Distances are decades outside the fitted "
             "data's range (0 inside) at each posterior draw's optimum (with repeated data, at the effective design "
             "N', D' the law sees). With a discrepancy term (the law's own "
             "error, growing with the e-folds beyond the data), every draw's law is bent beyond the data by one "
             "seeded normal draw shared by all designs; the share of an interval's width it makes is "
             "(W - W0) / W, W with it and W0 with the bend set to zero on the same draws.")
    with plots.style():
        fig = plt.figure(figsize=plots.PAGE)
        fig.suptitle("Beyond the data: how far the optimum extrapolates", fontsize=13, x=0.03, ha="left")
        fig.text(0.03, 0.9, "\n".join(textwrap.wrap(intro, 140) + [""] + body[:60]), va="top", fontsize=8.5)
    return fig


def backtest_data(fit, data: Any = None):
    """The data a backtest of `fit` refits: `data` as given, else the loss observations kept in the fit file
    (task, params, tokens, k, loss per row; checkpoints named as the fit named them)."""
    from .data import from_frame

    if data is not None:
        return data
    if fit.route.metric_name != "loss":
        raise InputError("the fit file keeps pass@k per checkpoint, not the per-problem counts a backtest "
                         "refits: pass the data (--data DATA)")
    pts = fit.route.observed_points(fit.tree).rename(columns={"metric": "loss"})
    sources = json.loads(fit.tree.attrs.get("data_sources", "[]"))
    return from_frame(pts, source=f"the fit's data ({', '.join(sources) or 'unknown source'})")


def discrepancy_clause(disc: dict[str, Any]) -> str:
    """The backtest page's words on the discrepancy its fit carried: one scale, or the range of the tasks'."""
    by_task = disc.get("by_task") or {}
    if by_task:
        return f", discrepancy sd {min(by_task.values()):.3g}-{max(by_task.values()):.3g} per e-fold by task"
    scale = disc.get("scale")
    return f", discrepancy sd {scale:.3g} per e-fold" if isinstance(scale, (int, float)) else ""


def _n_sizes(fit, data: Any) -> int:
    frame = getattr(data, "frame", None)
    if frame is None:
        try:
            frame = fit.route.observed_points(fit.tree)
        except Exception:  # noqa: BLE001 - a fit without its data
            return 0
    return int(frame["params"].nunique())


def _wants_backtest(fit, data: Any, backtest: bool | None) -> bool:
    """Whether the report draws the backtest page: as asked, else when the data have enough model sizes."""
    if backtest is not None:
        return backtest
    rebuildable = data is not None or fit.route.metric_name == "loss"  # else only when asked (it says why)
    return rebuildable and _n_sizes(fit, data) >= BACKTEST_MIN_SIZES


def _backtest_page(fit, data: Any, draws: int):
    """Leave-the-largest-out backtest of the fitted model on its own data (one extra fit) and its figure."""
    from .backtest import DEFAULT_FRACTION, DEFAULT_HOLDOUT, backtest, bias_text, plot_backtest
    from .fit import SamplerSettings

    if _n_sizes(fit, data) < BACKTEST_MIN_SIZES:
        raise InputError(f"a backtest needs at least {BACKTEST_MIN_SIZES} model sizes in the data "
                         "(the largest are held out, the law is fitted to the rest)")
    evaluation = backtest_data(fit, data)
    seed = int(json.loads(fit.tree.attrs.get("sampler_settings", "{}")).get("seed", 0))
    settings = SamplerSettings(draws=draws, tune=draws, chains=2, seed=seed, pointwise=False)
    # a scale the fit learned from all its data has seen the held-out part: learn it again inside the training
    # part (two more small fits); a scale the user fixed is kept as it is
    record = fit.discrepancy
    learned_in_fit = record.get("source") == "learned" if "source" in record else (  # fits saved before "source"
        bool(record.get("folds")) or str(record.get("note", "")).startswith("not learned"))
    try:
        result = backtest(evaluation, holdout=DEFAULT_HOLDOUT, fraction=DEFAULT_FRACTION, route=fit.route.name,
                          priors=fit.spec, settings=settings, discrepancy="learn" if learned_in_fit else "spec")
    except InputError:
        raise
    except Exception as err:  # noqa: BLE001 - the extra fit failed: the page says so, the report stands
        raise InputError(f"the backtest's fit failed ({type(err).__name__}: {err})") from err
    s = result.summary
    fig, _ = plot_backtest(result)
    fig.set_size_inches(*plots.PAGE)
    fig.subplots_adjust(top=0.6, bottom=0.1)
    disc = (s.get("discrepancy") or {}).get("scale")
    disc_text = discrepancy_clause(s.get("discrepancy") or {})
    diag = s["diagnostics"]
    lines = [
        f"How it was computed: the checkpoints with the largest parameters (about {s['fraction']:.0%} of them, "
        f"{s['n_test_checkpoints']} checkpoints, {s['n_test_rows']} rows; every run of a held-out size goes) "
        f"were held out; the same model (the fit's own specification"
        + disc_text
        + (" learned inside the training part, so the held-out points never informed it"
           if learned_in_fit and isinstance(disc, (int, float)) else "")
        + f") was fitted to the other {s['n_train_checkpoints']} checkpoints ({s['n_train_rows']} rows) with "
        f"{settings.chains} chains x {draws} draws (+{draws} tuning), seed {seed}; each held-out observation "
        "was compared with the posterior predictive of a new checkpoint at its (N, D, k).",
        f"Result: the 90% intervals covered {s['coverage90']:.0%} and the 50% intervals {s['coverage50']:.0%} "
        f"of {s['n_points']} held-out points (calibrated: about 90% and 50%; counting the points "
        f"of each of the {s['n_clusters']} held-out checkpoints as correlated, the rates behind them lie in "
        f"[{s['coverage90_interval'][0]:.0%}, {s['coverage90_interval'][1]:.0%}] and "
        f"[{s['coverage50_interval'][0]:.0%}, {s['coverage50_interval'][1]:.0%}] with 90% "
        f"probability); median |error| {_error_text(s)}. "
        f"Backtest fit: max r-hat {diag['max_rhat']:.3f}, "
        f"{diag['divergences']} divergences" + (" (not converged: read these numbers with care)"
                                                 if diag['max_rhat'] > 1.05 else "") + ".",
        "Intervals that covered far less than their level here were too narrow when this law was extrapolated "
        "on your own runs; the optimum above lies farther beyond the data than these held-out points.",
        *([text] if (text := bias_text(s)) else []),
        *([text] if (text := by_task_text(s)) else []),
        f"Data: {', '.join(s.get('sources') or []) or 'the fit file'}.",
    ]
    fig.text(0.03, 0.97, BACKTEST_TITLE, fontsize=13, fontweight="bold", va="top")
    fig.text(0.03, 0.92, "\n".join(w for line in lines for w in textwrap.wrap(line, 150)), va="top", fontsize=8.5,
             linespacing=1.45)
    return fig


def by_task_text(summary: dict, shown: int = 3) -> str | None:
    """One sentence on the tasks of a multi-task backtest: the range of their 90% coverages and the `shown`
    tasks with the lowest (whose laws extrapolated worst), each with its 90% interval; None with one task."""
    cells = sorted(summary.get("by_task") or [], key=lambda c: (c["coverage90"], c["coverage50"]))
    if not cells:
        return None
    worst = "; ".join(f"{c['task']} {c['coverage90']:.0%} [{c['coverage90_interval'][0]:.0%}, "
                      f"{c['coverage90_interval'][1]:.0%}] (50%: {c['coverage50']:.0%})" for c in cells[:shown])
    return (f"Task by task, the 90% intervals covered {cells[0]['coverage90']:.0%} to {cells[-1]['coverage90']:.0%} "
            f"of each task's held-out points; lowest: {worst}.")


def _error_text(summary: dict) -> str:
    rel, lo = summary.get("median_abs_relative_error"), summary.get("median_abs_logodds_error")
    if rel is not None:
        return f"{rel:.2%} (relative)"
    return "n/a" if lo is None else f"{lo:.3g} (log-odds)"


def _problem_page(title: str, message: str):
    """A page that states why its content is missing."""
    fig = plt.figure(figsize=plots.PAGE)
    fig.text(0.05, 0.9, title, fontsize=16, fontweight="bold", va="top")
    fig.text(0.05, 0.8, "\n".join(textwrap.wrap(f"This page cannot be drawn: {message}", 110)), fontsize=11,
             va="top", color="firebrick")
    return fig
