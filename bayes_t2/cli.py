"""The `bayes-t2` command line: parse, call one API function per command, print, map errors to exit codes.

Exit codes: 0 success, 2 bad input or usage, 1 any other failure; errors are one line on stderr.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from . import fmt
from .fmt import describe_discrepancy, describe_warmup
from .errors import InputError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Bayesian Train-to-Test scaling laws: N*, D*, k* with credible intervals.")
out = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, soft_wrap=True)

Force = Annotated[bool, typer.Option("--force", help="Replace output files that already exist.")]


def _check_prob(value: float) -> float:
    """--prob is a probability mass strictly between 0 and 1 (checked while parsing, before any fit is read)."""
    if not 0.0 < value < 1.0:  # also false for nan
        raise typer.BadParameter(f"must be strictly between 0 and 1, got {value:g}")
    return value


Prob = Annotated[float, typer.Option("--prob", help="Probability mass of the equal-tailed intervals.",
                                     callback=_check_prob)]
# scale-out options: any command that sweeps the posterior takes these and wraps its work in
# `with dask_client(workers, scheduler) as client:` (bayes_t2.cluster)
Workers = Annotated[Optional[int], typer.Option("--workers", help="Run on a local Dask cluster of N workers.")]
Scheduler = Annotated[Optional[str], typer.Option("--scheduler",
                                                  help="Run on the Dask scheduler at ADDRESS (tcp://host:8786).")]
DrawsPerChunk = Annotated[Optional[int], typer.Option("--draws-per-chunk",
                                                      help="Posterior draws per Dask chunk (default: automatic).")]
# the budget and constraints of every command that solves an optimum (`_budget_options` reads them)
TrainFlops = Annotated[Optional[float], typer.Option(help="Training budget C_train = 6ND.")]
InferenceFlops = Annotated[Optional[float], typer.Option(help="Per-query budget 2NkT.")]
TotalFlops = Annotated[Optional[float], typer.Option(help="Total budget 6ND + 2NkTQ.")]
Queries = Annotated[Optional[float], typer.Option(help="Queries Q over the model's life.")]
TokensPerSample = Annotated[float, typer.Option(help="Tokens T per sample.")]
MaxTokens = Annotated[Optional[float], typer.Option(help="Data wall: D <= this.")]
MaxParams = Annotated[Optional[float], typer.Option(help="Largest model considered: N <= this.")]
MinParams = Annotated[Optional[float], typer.Option(help="Smallest model considered: N >= this (default: a "
                                                         "tenth of the smallest model in the data).")]
KMax = Annotated[Optional[int], typer.Option(help="k <= this.")]
UniqueTokens = Annotated[Optional[float], typer.Option(
    help="Unique training tokens U: beyond U, training repeats data, valued by the data-constrained law "
         "(Muennighoff et al. 2023); not a cap (--max-tokens is).")]
Law = Annotated[bool, typer.Option("--law", help="Score designs on the law alone, without the fitted "
                                   "checkpoint scatter a newly trained run shows (default: with it).")]
Seed = Annotated[int, typer.Option("--seed", help="Seed of the checkpoint-scatter draws and of the law's "
                                   "discrepancy beyond the data (one per posterior draw, shared by every "
                                   "design).")]


PromptTokens = Annotated[float, typer.Option(help="Prompt tokens P per query, prefilled once and shared by the "
                                                  "k samples through a KV cache: a query costs 2N(P + kT).")]
NoKVCache = Annotated[bool, typer.Option("--no-kv-cache", help="Every sample prefills the prompt again: a query "
                                         "costs 2Nk(P + T).")]
ContextFlops = Annotated[float, typer.Option(help="Attention FLOPs per token per token of context it attends "
                                                  "to (docs/costs.md; default 0: left out).")]
CostsFile = Annotated[Optional[Path], typer.Option("--costs", help="Cost file (TOML: accelerator FLOP/s, "
                                                   "utilisations, prices; models/costs/): outputs show money "
                                                   "too, and budgets may be given in dollars or GPU-hours.")]
TrainMoney = Annotated[Optional[str], typer.Option(help="Training budget in money or hardware, e.g. '$2e6' or "
                                                         "'1e5 GPU-h' (needs --costs; instead of --train-flops).")]
ServeMoney = Annotated[Optional[str], typer.Option(help="Per-query budget, e.g. '$0.002/query' (needs --costs; "
                                                         "instead of --inference-flops).")]
TotalMoney = Annotated[Optional[str], typer.Option(help="Total budget, e.g. '$1e7' with --queries (needs "
                                                         "--costs; instead of --total-flops).")]
#: what a query costs and budgets in money, on every budget command (`_serving_options`):
#: name -> (annotation, default)
SERVING_OPTIONS = {"prompt_tokens": (PromptTokens, 0.0), "no_kv_cache": (NoKVCache, False),
                   "context_flops": (ContextFlops, 0.0), "costs": (CostsFile, None),
                   "train_budget": (TrainMoney, None), "serve_budget": (ServeMoney, None),
                   "total_budget": (TotalMoney, None)}


def _serving_options(command):
    """`command` with the SERVING_OPTIONS added right after --k-max; it receives them as one dict `serving`
    (passed on to `_budget_options`), so each budget command lists them once."""
    sig = inspect.signature(command, eval_str=True)
    params = [p for p in sig.parameters.values() if p.name != "serving"]
    at = next(i for i, p in enumerate(params) if p.name == "k_max") + 1
    extra = [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default, annotation=ann)
             for name, (ann, default) in SERVING_OPTIONS.items()]

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        return command(*args, serving={name: kwargs.pop(name) for name in SERVING_OPTIONS}, **kwargs)

    wrapper.__signature__ = sig.replace(parameters=params[:at] + extra + params[at:])
    wrapper.__annotations__ = {p.name: p.annotation for p in wrapper.__signature__.parameters.values()}
    return wrapper


def _budget_options(train_flops, inference_flops, total_flops, queries, tokens_per_sample, max_tokens,
                    max_params, k_max, min_params=None, unique_tokens=None, serving=None):
    from .options import budget_and_constraints  # the Python API's keywords read the same way

    serving = serving or {}
    return budget_and_constraints(train_flops=train_flops, inference_flops=inference_flops,
                                  total_flops=total_flops, queries=queries, tokens_per_sample=tokens_per_sample,
                                  prompt_tokens=serving.get("prompt_tokens"),
                                  kv_cache=None if "no_kv_cache" not in serving else not serving["no_kv_cache"],
                                  context_flops=serving.get("context_flops"), costs=serving.get("costs"),
                                  train_budget=serving.get("train_budget"),
                                  serve_budget=serving.get("serve_budget"),
                                  total_budget=serving.get("total_budget"),
                                  max_tokens=max_tokens, max_params=max_params, min_params=min_params, k_max=k_max,
                                  unique_tokens=unique_tokens)


def _warn(lines) -> None:
    for line in lines:
        err.print(f"[yellow]warning:[/yellow] {line}", markup=True, highlight=False)


@app.command()
def simulate(out_path: Annotated[Path, typer.Option("--out", help="Data file to write (.csv or .parquet).")],
             seed: Annotated[int, typer.Option(help="Random seed.")] = 1,
             route: Annotated[str, typer.Option(help="loss or accuracy.")] = "loss",
             force: Force = False) -> None:
    """Write a synthetic evaluation set with a known truth (beside it as DATA.truth.json)."""
    from .simulate import simulate as run, write_simulation

    data, truth = run(route, seed)
    paths = write_simulation(out_path, data, truth, overwrite=force)
    out.print(f"wrote {paths[0]} ({len(data)} rows, {data['task'].nunique()} tasks) and {paths[1]}")


def _discrepancy_value(text: str | None) -> str | float | None:
    """--discrepancy: None (the model file's setting), "learn", or a number >= 0 (checked by `fit`)."""
    if text is None or text == "learn":
        return text
    try:
        return float(text)
    except ValueError:
        raise InputError(f"--discrepancy must be learn or a number >= 0, got {text!r}") from None


@app.command()
def fit(data: Annotated[list[Path], typer.Argument(help="Evaluation data: CSV or Parquet files.")],
        out_path: Annotated[Path, typer.Option("--out", help="Fit file to write (netCDF).")],
        route: Annotated[Optional[str], typer.Option(help="loss or accuracy (default: from the columns).")] = None,
        priors: Annotated[Optional[Path], typer.Option(help="TOML file overriding models/<route>.toml.")] = None,
        columns: Annotated[Optional[str], typer.Option(help="Map column names, e.g. params=N,tokens=D.")] = None,
        drop_bad_rows: Annotated[bool, typer.Option("--drop-bad-rows", help="Skip invalid rows.")] = False,
        allow_prior_only: Annotated[bool, typer.Option(
            "--allow-prior-only", help="Fit data that cannot identify the law (one checkpoint, a single model "
                                       "size or token count per task); every output then says its intervals "
                                       "are the prior's.")] = False,
        discrepancy: Annotated[Optional[str], typer.Option(
            help="The law's error per e-fold beyond the data (sd of log loss; accuracy route: of the logit of the "
                 "mean success). learn (default, from the model file): from two backtests inside the data (two "
                 "more fits), one scale per task, partially pooled; or a number for every task (0: none). Joint "
                 "fits have none.")] = None,
        draws: int = 1000, tune: int = 1000, chains: int = 4, seed: int = 0,
        sampler: Annotated[str, typer.Option(help="nutpie (default), pymc or numpyro.")] = "nutpie",
        target_accept: float = 0.9, force: Force = False) -> None:
    """Fit the hierarchical T2 law to evaluation data and write the posterior.

    Loss data -> loss route; per-problem counts (samples) -> accuracy route; both -> a joint fit that shares
    the loss law."""
    from .data import parse_column_map, read_datasets
    from .fit import SamplerSettings, fit as run_fit
    from .io import check_writable

    check_writable(out_path, overwrite=force)
    settings = SamplerSettings(draws=draws, tune=tune, chains=chains, seed=seed, sampler=sampler,
                               target_accept=target_accept)
    evaluation = read_datasets(data, columns=parse_column_map(columns), drop_bad_rows=drop_bad_rows)
    for part in evaluation.values():
        out.print(f"fitting {len(part)} rows, {len(part.tasks)} task(s), kind '{part.kind}'")
        _warn([note] if (note := part.unnamed_shared_runs_note()) else [])
    if len(evaluation) > 1:
        out.print("loss and per-problem counts together: one joint model sharing the loss law")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="prior only")  # _print_diagnostics says it below
        result = run_fit(evaluation, route=route, priors=priors, settings=settings, progressbar=_interactive(),
                         allow_prior_only=allow_prior_only, discrepancy=_discrepancy_value(discrepancy))
    result.save(out_path, overwrite=force)
    _print_diagnostics(result)
    if len(evaluation) == 1:  # a joint fit has no discrepancy term
        out.print(describe_discrepancy(result.discrepancy, metric_name=result.route.metric_name))
    if (warmup := describe_warmup(result.posterior)) is not None:
        out.print(warmup, highlight=False)
    out.print(f"wrote {out_path}")


