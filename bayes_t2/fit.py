"""Sample a route's posterior, diagnose it, and save/load it as one netCDF file.

The fit file is an ArviZ DataTree (`posterior`, `sample_stats`, `observed_data`, `constant_data`); its root
attributes carry everything needed to reuse it: the route, the model specification (JSON), the reference
scaling, the package version, the input data's hash and the sampler settings.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from . import __version__
from .data import EvalData
from .errors import InputError
from .io import atomic_write
from .priors import load_spec, read_prior_file, spec_to_json
from .routes.extrapolation import discrepancy_by_task, with_discrepancy
from .routes.loss import LossRoute, Scaling, loss_route_for
from .samplers import SAMPLERS, check_sampler, model_key, sample

FIT_FORMAT = "bayes-t2-fit/1"
KIND_FOR_ROUTE = {"loss": "loss", "accuracy": "samples"}


@dataclass(frozen=True)
class SamplerSettings:
    """How to sample. Defaults measured on 2 cores: nutpie with a low-rank mass matrix, centred pooling."""

    draws: int = 1000
    tune: int = 1000
    chains: int = 4
    seed: int = 0
    sampler: str = "nutpie"
    target_accept: float = 0.9
    #: also store the pointwise groups ArviZ tools need: log_likelihood (LOO, compare), log_prior
    #: (power-scaling sensitivity) and posterior_predictive (checks); float32, ~2-3 s extra
    pointwise: bool = True
    #: threads (nutpie) or processes (pymc) running chains; None: one per chain up to the machine's cores
    cores: int | None = None

    def __post_init__(self) -> None:
        for name in ("draws", "tune", "chains"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"--{name} must be a positive integer, got {getattr(self, name)}")
        if not 0 <= int(self.seed) < 2**32:  # the samplers' seed range
            raise InputError(f"--seed must be an integer in [0, 2**32), got {self.seed}")
        check_sampler(self.sampler)
        if self.cores is not None and int(self.cores) < 1:
            raise InputError(f"--cores must be a positive integer, got {self.cores}")
        if not 0.5 <= self.target_accept < 1:
            raise InputError(f"--target-accept must be in [0.5, 1), got {self.target_accept}")


@dataclass(frozen=True)
class Diagnostics:
    """Convergence summary over the law's coefficients, with plain-words warnings."""

    max_rhat: float
    min_ess_bulk: float
    divergences: int
    n_samples: int
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.warnings


#: Coefficients of the law in (N, D) per task: E, A, alpha, B, beta on the loss route; on the accuracy route the
#: Beta mean's level and slope, the N/D weight and the two exponents. A task with fewer distinct checkpoints
#: (params, tokens) than this leaves some of them to the prior alone.
LAW_COEFFICIENTS_ND = 5
#: The sampling term G/k^gamma adds two coefficients beside the level at k = 1: it needs three distinct k.
K_VALUES_FOR_K_TERM = 3
#: Root attribute of a fit made with `allow_prior_only`: JSON list of what the data could not identify.
PRIOR_ONLY_ATTR = "prior_only"


def identification_problems(data: EvalData | Mapping[str, EvalData], *, k_term: bool = True) -> list[str]:
    """What the data lack to identify the law, one phrase per problem (empty when nothing is missing).

    Per task: at least two model sizes, two token counts and `LAW_COEFFICIENTS_ND` distinct (params, tokens)
    checkpoints; on loss data with k > 1 (when the k term is fitted, `k_term`), `K_VALUES_FOR_K_TERM` distinct
    k. Counted from the data alone, so the rule does not depend on the sampler.
    """
    parts = list(data.values()) if isinstance(data, Mapping) else [data]
    problems: list[str] = []
    for part in parts:
        frame = part.frame
        where = ", ".join(part.sources) or "the data"
        checkpoints = frame[["params", "tokens"]].drop_duplicates()
        if len(checkpoints) == 1:
            n, d = checkpoints.iloc[0]
            problems.append(f"{where} has one checkpoint (params {n:.3g}, tokens {d:.3g}); a law in N and D needs "
                            f"at least {LAW_COEFFICIENTS_ND} distinct (params, tokens) points per task")
            continue
        fits_k = k_term and part.kind == "loss" and bool((frame["k"] != 1).any())
        for task, rows in frame.groupby("task", sort=True):
            lacks = []
            n_params, n_tokens = rows["params"].nunique(), rows["tokens"].nunique()
            n_points = len(rows[["params", "tokens"]].drop_duplicates())
            if n_params < 2:
                lacks.append(f"a single model size ({rows['params'].iloc[0]:.3g})")
            if n_tokens < 2:
                lacks.append(f"a single token count ({rows['tokens'].iloc[0]:.3g})")
            if n_points < LAW_COEFFICIENTS_ND:
                lacks.append(f"{n_points} distinct (params, tokens) point{'s' if n_points > 1 else ''}, fewer than "
                             f"the law's {LAW_COEFFICIENTS_ND} coefficients in N and D")
            if fits_k and rows["k"].nunique() < K_VALUES_FOR_K_TERM:
                lacks.append(f"{rows['k'].nunique()} distinct k, fewer than the {K_VALUES_FOR_K_TERM} the sampling "
                             f"term G/k^gamma needs")
            if lacks:
                problems.append(f"{where}, task '{task}': {'; '.join(lacks)}")
    return problems