@app.command()
@_serving_options
def optimize(fit_path: Annotated[Path, typer.Argument(help="Fit file from `bayes-t2 fit`.")],
             train_flops: TrainFlops = None,
             inference_flops: InferenceFlops = None,
             total_flops: TotalFlops = None,
             queries: Queries = None,
             tokens_per_sample: TokensPerSample = 1.0,
             max_tokens: MaxTokens = None,
             max_params: MaxParams = None,
             min_params: MinParams = None,
             k_max: KMax = None,
             unique_tokens: UniqueTokens = None,
             law: Law = False,
             seed: Seed = 0,
             prob: Prob = 0.9,
             json_path: Annotated[Optional[Path], typer.Option("--json", help="Write optimum.json here.")] = None,
             workers: Workers = None, scheduler: Scheduler = None, draws_per_chunk: DrawsPerChunk = None,
             force: Force = False, serving: Optional[dict] = None) -> None:
    """Solve the optimum (N*, D*, k*) for every posterior draw and task under a budget."""
    from .cluster import check_options, dask_client, draws_per_chunk as chunking
    from .fit import Fit
    from .io import check_writable, write_json

    check_options(workers, scheduler)
    if json_path:
        check_writable(json_path, overwrite=force)
    budget, constraints = _budget_options(train_flops, inference_flops, total_flops, queries,
                                          tokens_per_sample, max_tokens, max_params, k_max, min_params,
                                          unique_tokens, serving)
    result = Fit.load(fit_path)
    with dask_client(workers, scheduler) as client:
        records = result.optimum_records([budget], constraints, prob, progress=_interactive(),
                                         draws_per_chunk=chunking(client, result.posterior.sizes["draw"],
                                                                  draws_per_chunk), law=law, seed=seed)
    _print_optimum(records, budget.label())
    if json_path:
        write_json(json_path, records, overwrite=force)
        out.print(f"wrote {json_path}")


@app.command()
@_serving_options
def decide(fit_path: Annotated[Path, typer.Argument(help="Fit file from `bayes-t2 fit`.")],
           train_flops: TrainFlops = None,
           inference_flops: InferenceFlops = None,
           total_flops: TotalFlops = None,
           queries: Queries = None,
           tokens_per_sample: TokensPerSample = 1.0,
           max_tokens: MaxTokens = None,
           max_params: MaxParams = None,
           min_params: MinParams = None,
           k_max: KMax = None,
           unique_tokens: UniqueTokens = None,
           law: Law = False,
           seed: Seed = 0,
           target: Annotated[Optional[float], typer.Option(help="Metric value to reach (loss <= T, "
                                                                "accuracy >= T).")] = None,
           risk: Annotated[str, typer.Option(help="mean | quantile:Q | cvar:Q | prob (P(reach --target)).")]
           = "mean",
           task: Annotated[Optional[str], typer.Option(help="Decide for this task only.")] = None,
           min_budget: Annotated[bool, typer.Option("--min-budget", help="Find the cheapest budget reaching "
                                                    "--target with --confidence (scales --train-flops, or "
                                                    "--total-flops; the rest stays fixed).")] = False,
           confidence: Annotated[float, typer.Option(help="With --min-budget: P(reach target) wanted.")] = 0.9,
           prob: Prob = 0.9,
           json_path: Annotated[Optional[Path], typer.Option("--json", help="Write decision.json here.")] = None,
           force: Force = False, serving: Optional[dict] = None) -> None:
    """One design (N, D, k) to commit to under a budget and a risk attitude, against the Chinchilla and
    train-optimal baselines and the posterior-median optimum."""
    from .decide import decide as run_decide, decision_records, min_budget as run_min_budget
    from .fit import Fit
    from .io import check_writable, write_json
    from .summary import bound_warnings

    if json_path:
        check_writable(json_path, overwrite=force)
    budget, constraints = _budget_options(train_flops, inference_flops, total_flops, queries,
                                          tokens_per_sample, max_tokens, max_params, k_max, min_params,
                                          unique_tokens, serving)
    result = Fit.load(fit_path)
    if min_budget:
        if risk != "mean":
            raise InputError("--min-budget maximises P(reach --target); drop --risk")
        ds = run_min_budget(result, budget, constraints, target=target, confidence=confidence, task=task,
                            prob=prob, law=law, seed=seed)
    else:
        ds = run_decide(result, budget, constraints, risk=risk, target=target, task=task, prob=prob, law=law,
                        seed=seed)
    records = decision_records(ds)
    _print_decision(records, ds.attrs)
    _warn(bound_warnings(records))
    if json_path:
        write_json(json_path, records, overwrite=force)
        out.print(f"wrote {json_path}")


@app.command()
def predict(fit_path: Annotated[Path, typer.Argument(help="Fit file from `bayes-t2 fit`.")],
            params: Annotated[Optional[float], typer.Option(help="Model size N.")] = None,
            tokens: Annotated[Optional[float], typer.Option(help="Training tokens D.")] = None,
            k: Annotated[float, typer.Option(help="Samples per query.")] = 1,
            points: Annotated[Optional[Path], typer.Option(
                help="CSV with columns params, tokens, k (optional unique_tokens: U the run repeats).")] = None,
            law: Annotated[bool, typer.Option("--law", help="Interval of the law alone, without a new "
                                              "checkpoint's scatter around it.")] = False,
            seed: Annotated[int, typer.Option(help="Seed of the new-checkpoint draws.")] = 0,
            prob: Prob = 0.9,
            json_path: Annotated[Optional[Path], typer.Option("--json", help="Write predictions here.")] = None,
            force: Force = False) -> None:
    """Posterior of the metric at any (N, D, k), per task: what a new checkpoint would show (or --law)."""
    from .fit import Fit
    from .io import check_writable, write_json
    from .predict import predict_points, read_points

    if json_path:
        check_writable(json_path, overwrite=force)
    if points is not None:
        pts = read_points(points)
    elif params is not None and tokens is not None:
        pts = read_points(None, params=params, tokens=tokens, k=k)
    else:
        raise InputError("give --params and --tokens (and --k), or --points CSV")
    result = Fit.load(fit_path)
    records = predict_points(result, pts, prob, new_checkpoint=not law, seed=seed)
    what = "the law" if law else "a new checkpoint"
    table = Table(title=f"posterior {result.route.metric_name} of {what} ({prob:.0%} interval)")
    for col in ("task", "params", "tokens", "k", "median", "interval"):
        table.add_column(col, justify="right" if col != "task" else "left")
    for r in records:
        table.add_row(r["task"], f"{r['params']:.3g}", f"{r['tokens']:.3g}", f"{r['k']:g}", f"{r['median']:.4g}",
                      f"[{r['lower']:.4g}, {r['upper']:.4g}]")
    out.print(table)
    if json_path:
        write_json(json_path, records, overwrite=force)
        out.print(f"wrote {json_path}")