def check_identifiable(problems: Sequence[str], allow_prior_only: bool) -> None:
    """Refuse data that cannot identify the law (one line: the first problem and how many more), unless the
    user asked for a prior-only fit."""
    if not problems or allow_prior_only:
        return
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    raise InputError(f"the data cannot identify the law: {problems[0]}{more}; add runs, or pass "
                     f"--allow-prior-only to fit anyway (every interval is then the prior's)")


def prior_only_notes(tree: xr.DataTree) -> list[str]:
    """The note every output of a prior-only fit carries (empty for a fit whose data identify the law)."""
    raw = tree.attrs.get(PRIOR_ONLY_ATTR)
    if not raw:
        return []
    try:
        problems = json.loads(raw)
    except (TypeError, json.JSONDecodeError):
        problems = [str(raw)]
    first = problems[0] if problems else "unknown"
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return [f"prior only: the data cannot identify the law ({first}{more}); every interval is the prior's, "
            f"not a measurement"]


def route_for(data: EvalData, route: str | None = None):
    """The route object for a data set: chosen from its kind unless forced."""
    source = ", ".join(getattr(data, "sources", ())) or None
    name = route or next((r for r, kind in KIND_FOR_ROUTE.items() if kind == data.kind), None)
    if name is None:
        raise InputError(f"data of kind '{data.kind}' cannot be fitted yet; use loss or samples data",
                         source=source)
    if name not in KIND_FOR_ROUTE:
        raise InputError(f"unknown route '{name}'; choose one of {', '.join(KIND_FOR_ROUTE)}")
    expected = KIND_FOR_ROUTE[name]
    if expected != data.kind:
        raise InputError(f"--route {name} needs '{expected}' data, but the data are of kind '{data.kind}'",
                         source=source)
    return get_route(name)


def get_route(name: str):
    if name == "loss":
        return LossRoute
    if name == "accuracy":
        from .routes.accuracy import AccuracyRoute

        return AccuracyRoute
    raise InputError(f"unknown route '{name}'")