@app.command()
@_serving_options
def report(fit_path: Annotated[Path, typer.Argument(help="Fit file from `bayes-t2 fit`.")],
           out_path: Annotated[Path, typer.Option("--out", help="PDF report to write.")],
           train_flops: TrainFlops = None,
           inference_flops: InferenceFlops = None,
           total_flops: TotalFlops = None,
           queries: Queries = None,
           tokens_per_sample: TokensPerSample = 1.0,
           max_tokens: MaxTokens = None,
           max_params: MaxParams = None,
           min_params: MinParams = None,
           k_max: KMax = None,
           unique_tokens: UniqueTokens = None,
           law: Law = False,
           seed: Seed = 0,
           target: Annotated[Optional[float], typer.Option(help="Metric value to reach, for the decision "
                                                                "pages (as decide).")] = None,
           risk: Annotated[str, typer.Option(help="mean | quantile:Q | cvar:Q | prob, for the decision pages "
                                                  "(as decide).")] = "mean",
           prob: Prob = 0.9,
           backtest: Annotated[Optional[bool], typer.Option(
               "--backtest/--no-backtest", help="The page 'How well this law extrapolated on your data' (one "
               "more fit, 2 chains x 300 draws, and two small ones when the fit learned its discrepancy: it is "
               "learned again without the held-out part); default: on when the data have >= 3 model sizes.")] = None,
           data: Annotated[Optional[Path], typer.Option(
               "--data", help="The fitted data, for the backtest page (default: rebuilt from the fit file; "
               "needed for per-problem counts).")] = None,
           force: Force = False, serving: Optional[dict] = None) -> None:
    """Write the multi-page PDF report: headline, data and law, coefficients, diagnostics, optimum against
    budget, how far beyond the data, the backtest on your data, decision, inputs."""
    import matplotlib

    matplotlib.use("Agg")
    from .fit import Fit
    from .io import check_writable
    from .budget import check_feasible
    from .report import check_reportable, write_report

    check_writable(out_path, overwrite=force)
    budget, constraints = _budget_options(train_flops, inference_flops, total_flops, queries,
                                          tokens_per_sample, max_tokens, max_params, k_max, min_params,
                                          unique_tokens, serving)
    check_feasible(budget, constraints)  # before loading anything
    result = Fit.load(fit_path)
    try:
        check_reportable(result)
    except InputError as e:
        raise InputError(f"{fit_path}: {e}") from None
    written = write_report(result, out_path, budget, constraints, prob=prob, risk=risk, target=target,
                           overwrite=force, progress=_interactive(), fit_name=fit_path.name, law=law, seed=seed,
                           backtest=backtest, data=_read_report_data(data))
    for problem in written.problems:
        err.print(f"[yellow]warning:[/yellow] {problem}")
    out.print(f"wrote {written.path} ({len(written.pages)} pages: {', '.join(written.pages)})")


@app.command()
def demo(out_dir: Annotated[Path, typer.Option("--out", help="Output folder (its demo files are replaced).")]
         = Path("reports/demo"),
         draws: int = 1000, tune: int = 1000, chains: int = 2, seed: int = 0,
         routes: Annotated[str, typer.Option(help="Comma-separated routes to run: loss (default), accuracy "
                                             "(the embedded samples set; ~4 min at 2 x 500+500 on 2 idle cores).")]
         = "loss") -> None:
    """Fit the embedded default data, solve the optimum at the T2 paper's budget, write the report
    (`--routes loss,accuracy` also runs the accuracy route into DIR/accuracy)."""
    from .demo import run_demo

    chosen = tuple(r.strip() for r in routes.split(",") if r.strip())
    summary = run_demo(out_dir, draws=draws, tune=tune, chains=chains, seed=seed, progressbar=_interactive(),
                       echo=out.print, routes=chosen)
    for route in chosen:
        _print_optimum(summary[route]["records"], summary[route]["budget_label"])
    out.print(summary["text"])


@app.command()
def calibrate(data: Annotated[Optional[list[Path]], typer.Argument(
                  help="Evaluation data whose design (checkpoints, k values, tasks) to simulate; default: testbed.")]
              = None,
              out_dir: Annotated[Path, typer.Option("--out", help="Folder for calibration.{nc,json,png,pdf}.")]
              = Path("reports/calibration"),
              route: Annotated[str, typer.Option(help="Route to calibrate (loss or accuracy).")] = "loss",
              n_sims: Annotated[int, typer.Option("--n-sims", help="Simulated data sets.")] = 20,
              seed: Annotated[int, typer.Option(help="First data seed (replicates use seed, seed+1, ...).")] = 0,
              noise: Annotated[float, typer.Option(help="Simulated log-loss noise sd (loss route).")] = 0.01,
              priors: Annotated[Optional[Path], typer.Option(help="TOML file overriding models/<route>.toml.")]
              = None,
              train_flops: Annotated[Optional[float], typer.Option(help="Training budget (default 2.56e19).")]
              = None,
              inference_flops: Annotated[Optional[float], typer.Option(help="Per-query budget (default 2e9).")]
              = None,
              total_flops: TotalFlops = None,
              queries: Queries = None,
              tokens_per_sample: TokensPerSample = 1.0,
              max_tokens: MaxTokens = None,
              max_params: MaxParams = None,
              min_params: MinParams = None,
              k_max: KMax = None,
              draws: int = 300, tune: int = 300, chains: int = 2, force: Force = False,
              from_prior: Annotated[bool, typer.Option(
                  "--from-prior", help="SBC proper: truths drawn from the model's own prior, no filter; writes "
                                       "sbc.{nc,json,png,pdf} (--noise does not apply).")] = False,
              n_tasks: Annotated[Optional[int], typer.Option(
                  "--n-tasks", help="With --from-prior: keep the design's first N tasks (default: loss 2, "
                                    "accuracy 2 on the built-in design; all of DATA).")] = None) -> None:
    """Simulation-based calibration: coverage of the intervals of the coefficients, N*, D*, k* and the metric
    (truths from a realistic population; `--from-prior`: from the model's prior)."""
    from .budget import Constraints
    from .calibrate import DEFAULT_BUDGET, calibrate as run, default_design, design_from_data, summary, \
        write_outputs
    from .data import read_data
    from .fit import SamplerSettings
    from .io import check_writable

    stem = "sbc" if from_prior else "calibration"
    for ext in ("nc", "json", "png", "pdf"):
        check_writable(out_dir / f"{stem}.{ext}", overwrite=force)
    if all(v is None for v in (train_flops, inference_flops, total_flops, queries)):
        budget, constraints = DEFAULT_BUDGET, Constraints(**{k: v for k, v in dict(
            max_tokens=max_tokens, max_params=max_params, k_max=k_max, min_params=min_params).items()
            if v is not None})
    else:
        budget, constraints = _budget_options(train_flops, inference_flops, total_flops, queries,
                                              tokens_per_sample, max_tokens, max_params, k_max, min_params)
    if from_prior:
        _calibrate_from_prior(data, out_dir, route, n_sims, seed, priors, budget, constraints, n_tasks,
                              SamplerSettings(draws=draws, tune=tune, chains=chains, seed=seed), force)
        return
    design = (design_from_data(read_data(data), route, noise) if data else default_design(route, noise=noise))
    per_point = (f"{design.n_problems} problems x samples in {list(design.ks)}" if route == "accuracy"
                 else f"k in {list(design.ks)}")
    out.print(f"calibrating the {route} route: {n_sims} simulated data sets of {len(design.checkpoints)} "
              f"checkpoints x {design.n_tasks} tasks x {per_point}, budget {budget.label()}")
    scores = run(design, n_sims=n_sims, seed=seed, budget=budget, constraints=constraints, priors=priors,
                 settings=SamplerSettings(draws=draws, tune=tune, chains=chains, seed=seed),
                 on_replicate=lambda s, i: out.print(f"  replicate {i + 1}/{n_sims}: max r-hat "
                                                     f"{float(s['max_rhat'][-1]):.3f}"))
    paths = write_outputs(scores, out_dir, overwrite=force)
    _print_calibration(summary(scores))
    out.print(f"wrote {', '.join(str(p) for p in paths.values())}")


def _calibrate_from_prior(data, out_dir, route, n_sims, seed, priors, budget, constraints, n_tasks, settings,
                          force) -> None:
    from .data import read_data
    from .sbc import run_sbc, sbc_design, sbc_summary, write_sbc

    if n_sims < 1:
        raise InputError(f"--n-sims must be >= 1, got {n_sims}")
    design = sbc_design(route, read_data(data) if data else None, n_tasks)
    out.print(f"SBC of the {route} route from its prior: {n_sims} prior draws on {design.describe()}, budget "
              f"{budget.label()}")
    scores = run_sbc(design, n_sims=n_sims, seed=seed, budget=budget, constraints=constraints, priors=priors,
                     settings=settings,
                     on_replicate=lambda s, i: out.print(f"  prior draw {i + 1}/{n_sims}: max r-hat "
                                                         f"{float(s['max_rhat'][-1]):.3f}"))
    paths = write_sbc(scores, out_dir, overwrite=force, seed=seed)
    summ = sbc_summary(scores, seed)
    table = Table(title=f"rank uniformity over {summ['n_replicates_ranked']} prior draws x {summ['n_tasks']} tasks "
                        f"(fractional ranks among min(99, ESS) thinned draws); degenerate data: "
                        f"{', '.join(f'{k} {v}' for k, v in summ['degenerate'].items())}")
    for col in ("quantity", "50% by rank", "90% by rank", "chi-square p", "ECDF p", "mean rank", "flag"):
        table.add_column(col)
    for q, r in summ["quantities"].items():
        table.add_row(q, *(f"{r[c]['coverage']:.0%}" for c in ("coverage_50", "coverage_90")),
                      f"{r['chi2_pvalue']:.2g}", f"{r['ecdf_pvalue']:.2g}", f"{r['mean_rank']:.2f}",
                      "not uniform" if r["flagged"] else "ok")
    out.print(table)
    out.print(f"{'passes' if summ['passes'] else 'FAILS'}: smallest p {summ['smallest_p']:.2g} over "
              f"{summ['bonferroni_tests']} tests (Bonferroni at 5%)")
    out.print(f"wrote {', '.join(str(p) for p in paths.values())}")


def _print_calibration(summ: dict) -> None:
    table = Table(title=f"coverage over {summ['n_replicates']} simulated data sets x {summ['n_tasks']} tasks, "
                        f"by randomised rank (95% Wilson interval); inclusive = truth inside the interval, ends "
                        f"included (conservative for discrete k*, N*, D*)")
    for col in ("quantity", "50% interval", "90% interval", "90% inclusive", "rank p", "flag"):
        table.add_column(col)
    for q, r in summ["quantities"].items():
        cells = [f"{c['coverage']:.0%} [{c['wilson_lower']:.0%}, {c['wilson_upper']:.0%}]"
                 for c in (r["coverage_50"], r["coverage_90"])]
        table.add_row(q, *cells, f"{r['inclusive_90']['coverage']:.0%}", f"{r['rank']['chi2_pvalue']:.2g}",
                      "; ".join(r["flagged"]) or ("ok, hardly informed by the design" if r.get("note") else "ok"))
    out.print(table)


@app.command()
def compare(fits: Annotated[list[Path], typer.Argument(help="Fit files of the same data (two or more).")],
            json_path: Annotated[Optional[Path], typer.Option("--json", help="Write the table here.")] = None,
            force: Force = False) -> None:
    """PSIS-LOO comparison of model variants fitted to the same data (best first), with Pareto-k warnings."""
    from .criticism import compare_fits, variant_label
    from .fit import Fit
    from .io import check_writable, write_json

    if json_path:
        check_writable(json_path, overwrite=force)
    loaded = {str(p): Fit.load(p) for p in fits}
    if len(loaded) < len(fits):
        raise InputError("the same fit file is given twice")
    table, notes = compare_fits(loaded)
    view = Table(title="PSIS-LOO comparison (elpd: higher is better; dse: standard error of the difference)")
    for col in ("fit", "variant", "elpd", "se", "elpd_diff", "dse", "p_loo", "weight", "Pareto k > 0.7"):
        view.add_column(col)
    for name, row in table.iterrows():
        view.add_row(name, variant_label(loaded[name]), f"{row['elpd']:.1f}", f"{row['se']:.1f}",
                     f"{row['elpd_diff']:.1f}", f"{row['dse']:.1f}", f"{row['p']:.1f}", f"{row['weight']:.2f}",
                     str(int(row["n_bad_k"])))
    out.print(view)
    for note in notes:
        err.print(f"[yellow]warning:[/yellow] {note}")
    if json_path:
        records = [{"fit": name, "variant": variant_label(loaded[name]),
                    **{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}}
                   for name, row in table.iterrows()]
        write_json(json_path, records, overwrite=force)
        out.print(f"wrote {json_path}")