class Fit:
    """A fitted T2 law: the DataTree plus the route that knows how to read it."""

    def __init__(self, tree: xr.DataTree) -> None:
        attrs = tree.attrs
        if attrs.get("bayes_t2_format") != FIT_FORMAT:
            raise InputError("not a bayes-t2 fit file (no bayes_t2_format attribute)")
        self.tree = tree
        self.route = get_route(attrs["route"])
        if self.route is LossRoute and "posterior" in tree.children:  # a warm-up law reads w too
            self.route = loss_route_for(tree["posterior"].data_vars)
        self.spec: dict[str, Any] = json.loads(attrs["model_spec"])
        self.scaling: dict[str, float] = json.loads(attrs["scaling"])

    # ---- reading -------------------------------------------------------------------------------------------
    @property
    def posterior(self) -> xr.Dataset:
        return self.tree["posterior"].to_dataset()

    @property
    def discrepancy(self) -> dict[str, Any]:
        """The law's error beyond the data this fit carries: {"scale": sd per e-fold beyond the data (0: none)
        of log loss, or of the logit of the mean success on the accuracy route; with "by_task" the scale of the
        tasks not in it), "by_task": {task: scale} (empty: one scale for every task), plus "source"
        ("learned": with the folds and points it was learned from, or why not; "model file") when the fit did
        not get it as a number."""
        from .routes.extrapolation import discrepancy_scale

        learned = json.loads(self.tree.attrs.get(DISCREPANCY_ATTR, "null")) or {}
        return {**learned, "scale": discrepancy_scale(self.spec), "by_task": discrepancy_by_task(self.spec)}

    @property
    def discrepancy_scales(self) -> xr.DataArray:
        """The discrepancy scale each task carries (sd per e-fold beyond the data; its own when learned per task,
        else the one scale), as a DataArray over ``task`` for notebooks and plots."""
        from .routes.extrapolation import task_scale_array

        return task_scale_array(self.spec, self.posterior["task"].values)

    @property
    def tasks(self) -> list[str]:
        return [str(t) for t in self.posterior["task"].values]

    def coefficients(self) -> xr.Dataset:
        """The law's coefficients per draw and task (what the optimizer and predictions consume)."""
        return self.posterior[list(self.route.coefficient_names)]

    def diagnostics(self) -> Diagnostics:
        return diagnose(self.tree, list(self.route.coefficient_names))

    # ---- derived -------------------------------------------------------------------------------------------
    def optimize(self, budgets=None, constraints=None, *, draws_per_chunk: int | None = None, law: bool = False,
                 seed: int = 0, **budget_options: Any) -> xr.Dataset:
        """Per-draw optimum (N*, D*, k*) for each task and budget: an xarray Dataset (chain, draw, task, budget),
        with the baselines, the recommended design, P(beats) and the bound shares (`bayes_t2.baselines`).

        The budget: keywords as the CLI options (``fit.optimize(train_flops=2.56e19, inference_flops=2e9)``,
        ``total_flops=, queries=``, ``tokens_per_sample=``, ``max_tokens=``, ``max_params=``, ``min_params=``,
        ``k_max=``), or `Budget` objects (one or a list) and a `Constraints`. An unset min_params becomes a
        tenth of the smallest model in the data.
        law: score designs on the law alone; default False, a new run's metric (the law plus the fitted
        checkpoint scatter, one fresh effect per draw drawn with `seed` and shared by every design).
        draws_per_chunk: split the posterior into Dask chunks over `draw` and compute them on the active Dask
        scheduler (a distributed Client inside `bayes_t2.cluster.dask_client`, else local threads); the result
        is the same to the last bit and comes back computed. Needs dask (`bayes-t2[scale]`).
        """
        from .baselines import add_decision_quantities, resolve_constraints
        from .options import resolve
        from .repetition import repeated_view

        budgets, constraints = resolve(budgets, constraints, budget_options)
        budgets = list(budgets)
        view = repeated_view(self, constraints, seed)  # unique_tokens: the law at the effective design
        if view is not self:
            return view.optimize(budgets, constraints, draws_per_chunk=draws_per_chunk, law=law, seed=seed)
        constraints = resolve_constraints(self, constraints)
        from .optimum import add_extrapolation, bent_fit

        bent = bent_fit(self, seed)  # the law with its discrepancy beyond the data (itself when it has none)
        coefficients = bent.coefficients()
        if draws_per_chunk is not None:
            try:
                import dask.array  # noqa: F401
            except ImportError:
                raise InputError("chunked optimisation needs dask: pip install 'bayes-t2[scale]'") from None
            coefficients = coefficients.chunk({"draw": int(draws_per_chunk)})
        from .criticism import ExtrapolationWarning, extrapolation_notes

        opt = route_optimum(bent.route, coefficients, budgets, constraints)
        opt = opt.compute() if draws_per_chunk is not None else opt
        opt = add_decision_quantities(bent, opt, budgets, constraints, law=law, seed=seed)
        opt = add_extrapolation(bent, opt, budgets, constraints, law=law, seed=seed)
        if constraints.unique_tokens is not None:  # epochs over the unique data, per draw
            opt["epochs"] = opt["D"] / constraints.unique_tokens
            opt["recommended_epochs"] = opt["recommended_D"] / constraints.unique_tokens
            from .repetition import repetition_source

            opt.attrs["repetition"] = json.dumps(repetition_source(self))
        notes = prior_only_notes(self.tree) + extrapolation_notes(self, opt)
        opt.attrs["warnings"] = json.dumps(notes)
        for note in notes:
            warnings.warn(note, ExtrapolationWarning, stacklevel=2)
        return opt

    def optimum_records(self, budgets, constraints=None, prob: float = 0.9, *, budgets_per_chunk: int = 8,
                        draws_per_chunk: int | None = None, progress: bool = False, law: bool = False,
                        seed: int = 0) -> list[dict]:
        """optimum.json records (task-major, budgets in order) for every task and budget.

        Solved `budgets_per_chunk` budgets at a time and summarised at once, so memory stays bounded by draws x
        budgets_per_chunk whatever the number of budgets (the full sweep of 1e5 draws x 200 budgets would hold
        1.6 GB). progress: show a bar over the budgets (interactive sessions only). law, seed: as `optimize`.
        """
        from .progress import progress as progress_bar
        from .summary import optimum_records

        budgets = list(budgets)
        if budgets_per_chunk < 1:
            raise InputError(f"budgets_per_chunk must be a positive integer, got {budgets_per_chunk}")
        per_task: dict[str, list[dict]] = {task: [] for task in self.tasks}
        with progress_bar("solving budgets", len(budgets), progress) as advance:
            for start in range(0, len(budgets), budgets_per_chunk):
                chunk = budgets[start:start + budgets_per_chunk]
                opt = self.optimize(chunk, constraints, draws_per_chunk=draws_per_chunk, law=law, seed=seed)
                for record in optimum_records(opt, self.route.metric_name, self.route.lower_is_better, prob):
                    per_task[record["task"]].append(record)
                advance(len(chunk))
        return [record for task in self.tasks for record in per_task[task]]

    def metric_at(self, N: Any, D: Any, k: Any, *, new_checkpoint: bool = True, seed: int = 0,
                max_draws: int | None = None) -> xr.DataArray:
        """Posterior of the metric at (N, D, k) for every draw and task: a DataArray, inputs broadcast as given
        (xarray inputs keep their dims; 1-d arrays get dim ``point``), nothing validated (callers do: the
        CLI's `predict.read_points`, the API's `predict`).

        new_checkpoint=True (default): what a newly trained checkpoint would show, i.e. the law plus the
        fitted scatter of checkpoints around it (the posterior predictive; seeded). False: the law alone.
        max_draws keeps every s-th draw of each chain so that at most that many remain (plots on big grids).
        """
        _warn_prior_only(self.tree)
        names = list(self.route.coefficient_names)
        if new_checkpoint:
            names += [v for v in self.route.noise_names if v in self.posterior]
        coefficients = self.posterior[names]
        if max_draws is not None:
            n = coefficients.sizes["chain"] * coefficients.sizes["draw"]
            coefficients = coefficients.isel(draw=slice(None, None, max(1, -(-n // max(1, max_draws)))))
        if not new_checkpoint:
            return self.route.metric(coefficients, N, D, k).rename(self.route.metric_name)
        return self.route.metric(coefficients, N, D, k, rng=np.random.default_rng(seed),
                                 spec=self.spec).rename(self.route.metric_name)

    def predict(self, params: Any = None, tokens: Any = None, k: Any = 1, *, law: bool = False, seed: int = 0,
                max_draws: int | None = None, new_checkpoint: bool | None = None,
                unique_tokens: Any = None) -> xr.Dataset:
        """Posterior of the metric at model size `params`, training tokens `tokens` and `k` samples per query,
        per draw and task: a Dataset with one variable named after the metric (``loss`` or ``pass_at_k``).

        Scalars give dims (chain, draw, task) with scalar coordinates params, tokens, k; arrays (broadcast
        together) add a dim ``point`` carrying them. Every point is checked as the CLI's ``predict`` checks
        it (positive N and D, integer k >= 1). law=False (default): what a newly trained checkpoint would
        show, the law plus the fitted scatter of checkpoints around it (seeded); law=True: the law alone.

        `new_checkpoint` (given) selects the earlier form of this method, which returns `metric_at`'s bare
        DataArray; new code calls `metric_at` for that.
        unique_tokens: the unique tokens U each point's run trains on (broadcast with the points; NaN or None:
        fresh data): the law is evaluated at the effective design of the data-constrained law
        (`bayes_t2.repetition`; R* fitted, or from the published prior, drawn with `seed`).
        """
        if new_checkpoint is not None:
            return self.metric_at(params, tokens, k, new_checkpoint=new_checkpoint, seed=seed, max_draws=max_draws)
        from .predict import read_points

        if params is None or tokens is None:
            raise InputError("give params= (model size N) and tokens= (training tokens D)")
        u_given = unique_tokens is not None
        unique_tokens = np.nan if unique_tokens is None else unique_tokens
        scalar = all(np.ndim(v) == 0 for v in (params, tokens, k, unique_tokens))
        arrays = np.broadcast_arrays(*(np.atleast_1d(np.asarray(v, dtype=object))
                                       for v in (params, tokens, k, unique_tokens)))
        points = [read_points(None, params=p, tokens=d, k=kk, unique_tokens=u)[0]
                  for p, d, kk, u in zip(*(a.ravel() for a in arrays))]
        point = np.arange(len(points))
        names = ("params", "tokens", "k") + (("unique_tokens",) if u_given else ())
        coords = {name: ("point", np.array([p.get(name, np.nan) for p in points])) for name in names}
        grid = {name: xr.DataArray(coords[name][1], dims="point", coords={"point": point}) for name in names}
        view = self
        if u_given:  # the data-constrained law at each point's U
            from .repetition import repeated_fit

            view = repeated_fit(self, grid["unique_tokens"], seed)
        pred = view.metric_at(grid["params"], grid["tokens"], grid["k"], new_checkpoint=not law, seed=seed,
                              max_draws=max_draws)
        ds = pred.to_dataset(name=self.route.metric_name).assign_coords(point=point, **coords)
        ds.attrs.update({"metric_name": self.route.metric_name, "law": int(law), "seed": seed,
                         "what": "the law" if law else "a new checkpoint (law + checkpoint scatter)"})
        return ds.isel(point=0).drop_vars("point") if scalar else ds

    def summary(self, opt: xr.Dataset, prob: float = 0.9) -> pd.DataFrame:
        """The table of an `optimize` result: per (task, budget), the median, mean and equal-tailed `prob`
        interval of N*, D*, k*, tokens per parameter and the metric, the baselines and P(beats each).

        The rows of optimum.json (`summary.optimum_records`, as the CLI writes them), flattened: nested
        fields become ``N_median``, ``chinchilla_N``, ``bounds_k_max`` ...
        """
        from .summary import optimum_records

        labels = opt["label"] if "label" in opt.coords else opt["budget"]  # Budget.label(), as the CLI says
        records, budget_labels = [], []
        for b in opt["budget"].values:
            part = optimum_records(opt.sel(budget=[b]), self.route.metric_name, self.route.lower_is_better, prob)
            records += part
            budget_labels += [str(labels.sel(budget=b).item())] * len(part)
        table = pd.json_normalize(records, sep="_")
        table.insert(1, "budget", budget_labels)
        table = table.drop(columns=[c for c in table.columns if c.endswith("_prob")])
        table["prob"] = prob
        return table.set_index(["task", "budget"])

    def decide(self, budget=None, constraints=None, *, risk: str = "mean", target: float | None = None,
               task: str | None = None, prob: float = 0.9, min_budget: bool = False, confidence: float = 0.9,
               law: bool = False, seed: int = 0, **budget_options: Any):
        """One design (N, D, k) to commit to per task under one budget and a risk attitude (``mean``,
        ``quantile:Q``, ``cvar:Q``, ``prob`` = P(reach `target`)), against the baselines: a `Decision`
        (``.table``, ``.to_json()``, ``.dataset``). The budget as in `optimize` (keywords or objects).
        min_budget: the cheapest budget (scaling the training or total budget) that reaches `target` with
        probability `confidence`, as ``bayes-t2 decide --min-budget``. law, seed: as `optimize` (default: a
        new run's metric, law plus checkpoint scatter).
        """
        from .decide import decide as run_decide, min_budget as run_min_budget
        from .options import resolve
        from .results import Decision

        budget, constraints = resolve(budget, constraints, budget_options, many=False)
        if min_budget:
            if risk != "mean":
                raise InputError("--min-budget maximises P(reach --target); drop --risk")
            if target is None:
                raise InputError("--min-budget needs --target")
            return Decision(run_min_budget(self, budget, constraints, target=target, confidence=confidence,
                                           task=task, prob=prob, law=law, seed=seed))
        return Decision(run_decide(self, budget, constraints, risk=risk, target=target, task=task, prob=prob,
                                   law=law, seed=seed))

    def report(self, path: str | Path, budget=None, constraints=None, *, prob: float = 0.9, risk: str = "mean",
               target: float | None = None, overwrite: bool = False, progress: bool = False,
               fit_name: str = "FIT.nc", law: bool = False, seed: int = 0, backtest: bool | None = None,
               data: Any = None, **budget_options: Any):
        """Write the multi-page PDF report (as ``bayes-t2 report``) and return what was written (`Report`:
        path, page titles, problems stated on the pages). The budget, law and seed as in `optimize`.
        backtest, data: the backtest page (`report.write_report`; data: EvalData or a path)."""
        import matplotlib.pyplot as plt

        from .budget import check_feasible
        from .options import resolve
        from .baselines import resolve_constraints
        from .data import read_data
        from .report import check_reportable, write_report

        budget, constraints = resolve(budget, constraints, budget_options, many=False)
        constraints = resolve_constraints(self, constraints)
        check_feasible(budget, constraints)
        check_reportable(self)
        with plt.ioff():
            return write_report(self, path, budget, constraints, prob=prob, risk=risk, target=target,
                                overwrite=overwrite, progress=progress, fit_name=fit_name, law=law, seed=seed,
                                backtest=backtest, data=read_data(data) if isinstance(data, (str, Path)) else data)

    # ---- files ---------------------------------------------------------------------------------------------
    def save(self, path: str | Path, *, overwrite: bool = False, optimum: xr.Dataset | None = None,
             predictions: xr.Dataset | None = None, decision: Any = None) -> Path:
        """Write the fit (one netCDF file, atomically; an existing file only with `overwrite`).

        Derived results given here are stored with it as their own DataTree groups -- ``optimum`` (from
        `optimize`), ``predictions`` (from `predict`), ``decision`` (a `Decision` or its dataset) -- with
        their named dims and coordinates; `bayes_t2.load` reads them back as `fit.results[name]`.
        """
        tree = self.tree.copy()
        for name, value in (("optimum", optimum), ("predictions", predictions), ("decision", decision)):
            if value is None:
                continue
            ds = getattr(value, "dataset", value)
            if not isinstance(ds, xr.Dataset):
                raise InputError(f"{name} must be an xarray Dataset, got {type(value).__name__}")
            tree[name] = xr.DataTree(_storable(ds))
        return atomic_write(path, lambda p: tree.to_netcdf(p, engine="h5netcdf"), overwrite=overwrite)

    @property
    def results(self) -> dict[str, xr.Dataset]:
        """Derived results stored with the fit (`save(optimum=..., predictions=..., decision=...)`) by name."""
        return {name: self.tree[name].to_dataset() for name in DERIVED_GROUPS if name in self.tree.children}

    @classmethod
    def load(cls, path: str | Path) -> "Fit":
        """Read a fit file; anything else (missing, truncated, damaged, another netCDF, a fit without a usable
        posterior) raises an InputError naming the file. The attributes and the posterior's layout are checked
        before the arrays are read, so a foreign file is refused at once."""
        path = Path(path)
        if not path.exists():
            raise InputError(f"{path}: fit file not found")
        if path.is_dir():
            raise InputError(f"{path}: is a directory, expected a fit file")
        try:
            import h5py

            with h5py.File(path, "r") as raw:  # the root attributes alone, in milliseconds
                fmt = raw.attrs.get("bayes_t2_format")
            if (fmt.decode() if isinstance(fmt, bytes) else fmt) != FIT_FORMAT:
                raise InputError(f"{path}: not a bayes-t2 fit file (no bayes_t2_format attribute)")
            with xr.open_datatree(path, engine="h5netcdf") as lazy:
                _check_fit_tree(cls, lazy, path)
                tree = lazy.load()
        except InputError:
            raise
        except Exception as err:  # noqa: BLE001 - any reader failure means "not a netCDF fit file"
            raise InputError(f"{path}: not a bayes-t2 fit file (cannot read it as netCDF: "
                             f"{type(err).__name__})") from None
        return cls(tree)


def _check_fit_tree(cls, tree: xr.DataTree, path: Path) -> None:
    """InputError naming `path` unless `tree` has a fit's attributes and a usable posterior."""
    try:
        result = cls(tree)
    except InputError as err:
        raise InputError(f"{path}: {err}") from None
    except (KeyError, TypeError, ValueError):  # incl. json.JSONDecodeError
        raise InputError(f"{path}: not a bayes-t2 fit file (attributes are incomplete)") from None
    problem = _structure_problem(result)
    if problem:
        raise InputError(f"{path}: not a usable bayes-t2 fit file ({problem})")


def _structure_problem(result: Fit) -> str | None:
    """What a file that claims to be a fit lacks for the commands that read it (None: nothing). A damaged or
    hand-edited file is refused here, naming the file, instead of failing later inside a computation."""
    if "posterior" not in result.tree.children:
        return "no posterior group"
    post = result.tree["posterior"]
    if not isinstance(result.spec, dict) or not isinstance(result.scaling, dict):
        return "the model_spec or scaling attribute is not a JSON object"
    for name in result.route.coefficient_names:
        if name not in post.data_vars:
            return f"the posterior lacks coefficient '{name}'"
        var = post[name]
        if set(var.dims) != {"chain", "draw", "task"}:
            return f"coefficient '{name}' has dims {tuple(var.dims)}, expected (chain, draw, task)"
        if var.dtype.kind not in "fi":
            return f"coefficient '{name}' is not numeric"
    if "task" not in post.coords or any(post.sizes[d] == 0 for d in ("chain", "draw", "task")):
        return "the posterior is empty (no draws or no tasks)"
    return None


#: DataTree groups holding derived results saved with a fit
DERIVED_GROUPS = ("optimum", "predictions", "decision")


def _storable(ds: xr.Dataset) -> xr.Dataset:
    """`ds` as netCDF stores it: object (string) arrays as fixed-width unicode, bool attributes as ints."""
    ds = ds.copy()
    for name, var in ds.variables.items():
        if var.dtype == object:
            ds[name] = var.astype(str)
    ds.attrs = {k: (int(v) if isinstance(v, bool) else v) for k, v in ds.attrs.items() if v is not None}
    return ds


def route_optimum(route, coefficients: xr.Dataset, budgets, constraints=None) -> xr.Dataset:
    """Per-draw optimum of a route's law for any coefficient set (a posterior, or a simulation's truth)."""
    from .budget import Constraints
    from .optimum import optimize_posterior

    opt = optimize_posterior(coefficients, list(budgets), constraints or Constraints(),
                             objective=route.objective_nb, theta_names=route.coefficient_names)
    for name in ("metric", "chinchilla_metric", "chinchilla_metric_k1"):
        opt[name] = route.metric_from_objective(opt[name])
    opt.attrs["metric_name"] = route.metric_name
    return opt


def fit(data: EvalData | Mapping[str, EvalData], *, route: str | None = None,
        priors: str | Path | dict | None = None, settings: SamplerSettings = SamplerSettings(),
        progressbar: bool = True, allow_prior_only: bool = False, discrepancy: str | float | None = None) -> Fit:
    """Build the route's hierarchical model for `data`, sample it, and return the Fit.

    discrepancy: the law's error per e-fold beyond the data (`routes/extrapolation.py`: sd of log loss, or of
    the logit of the mean success on the accuracy route). "learn" learns it from leave-the-largest-out
    backtests inside the data (`backtest.learn_discrepancy`: two more fits, by params and by compute); a number
    >= 0 fixes it; None: as the specification says (models/<route>.toml `[discrepancy] scale`). Data too small
    for an inner backtest get 0, said in `Fit.discrepancy`. Joint fits have none.

    Data that cannot identify the law (`identification_problems`: one checkpoint, a single model size or token
    count per task, fewer checkpoints than the law's coefficients) raise an InputError unless
    `allow_prior_only`; the fit then records what is missing (attribute `prior_only`) and every output says
    its intervals are the prior's.

    `data` is one EvalData, or a mapping kind -> EvalData (as `data.read_datasets` returns): loss and samples
    data together are fitted jointly, sharing one loss law (routes/joint.py; `priors` then overrides the
    accuracy part, the loss law uses models/loss.toml). The compiled model is cached per process
    (`bayes_t2.samplers`): a second fit of the same route, specification and data shapes skips compilation.
    """
    priors, learned = _resolve_discrepancy(data, route, priors, discrepancy, settings, allow_prior_only)
    model, route_obj, spec, data_hash, sources, problems = _build(data, route, priors, allow_prior_only)
    started = time.perf_counter()
    with model, warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module="pymc")
        # the discrepancy acts at prediction time only: a learned scale must not force a recompile
        graph_spec = {name: value for name, value in spec.items() if name != "discrepancy"}
        key = model_key(route_obj.name, spec_to_json(graph_spec), model, settings.sampler)
        tree = sample(model, key, sampler=settings.sampler, draws=settings.draws, tune=settings.tune,
                      chains=settings.chains, seed=settings.seed, target_accept=settings.target_accept,
                      cores=settings.cores, progressbar=progressbar)
        seconds = time.perf_counter() - started
        if settings.pointwise:
            _add_pointwise_groups(tree, settings.seed)
    scaling = getattr(model, "bayes_t2_scaling", None)
    tree.attrs.update({
        "bayes_t2_format": FIT_FORMAT,
        "bayes_t2_version": __version__,
        "route": route_obj.name,
        "metric_name": route_obj.metric_name,
        "model_spec": spec_to_json(spec),
        "scaling": json.dumps(scaling.as_dict() if isinstance(scaling, Scaling) else (scaling or {})),
        "data_sha256": data_hash,
        "data_sources": json.dumps(sources),
        "sampler_settings": json.dumps(asdict(settings)),
        "sampling_seconds": round(seconds, 2),
    })
    if learned is not None:
        tree.attrs[DISCREPANCY_ATTR] = json.dumps(learned)
    if problems:
        tree.attrs[PRIOR_ONLY_ATTR] = json.dumps(problems)
    result = Fit(tree)
    _warn_prior_only(tree)
    return result


#: fit-file attribute holding how the discrepancy scale was learned (folds, points, or why it was not)
DISCREPANCY_ATTR = "discrepancy_learned"


def _resolve_discrepancy(data: Any, route: str | None, priors: str | Path | dict | None,
                         discrepancy: str | float | None, settings: SamplerSettings,
                         allow_prior_only: bool) -> tuple[str | Path | dict | None, dict[str, Any] | None]:
    """The priors with the route's discrepancy scale made a number (learned when asked for), and the record of
    where it came from: "source" "learned" (with the folds, or a note why it could not be) or "model file";
    None when the caller gave the number. Joint fits pass through (no discrepancy)."""
    if isinstance(data, Mapping) and len(data) == 1:
        data = next(iter(data.values()))
    if isinstance(data, Mapping):
        if discrepancy not in (None, "learn", 0, 0.0):
            raise InputError("--discrepancy applies to a fit of one kind of data (loss or samples), not a joint fit")
        return priors, None
    name = route_for(data, route).name
    spec = load_spec(name, priors)
    value = discrepancy if discrepancy is not None else (spec.get("discrepancy") or {}).get("scale", 0.0)
    learned = None
    by_task: dict[str, float] = {}
    if value == "learn":
        from .backtest import learn_discrepancy

        if identification_problems(data, k_term=spec.get("k_term", "auto") != "off"):
            scale, learned = 0.0, {"scale": 0.0, "note": "not learned: the data cannot identify the law"}
        else:
            try:
                learned = learn_discrepancy(data, route=name, priors=priors, settings=settings, seed=settings.seed)
                scale, by_task = learned["scale"], learned["by_task"]
            except InputError as err:  # too few checkpoints for a backtest inside the data
                scale, learned = 0.0, {"scale": 0.0, "note": f"not learned: {err}"}
        learned["source"] = "learned"
    else:
        try:
            scale = float(value)
        except (TypeError, ValueError):
            raise InputError(f"discrepancy must be 'learn' or a number >= 0, got {value!r}") from None
        if not (scale >= 0 and np.isfinite(scale)):
            raise InputError(f"discrepancy must be 'learn' or a number >= 0, got {value!r}")
        if discrepancy is None:  # the model file's number (and per-task numbers, if it has them)
            by_task = discrepancy_by_task(spec)
            learned = {"scale": scale, "source": "model file", "note": "from the model file; --discrepancy learn learns it"}
    return with_discrepancy(spec, scale, by_task), learned


def _warn_prior_only(tree: xr.DataTree) -> None:
    """Warn that a fit is prior-only, in the category `Fit.optimize` uses for the same note (the CLI shows
    each such note once)."""
    from .criticism import ExtrapolationWarning

    for note in prior_only_notes(tree):
        warnings.warn(note, ExtrapolationWarning, stacklevel=3)


def _build(data: EvalData | Mapping[str, EvalData], route: str | None, priors, allow_prior_only: bool = False):
    """(model, route, spec, data hash, sources, identification problems) for one data set or a joint loss +
    samples pair; data that cannot identify the law are refused here unless `allow_prior_only`."""
    if isinstance(data, Mapping):
        kinds = set(data)
        if len(kinds) == 1:
            data = next(iter(data.values()))
        elif kinds == {"loss", "samples"}:
            if route not in (None, "accuracy"):
                raise InputError(f"loss and samples data together are fitted jointly by the accuracy route, "
                                 f"not --route {route}")
            from .routes.joint import build_joint_model, joint_spec

            loss_spec, acc_spec = load_spec("loss"), load_spec("accuracy", priors)
            loss, samples = data["loss"], data["samples"]
            problems = identification_problems(data, k_term=loss_spec.get("k_term", "auto") != "off")
            check_identifiable(problems, allow_prior_only)
            model = build_joint_model(LossRoute.observations(loss), samples.collapse_counts(), loss_spec, acc_spec)
            digest = hashlib.sha256((loss.sha256 + samples.sha256).encode()).hexdigest()
            return model, get_route("accuracy"), joint_spec(loss_spec, acc_spec), digest, \
                [*loss.sources, *samples.sources], problems
        else:
            raise InputError(f"cannot fit data of kinds {', '.join(sorted(kinds))} together; give loss data, "
                             f"samples data, or both")
    route_obj = route_for(data, route)
    spec = load_spec(route_obj.name, priors)
    problems = identification_problems(data, k_term=spec.get("k_term", "auto") != "off")
    check_identifiable(problems, allow_prior_only)
    model = route_obj.build_model(route_obj.observations(data), spec)
    return model, route_obj, spec, data.sha256, list(data.sources), problems


#: keyword arguments of `fit` a `fit_many` job may set
FIT_OPTIONS = ("route", "priors", "settings", "allow_prior_only", "discrepancy")


def fit_many(jobs: Sequence[tuple[EvalData | Mapping[str, EvalData], Mapping[str, Any] | None]], client: Any = None) -> list[Fit]:
    """Fit independent models (per task group, per prior in a sensitivity sweep), on a Dask cluster if given.

    jobs: (data, options) pairs, options being `fit`'s keyword arguments (`FIT_OPTIONS`). Prior files are read
    here, so workers need no access to them. client: a dask.distributed Client (`bayes_t2.cluster.dask_client`);
    each job then samples its chains on one thread unless its settings say otherwise (the cluster provides
    the parallelism), and a worker that fits several jobs of the same shape compiles once. Without a client
    the jobs run one after another in this process. Returns the Fits in job order.
    """
    prepared = []
    for i, (data, options) in enumerate(jobs):
        options = dict(options or {})
        unknown = sorted(set(options) - set(FIT_OPTIONS))
        if unknown:
            raise InputError(f"fit_many job {i}: unknown option(s) {', '.join(unknown)}; "
                             f"known: {', '.join(FIT_OPTIONS)}")
        if isinstance(options.get("priors"), (str, Path)):  # read here: workers may not see the file
            options["priors"] = read_prior_file(Path(options["priors"]))
        settings = options.get("settings") or SamplerSettings()
        if client is not None and settings.cores is None:
            settings = replace(settings, cores=1)
        options["settings"] = settings
        prepared.append((data, options))
    if client is None:
        return [fit(data, progressbar=False, **options) for data, options in prepared]
    futures = [client.submit(_fit_tree, data, options, pure=False) for data, options in prepared]
    return [Fit(tree) for tree in client.gather(futures)]


def _fit_tree(data: EvalData | Mapping[str, EvalData], options: dict[str, Any]) -> xr.DataTree:
    """One `fit_many` job on a worker; the DataTree travels back (the Fit is rebuilt from it)."""
    return fit(data, progressbar=False, **options).tree


def _add_pointwise_groups(tree: xr.DataTree, seed: int) -> None:
    """log_likelihood, log_prior and posterior_predictive groups (float32 to keep the file small)."""
    import pymc as pm

    pm.stats.compute_log_likelihood(tree, extend_inferencedata=True, progressbar=False)
    pm.stats.compute_log_prior(tree, extend_inferencedata=True, progressbar=False)
    pm.sample_posterior_predictive(tree, extend_inferencedata=True, random_seed=seed + 1, progressbar=False)
    for group in ("log_likelihood", "log_prior", "posterior_predictive"):
        if group in tree.children:
            ds = tree[group].to_dataset()
            tree[group] = xr.DataTree(ds.astype({v: np.float32 for v in ds.data_vars
                                                 if ds[v].dtype.kind == "f"}))


def _scales_split(rhat: xr.Dataset, post: xr.Dataset) -> bool:
    """Loss route, one checkpoint scale shared by three or more tasks, and the chains disagree on it or on a
    task's noise sd: the symptom of tasks whose checkpoint scatter differs (`sd_per_task`)."""
    if "checkpoint_sd" not in rhat or "sigma" not in rhat or post["checkpoint_sd"].ndim != 2:
        return False  # no effect, or already one scale per task (chain, draw, task has ndim 3)
    if post["sigma"].sizes.get("task", 1) < 3:
        return False
    return float(rhat["checkpoint_sd"].max()) > 1.05 or float(rhat["sigma"].max()) > 1.05


def diagnose(tree: xr.DataTree, var_names: list[str]) -> Diagnostics:
    """Max r-hat and min bulk ESS over the coefficients, divergence count, and what they mean."""
    import arviz as az

    post = tree["posterior"].to_dataset()[var_names]
    # constant coefficients (G = 0 in a k-free law) have no r-hat
    varying = [v for v in var_names if float(post[v].std()) > 0]
    n_chains, n_draws = post.sizes["chain"], post.sizes["draw"]
    if not varying:  # a hand-made or degenerate file: nothing to diagnose
        return Diagnostics(float("nan"), float("nan"), 0, n_chains * n_draws,
                           ["no coefficient varies across draws: this is not a posterior sample"]
                           + prior_only_notes(tree))
    post = post[varying]
    rhat = az.rhat(post) if n_chains > 1 else None
    ess = az.ess(post, method="bulk")
    max_rhat = float(max(float(rhat[v].max()) for v in varying)) if rhat is not None else float("nan")
    min_ess = float(min(float(ess[v].min()) for v in varying))
    notes = []
    if "sample_stats" in tree.children:
        stats = tree["sample_stats"].to_dataset()
        divergences = int(stats["diverging"].sum()) if "diverging" in stats else 0
    else:
        divergences = 0
        notes.append("the fit file has no sample_stats group: divergences cannot be checked")
    if rhat is not None and not max_rhat < 1.01:
        notes.append(f"chains disagree (max r-hat {max_rhat:.3f} >= 1.01): run longer (--tune/--draws) "
                     f"before trusting the intervals")
    if rhat is not None and _scales_split(rhat, post):
        notes.append("the chains disagree on the noise and checkpoint scales: when some tasks measure nearly the "
                     "same thing (validation sets of one corpus) one shared checkpoint scale has two basins; a "
                     "model file with [checkpoint_effect] sd_per_task = true gives each task its own "
                     "(docs/model.md)")
    if min_ess < min(400.0, 0.1 * n_chains * n_draws):
        notes.append(f"few effective draws (min bulk ESS {min_ess:.0f}): the interval ends are noisy")
    if divergences:
        notes.append(f"{divergences} divergent transitions: the sampler could not explore part of the "
                     f"posterior; raise --target-accept or check the data for outliers")
    notes += prior_only_notes(tree)  # converged or not, such intervals measure nothing
    return Diagnostics(max_rhat, min_ess, divergences, n_chains * n_draws, notes)