@app.command()
@_serving_options
def sensitivity(fit_path: Annotated[Path, typer.Argument(help="Fit file from `bayes-t2 fit`.")],
                train_flops: TrainFlops = None,
                inference_flops: InferenceFlops = None,
                total_flops: TotalFlops = None,
                queries: Queries = None,
                tokens_per_sample: TokensPerSample = 1.0,
                max_tokens: MaxTokens = None,
                max_params: MaxParams = None,
                min_params: MinParams = None,
                k_max: KMax = None,
                unique_tokens: UniqueTokens = None,
                prob: Prob = 0.9,
                json_path: Annotated[Optional[Path], typer.Option("--json", help="Write the records here.")] = None,
                force: Force = False, serving: Optional[dict] = None) -> None:
    """Prior sensitivity: the N* interval under priors power-scaled wider (alpha 0.5) and narrower (alpha 2)."""
    from .criticism import prior_sensitivity
    from .fit import Fit
    from .io import check_writable, write_json

    if json_path:
        check_writable(json_path, overwrite=force)
    budget, constraints = _budget_options(train_flops, inference_flops, total_flops, queries,
                                          tokens_per_sample, max_tokens, max_params, k_max, min_params,
                                          unique_tokens, serving)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        records = prior_sensitivity(Fit.load(fit_path), budget, constraints, prob=prob)
    view = Table(title=f"N* under power-scaled priors, {budget.label()} (median [{prob:.0%} interval])")
    for col in ("task", "fitted prior", "psense", *[f"prior^{s['alpha']:g}" for s in records[0]["scaled"]]):
        view.add_column(col)
    for r in records:
        cells = [f"{fmt.interval(s['N'])} (k {s['pareto_k']:.2f}{'' if s['reliable'] else ', unreliable'})"
                 for s in r["scaled"]]
        view.add_row(r["task"], fmt.interval(r["N"]), f"{r['psense']:.3f}", *cells)
    out.print(view)
    if json_path:
        write_json(json_path, records, overwrite=force)
        out.print(f"wrote {json_path}")


@app.command()
def backtest(data: Annotated[list[Path], typer.Argument(help="Evaluation data: CSV or Parquet files.")],
             holdout: Annotated[str, typer.Option(help="Hold out the checkpoints with the largest: "
                                                  "largest-params | largest-compute | largest-tokens | "
                                                  "most-repeated (epochs D/U; data with unique_tokens).")]
             = "largest-params",
             fraction: Annotated[float, typer.Option(help="Share of the checkpoints held out (whole sizes).")]
             = 0.25,
             route: Annotated[Optional[str], typer.Option(help="loss or accuracy (default: from the columns).")] = None,
             priors: Annotated[Optional[Path], typer.Option(help="TOML file overriding models/<route>.toml.")] = None,
             columns: Annotated[Optional[str], typer.Option(help="Map column names, e.g. params=N,tokens=D.")] = None,
             discrepancy: Annotated[str, typer.Option(help="learn (the law's error per e-fold beyond the data, "
                                                      "on log loss or the logit of the mean success, from "
                                                      "backtests inside the training part), spec (as the model "
                                                      "file says) or a number.")] = "learn",
             draws: int = 500, tune: int = 500, chains: int = 2, seed: int = 0,
             sampler: Annotated[str, typer.Option(help="nutpie (default), pymc or numpyro.")] = "nutpie",
             json_path: Annotated[Optional[Path], typer.Option("--json", help="Write summary and points here.")]
             = None,
             fig_path: Annotated[Optional[Path], typer.Option("--out", help="Write the figure here (.png/.pdf).")]
             = None,
             force: Force = False) -> None:
    """Fit on the smaller part of the data, predict the held-out larger part, and report how the 50% and 90%
    intervals of a new checkpoint covered it."""
    from .backtest import backtest as run, bias_text, plot_backtest
    from .data import parse_column_map, read_data
    from .fit import SamplerSettings
    from .io import atomic_write, check_writable, write_json

    for path in (json_path, fig_path):
        if path:
            check_writable(path, overwrite=force)
    settings = SamplerSettings(draws=draws, tune=tune, chains=chains, seed=seed, sampler=sampler, pointwise=False)
    evaluation = read_data(data, columns=parse_column_map(columns))
    _warn([note] if (note := evaluation.unnamed_shared_runs_note()) else [])
    result = run(evaluation, holdout=holdout, fraction=fraction, route=route, priors=priors, settings=settings,
                 discrepancy=discrepancy, progressbar=_interactive())
    s = result.summary
    disc = s.get("discrepancy") or {}
    if disc.get("scale") is not None:
        out.print(describe_discrepancy(disc, inside="the training part", metric_name=s["metric_name"]))
    error_key = next(k for k in s if k.startswith("median_abs_"))
    out.print(f"fitted {s['n_train_rows']} rows ({s['n_train_checkpoints']} checkpoints) with "
              f"{s['threshold_quantity']} < {s['threshold']:.3g}; predicted {s['n_points']} held-out points "
              f"({s['n_test_checkpoints']} checkpoints, up to {s['max_distance']:.2f} decades beyond)")
    table = Table(title=f"backtest, {s['holdout']} ({s['route']} route)")
    for col in ("distance (decades)", "points", "50% coverage", "90% coverage", error_key.replace("_", " ")):
        table.add_column(col, justify="right")
    for b in s["by_distance"]:
        e = b[error_key]
        label = "0 (inside)" if b["distance_to"] <= 1e-12 else \
            f"{0 if b['distance_from'] <= 1e-12 else b['distance_from']:.2g}-{b['distance_to']:.2g}"
        table.add_row(label, str(b["n"]), f"{b['coverage50']:.0%}",
                      f"{b['coverage90']:.0%}", "-" if e is None else f"{e:.3g}")
    e = s[error_key]
    lo50, hi50 = s["coverage50_interval"]
    lo90, hi90 = s["coverage90_interval"]
    table.add_row("all", str(s["n_points"]), f"{s['coverage50']:.0%} [{lo50:.0%}, {hi50:.0%}]",
                  f"{s['coverage90']:.0%} [{lo90:.0%}, {hi90:.0%}]", "-" if e is None else f"{e:.3g}")
    out.print(table)
    if s.get("by_task"):
        per_task = Table(title="by task")
        for col in ("task", "points", "50% coverage", "90% coverage", error_key.replace("_", " "),
                    "below median"):
            per_task.add_column(col, justify="left" if col == "task" else "right")
        for b in s["by_task"]:
            (l50, h50), (l90, h90), e = b["coverage50_interval"], b["coverage90_interval"], b[error_key]
            per_task.add_row(b["task"], str(b["n"]), f"{b['coverage50']:.0%} [{l50:.0%}, {h50:.0%}]",
                             f"{b['coverage90']:.0%} [{l90:.0%}, {h90:.0%}]", "-" if e is None else f"{e:.3g}",
                             f"{b['share_observed_below_median']:.0%}"
                             + ("" if b["bias"] == "none" else f" ({b['bias']})"))
        out.print(per_task)
    out.print(f"coverage [lo, hi]: 90% interval of the rate behind it, from the {s['n_clusters']} held-out "
              "checkpoints (the points of one checkpoint hit or miss together; docs/backtest.md)", markup=False)
    lo, hi = s["below_median_interval"]
    out.print(f"PIT: {s['share_observed_below_median']:.0%} [{lo:.0%}, {hi:.0%}] of observations below the predictive "
              f"median; KS distance from uniform {s['pit_ks']:.2f}", markup=False)
    if text := bias_text(s):
        out.print(text, markup=False)
    d = s["diagnostics"]
    out.print(f"fit diagnostics: max r-hat {d['max_rhat']:.3f}, min bulk ESS {d['min_ess_bulk']:.0f}, "
              f"divergences {d['divergences']}")
    for note in d["warnings"]:
        err.print(f"[yellow]warning:[/yellow] {note}")
    if json_path:
        write_json(json_path, result.records(), overwrite=force)
        out.print(f"wrote {json_path}")
    if fig_path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, _ = plot_backtest(result)
        atomic_write(fig_path, lambda p: fig.savefig(p, dpi=130, format=fig_path.suffix.lstrip(".") or "png"),
                     overwrite=force)
        plt.close(fig)
        out.print(f"wrote {fig_path}")


def _interactive() -> bool:
    return sys.stderr.isatty() and not os.environ.get("CI")


def _print_diagnostics(result) -> None:
    d = result.diagnostics()
    out.print(f"diagnostics: max r-hat {d.max_rhat:.3f}, min bulk ESS {d.min_ess_bulk:.0f}, "
              f"divergences {d.divergences} ({d.n_samples} draws, "
              f"{result.tree.attrs.get('sampling_seconds', float('nan')):.0f} s)")
    for note in d.warnings:
        err.print(f"[yellow]warning:[/yellow] {note}")
    if d.ok:
        out.print("[green]the sampler converged: the intervals can be trusted as far as the model can[/green]")


def _per_query(d: dict) -> str:
    """What one query of a design costs: FLOPs, and dollars when the budget has prices."""
    money = f", ${d['money_per_query']:.3g}" if "money_per_query" in d else ""
    return f"{d['flops_per_query']:.3g} FLOPs{money}"


def _design_cell(d: dict) -> str:
    """N, D, k of a fixed design and what a query of it costs; 'infeasible' where it has none."""
    if d.get("feasible") is False:
        return "infeasible at this budget"
    return f"{d['N']:.3g}, {d['D']:.3g}, {d['k']:.0f} ({_per_query(d)}/query)"


def _print_epochs(records: list[dict]) -> None:
    """With repeated data: the epochs over the unique data of each task's optimum, and of the recommendation."""
    for r in records:
        if "epochs" in r:
            out.print(f"task '{r['task']}': epochs over the unique data D*/U {fmt.interval(r['epochs'])}; "
                      f"recommended {r['recommended']['epochs']:.3g}", highlight=False)


def _query_formula(r: dict) -> str:
    from .budget import budget_from_dict

    return budget_from_dict(r["budget"]).query_formula()


def _p(x: float) -> str:
    return "n/a" if x is None or x != x else f"{x:.2f}"


P_BEATS_TEXT = ("P(beats X) = posterior probability that the recommended design does strictly better than design "
                "X, both scored on the same posterior draw{scatter}; not the per-draw optimum's, which beats "
                "every fixed design by construction.")


def _budget_lines(r: dict) -> list[str]:
    """The budget with its units, and the smallest model considered and why."""
    from .budget import budget_from_dict

    b, c = r["budget"], r.get("constraints", {})
    T = b.get("tokens_per_sample", 1.0)
    B = budget_from_dict(b)
    q = B.query_formula()
    serving = B.serving_label()
    if b.get("kind") == "split":
        text = (f"budget: training C_train = 6ND = {b['train_flops']:.3g} FLOPs; inference "
                f"C_inf = {q} = {b['inference_flops']:.3g} {B.units()} per query with T = {T:g} tokens per sample"
                f"{serving}")
    else:
        text = (f"budget: 6ND + Q x ({q}) = {b['total_flops']:.3g} {B.units()} over Q = {b['queries']:.3g} "
                f"queries with T = {T:g} tokens per sample{serving}") if q != "2NkT" or serving else (
                f"budget: 6ND + 2NkTQ = {b['total_flops']:.3g} FLOPs over Q = {b['queries']:.3g} queries with "
                f"T = {T:g} tokens per sample")
    src = {"user": "set by --min-params", "data": "a tenth of the smallest model in the data",
           "default": "default; no data to derive it from"}.get(c.get("min_params_source"), "")
    bounds = [f"{name.replace('_', '-')} {c[name]:g}" for name in ("max_params", "max_tokens", "k_max")
              if c.get(name) is not None]
    lines = [text, f"smallest model considered: {c.get('min_params', float('nan')):.3g} parameters ({src}; "
                   f"change with --min-params)" + (f"; constraints: --{', --'.join(bounds)}" if bounds else "")]
    if c.get("unique_tokens") is not None:
        lines.append(fmt.repetition_line(c["unique_tokens"], r.get("repetition", {})))
    return lines


def _read_report_data(path: Path | None):
    """The report's --data file (validated as `fit` reads it), or None."""
    if path is None:
        return None
    from .data import read_data

    return read_data(path)


def _print_optimum(records: list[dict], label: str) -> None:
    from .summary import bound_warnings, extrapolation_lines

    if not records:
        return
    r0 = records[0]
    prob = r0["N"]["prob"]
    metric = r0["metric_name"]
    for line in _budget_lines(r0):
        out.print(line, highlight=False)
    table = Table(title=f"T2 optimum, {label}: per-draw optimum (median [{prob:.0%} interval]) and the designs "
                        f"to compare ({metric} median)")
    for col in ("task", "N*", "D*", "k*", "tokens/param", metric, "recommended N, D, k", metric,
                "Chinchilla N, D, k", metric, "train-optimal N, D, k", metric, "P(beats Chinchilla)",
                "P(beats train-optimal)"):
        table.add_column(col)
    for r in records:
        c, t, rec = r["chinchilla"], r["train_optimal"], r["recommended"]
        table.add_row(r["task"], fmt.interval(r["N"]), fmt.interval(r["D"]), fmt.interval(r["k"], ".0f"), fmt.interval(r["tokens_per_param"]),
                      fmt.interval(r["metric"], ".4f"), _design_cell(rec), f"{rec['metric']['median']:.4f}",
                      _design_cell(c), "n/a" if not c["feasible"] else f"{c['metric']['median']:.4f}",
                      _design_cell(t), f"{t['metric']['median']:.4f}", _p(r["p_beats_chinchilla"]),
                      _p(r["p_beats_train_optimal"]))
    out.print(table)
    _print_epochs(records)
    scatter = r0.get("metric_includes", "law") != "law"
    out.print(f"{metric}: {r0.get('metric_includes', 'law')}. Recommended = the design at the posterior-median "
              f"optimum (the one to commit to). Chinchilla = the largest D = 20N model the budget allows, with the "
              f"k its inference budget affords; train-optimal = the law's own compute-optimal model for k = 1, "
              f"with the k its inference budget affords. FLOPs/query = {_query_formula(r0)}.", highlight=False)
    out.print(P_BEATS_TEXT.format(scatter=" and the same fresh checkpoint effect" if scatter else ""),
              highlight=False)
    for line in extrapolation_lines(records):
        out.print(line, highlight=False)
    _warn(bound_warnings(records))


def _print_decision(records: list[dict], attrs: dict) -> None:
    if not records:
        return
    r0 = records[0]
    metric, prob = r0["metric_name"], r0["chosen"]["metric"]["prob"]
    target = r0["target"]
    if "confidence" in r0:
        title = (f"cheapest budget reaching {metric} target {target:g} with P >= {r0['confidence']:g} "
                 f"(scaling {attrs['scaled']})")
    else:
        title = f"decision, {attrs['budget_label']}, risk {r0['risk']}"
        for line in _budget_lines(r0):
            out.print(line, highlight=False)
    table = Table(title=f"{title} (median [{prob:.0%} interval])")
    cols = ["task", "design", "N", "D", "k", "tokens/param", "FLOPs/query", metric]
    if target is not None:
        cols.append(f"P(target {target:g})")
    cols += ["E(regret)", "utility", "P(chosen beats it)"]
    if "confidence" in r0:
        cols.insert(2, attrs["scaled"])
    for col in cols:
        table.add_column(col)
    for r in records:
        for name in ("chosen", "chinchilla", "train_optimal", "median_optimum"):
            d = r[name]
            if d.get("feasible") is False:
                row = [r["task"], name.replace("_", " "), "infeasible at this budget", "", "", "", "", "n/a"]
                if target is not None:
                    row.append("n/a")
                row += ["n/a", "n/a", "n/a"]
            else:
                beats = {"chinchilla": r["p_beats_chinchilla"], "train_optimal": r["p_beats_train_optimal"]}
                row = [r["task"], name.replace("_", " "), f"{d['N']:.3g}", f"{d['D']:.3g}", f"{d['k']:.0f}",
                       f"{d['tokens_per_param']:.3g}", _per_query(d), fmt.interval(d["metric"], ".4f")]
                if target is not None:
                    row.append(_p(d["p_target"]))
                row += [f"{d['expected_regret']:.3g}", f"{d['utility']:.4g}",
                        _p(beats[name]) if name in beats else ""]
            if "confidence" in r0:
                row.insert(2, f"{r['budget'][attrs['scaled']]:.3g}")
            table.add_row(*row)
    out.print(table)
    _print_epochs(records)
    scatter = r0.get("metric_includes", "law") != "law"
    out.print(f"{metric}: {r0.get('metric_includes', 'law')}. E(regret) = mean over draws of how much worse the "
              f"design does than that draw's own optimum (never clipped). FLOPs/query = {_query_formula(r0)}.",
              highlight=False)
    out.print(P_BEATS_TEXT.replace("the recommended design", "the chosen design").format(
        scatter=" and the same fresh checkpoint effect" if scatter else ""), highlight=False)


def _click_error_types() -> tuple[type, ...]:
    """Click's exception base class(es): typer may vendor its own copy of click, so the plain `click` package's
    classes alone would miss its usage errors (a non-numeric `--train-flops` would then exit 1)."""
    import typer

    found = [c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"]
    try:
        import click

        found.append(click.ClickException)
    except ImportError:  # pragma: no cover - typer without a separate click
        pass
    return tuple(dict.fromkeys(found))


def _fail(message: str, code: int) -> None:
    """One line on stderr, then exit with `code`."""
    sys.stderr.write(f"bayes-t2: {' '.join(str(message).split())}\n")
    sys.exit(code)


def main(argv: Optional[list[str]] = None) -> None:
    """Entry point: run the app, turning every error into one line on stderr and an exit code.

    2: bad input or usage (`InputError`, click's usage errors: a non-numeric option, a missing argument, an
    unknown option); 1: anything else (a bug or the machine). Never a traceback. `argv` (without the program
    name) lets tests run the command line in-process.
    """
    warnings.formatwarning = lambda message, *args, **kwargs: f"bayes-t2: warning: {message}\n"  # one line
    warnings.filterwarnings("once", message="prior only")  # optimize, predict and decide may all repeat it
    click_errors = _click_error_types()
    try:
        code = app(args=argv, standalone_mode=False, prog_name="bayes-t2")
    except InputError as e:
        _fail(f"error: {e}", 2)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        _fail("interrupted", 1)
    except Exception as e:  # noqa: BLE001 - a CLI shows one line, never a traceback
        if isinstance(e, click_errors):
            if type(e).__name__ == "NoArgsIsHelpError":  # the help is already on stdout
                sys.exit(2)
            code = int(getattr(e, "exit_code", 1))
            ctx = getattr(e, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if code == 2 and ctx is not None else ""
            _fail(f"error: {e.format_message()}{hint}", code)
        if type(e).__name__ == "Abort":  # click's / typer's Abort: the user stopped an interactive prompt
            _fail("aborted", 1)
        _fail(f"failed: {type(e).__name__}: {e}", 1)
    if isinstance(code, int) and code:  # typer.Exit(code) under standalone_mode=False is returned, not raised
        sys.exit(code)


if __name__ == "__main__":
    main()
