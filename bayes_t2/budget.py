"""Compute budgets, design constraints and the Chinchilla baseline design.

FLOP accounting follows `shared/DESIGN.md`: a training token costs 6N, a forward (sampled) token 2N.

* `SplitBudget` (the T2 paper's convention): training budget ``C_train = 6 N D`` and per-query inference budget
  ``C_inf = 2 N k T`` (T = tokens per sample). One free variable, N.
* `TotalBudget` (end to end): ``6 N D + 2 N k T Q <= C`` over Q queries. Free: N, D, k.
* `Constraints`: the data wall (``max_tokens``), ``max_params``, ``k_max`` and the smallest model considered
  (``min_params``).

Every check raises `InputError` with one line naming the command-line option at fault.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from numbers import Integral, Real
from typing import Any

from . import designs
from .errors import InputError
from .laws import CHINCHILLA_TOKENS_PER_PARAM

__all__ = [
    "Budget",
    "Constraints",
    "SplitBudget",
    "TotalBudget",
    "check_feasible",
    "Design",
    "INFEASIBLE",
    "affordable_k",
    "chinchilla_baseline",
    "chinchilla_design",
    "design_at",
    "make_budget",
    "scaled_budgets",
]


def _show(value: Any) -> str:
    if isinstance(value, Real) and not isinstance(value, bool):
        return f"{float(value):g}"
    return repr(value)


def _positive(option: str, value: Any) -> float:
    """`value` as a positive finite float, else an InputError naming `option`."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise InputError(f"{option} must be a positive number, got {_show(value)}")
    out = float(value)
    if not math.isfinite(out) or out <= 0.0:
        raise InputError(f"{option} must be a positive number, got {_show(value)}")
    return out


class _QueryCost:
    """What a query costs under a budget (shared by both budget kinds)."""

    tokens_per_sample: float

    def query_terms(self) -> tuple[float, float, float, float]:
        """(t, n0, p, q0): a query of k samples from N parameters costs 2t (k (N + n0) + p N + q0)."""
        return tuple(float(x) for x in designs.query_terms(self.tokens_per_sample, 0.0, 0.0, True, 1.0, 1.0))

    def query_cost(self, N: float, k: float) -> float:
        """Inference FLOPs of one query of k samples from a model of N parameters."""
        return designs.query_cost(*self.query_terms(), N, k)


@dataclass(frozen=True)
class SplitBudget(_QueryCost):
    """Training FLOPs plus inference FLOPs *per query* (T2 convention): 6ND = C_train, 2NkT = C_inf."""

    train_flops: float
    inference_flops: float
    tokens_per_sample: float = 1.0

    kind = "split"

    def __post_init__(self) -> None:
        object.__setattr__(self, "train_flops", _positive("--train-flops", self.train_flops))
        object.__setattr__(self, "inference_flops", _positive("--inference-flops", self.inference_flops))
        object.__setattr__(self, "tokens_per_sample", _positive("--tokens-per-sample", self.tokens_per_sample))

    def as_dict(self) -> dict[str, Any]:
        return {"kind": "split", "train_flops": self.train_flops, "inference_flops": self.inference_flops,
                "tokens_per_sample": self.tokens_per_sample}

    def label(self) -> str:
        """The budget in words, with its units: FLOPs, and T tokens per sample."""
        return (f"train {self.train_flops:.3g} FLOPs, inference {self.inference_flops:.3g} FLOPs/query, "
                f"T={self.tokens_per_sample:.3g} tokens/sample")


@dataclass(frozen=True)
class TotalBudget(_QueryCost):
    """One end-to-end budget for training plus Q queries: 6ND + 2NkTQ <= C."""

    total_flops: float
    queries: float
    tokens_per_sample: float = 1.0

    kind = "total"

    def __post_init__(self) -> None:
        object.__setattr__(self, "total_flops", _positive("--total-flops", self.total_flops))
        object.__setattr__(self, "queries", _positive("--queries", self.queries))
        object.__setattr__(self, "tokens_per_sample", _positive("--tokens-per-sample", self.tokens_per_sample))

    def as_dict(self) -> dict[str, Any]:
        return {"kind": "total", "total_flops": self.total_flops, "queries": self.queries,
                "tokens_per_sample": self.tokens_per_sample}

    def label(self) -> str:
        """The budget in words, with its units: FLOPs, and T tokens per sample."""
        return (f"total {self.total_flops:.3g} FLOPs, {self.queries:.3g} queries, "
                f"T={self.tokens_per_sample:.3g} tokens/sample")


Budget = SplitBudget | TotalBudget


#: smallest model considered when neither the user nor the data say (the array API, without a fit)
FALLBACK_MIN_PARAMS = 1e6
#: the default smallest model considered is this fraction of the smallest model in the fit's data
MIN_PARAMS_DATA_FRACTION = 0.1


@dataclass(frozen=True)
class Constraints:
    """Design constraints. None means unconstrained, except `min_params` (the smallest model considered):
    None there means "not given": `FALLBACK_MIN_PARAMS` until `resolve_min_params` takes it from the fit's
    data (a tenth of the smallest model evaluated); `min_params_source` says which ("user", "data",
    "default")."""

    max_tokens: float | None = None
    max_params: float | None = None
    k_max: int | None = None
    min_params: float | None = None
    #: unique training tokens U: beyond U, training repeats data, valued by the data-constrained law
    #: (`bayes_t2.repetition`); not a cap (max_tokens is the cap)
    unique_tokens: float | None = None
    #: where min_params came from: "user", "data" (a tenth of the smallest model evaluated) or "default"
    #: (empty when constructing: "user" if min_params is given, else "default")
    min_params_source: str = ""

    def __post_init__(self) -> None:
        if self.max_tokens is not None:
            object.__setattr__(self, "max_tokens", _positive("--max-tokens", self.max_tokens))
        if self.max_params is not None:
            object.__setattr__(self, "max_params", _positive("--max-params", self.max_params))
        if self.unique_tokens is not None:
            object.__setattr__(self, "unique_tokens", _positive("--unique-tokens", self.unique_tokens))
        if self.min_params is not None:
            object.__setattr__(self, "min_params", _positive("--min-params", self.min_params))
            if not self.min_params_source:  # given by the caller
                object.__setattr__(self, "min_params_source", "user")
        else:  # not given: the fallback until `resolve_min_params` takes it from the data
            object.__setattr__(self, "min_params", FALLBACK_MIN_PARAMS)
            object.__setattr__(self, "min_params_source", "default")
        if self.min_params_source not in ("user", "data", "default"):
            raise ValueError(f"min_params_source must be user, data or default, got {self.min_params_source!r}")
        if self.k_max is not None:
            k = self.k_max
            ok = (not isinstance(k, bool) and isinstance(k, Real) and math.isfinite(float(k))
                  and float(k) >= 1.0 and float(k) == math.floor(float(k)))
            if not ok:
                raise InputError(f"--k-max must be an integer >= 1, got {_show(k)}")
            object.__setattr__(self, "k_max", int(k) if isinstance(k, Integral) else int(float(k)))
        if self.max_params is not None and self.max_params <= self.min_params_f:
            what = {"user": "--min-params", "data": "a tenth of the smallest model in the data",
                    "default": "the default smallest model"}[self.min_params_source]
            raise InputError(f"--max-params must be larger than the smallest model considered "
                             f"({self.min_params_f:g} parameters, {what}), got {self.max_params:g}")

    def resolve_min_params(self, smallest_model: float | None) -> "Constraints":
        """These constraints with min_params set from the data (a tenth of `smallest_model`, the smallest
        model evaluated) when the user did not give it; unchanged otherwise or without data."""
        if self.min_params_source != "default" or smallest_model is None or not smallest_model > 0:
            return self
        return replace(self, min_params=MIN_PARAMS_DATA_FRACTION * float(smallest_model),
                       min_params_source="data")

    # Float views for the numba kernels (inf = unconstrained).
    @property
    def min_params_f(self) -> float:
        return float(self.min_params)

    @property
    def max_tokens_f(self) -> float:
        return math.inf if self.max_tokens is None else float(self.max_tokens)

    @property
    def max_params_f(self) -> float:
        return math.inf if self.max_params is None else float(self.max_params)

    @property
    def k_max_f(self) -> float:
        return math.inf if self.k_max is None else float(self.k_max)

    def min_params_note(self) -> str:
        """In words: the smallest model considered and where that number comes from."""
        why = {"user": "set by --min-params", "data": "a tenth of the smallest model in the data; "
               "change with --min-params", "default": "no data to derive it from; change with --min-params"}
        return f"smallest model considered {self.min_params_f:.3g} parameters ({why[self.min_params_source]})"

    def as_dict(self) -> dict[str, Any]:
        out = {"max_tokens": self.max_tokens, "max_params": self.max_params, "k_max": self.k_max,
               "min_params": self.min_params_f, "min_params_source": self.min_params_source}
        if self.unique_tokens is not None:
            out["unique_tokens"] = self.unique_tokens
        return out

    def to_json(self) -> str:
        return json.dumps(self.as_dict())


def make_budget(train_flops: float | None = None, inference_flops: float | None = None,
                total_flops: float | None = None, queries: float | None = None,
                tokens_per_sample: float = 1.0) -> Budget:
    """The budget the command-line options describe: (--train-flops and --inference-flops) or
    (--total-flops and --queries), not both."""
    split = train_flops is not None or inference_flops is not None
    total = total_flops is not None or queries is not None
    if split and total:
        raise InputError("give either --train-flops/--inference-flops or --total-flops/--queries, not both")
    if split:
        if train_flops is None or inference_flops is None:
            missing = "--train-flops" if train_flops is None else "--inference-flops"
            raise InputError(f"{missing} is required with a split budget")
        return SplitBudget(train_flops, inference_flops, tokens_per_sample)
    if total:
        if total_flops is None or queries is None:
            missing = "--total-flops" if total_flops is None else "--queries"
            raise InputError(f"{missing} is required with a total budget")
        return TotalBudget(total_flops, queries, tokens_per_sample)
    raise InputError("a budget is required: --train-flops and --inference-flops, or --total-flops and --queries")


def scaled_budgets(budget: Budget, flops: Any) -> list[Budget]:
    """`budget` at other compute levels: the training budget (split; inference per query kept) or the total
    budget (total; queries kept) set to each value of `flops`. For curves of the optimum against budget."""
    if isinstance(budget, SplitBudget):
        return [SplitBudget(float(c), budget.inference_flops, budget.tokens_per_sample) for c in flops]
    if isinstance(budget, TotalBudget):
        return [TotalBudget(float(c), budget.queries, budget.tokens_per_sample) for c in flops]
    raise InputError(f"unknown budget type {type(budget).__name__}")


def check_feasible(budget: Budget, constraints: Constraints = Constraints()) -> None:
    """Raise InputError unless the budget buys the smallest model (min_params) trained on at least one token
    per parameter (D >= N: anything less is not a trained model) with k >= 1."""
    n = constraints.min_params_f
    t = budget.tokens_per_sample
    if isinstance(budget, SplitBudget):
        if budget.train_flops < 6.0 * n * n:
            raise InputError(
                f"--train-flops {budget.train_flops:g} cannot train even the smallest model ({n:g} parameters) on "
                f"one token per parameter, which needs {6.0 * n * n:g} FLOPs")
        need = budget.query_cost(n, 1.0)
        if budget.inference_flops < need:
            raise InputError(
                f"--inference-flops {budget.inference_flops:g} cannot draw one sample of {t:g} tokens per query "
                f"even from the smallest model ({n:g} parameters), which needs {need:g} FLOPs")
    elif isinstance(budget, TotalBudget):
        need = budget.query_cost(n, 1.0) * budget.queries + 6.0 * n * n
        if budget.total_flops <= need:
            raise InputError(
                f"--total-flops {budget.total_flops:g} cannot serve {budget.queries:g} queries even with the "
                f"smallest model ({n:g} parameters, trained on one token per parameter) and one sample each, "
                f"which costs {need:g} FLOPs")
    else:
        raise InputError(f"unknown budget type {type(budget).__name__}")


#: relative slack when counting how many samples a budget affords: k = floor(x (1 + 1e-12)), so a model
#: sized exactly at a segment end (N = C_inf/(2kT), rounded) still affords its k
_K_SLACK = 1e-12


@dataclass(frozen=True)
class Design:
    """One design (N parameters, D training tokens, k samples per query); feasible False = no such design
    under the budget and constraints (N, D, k are NaN then)."""

    N: float
    D: float
    k: float
    feasible: bool = True

    def as_tuple(self) -> tuple[float, float, float]:
        return self.N, self.D, self.k


INFEASIBLE = Design(math.nan, math.nan, math.nan, False)


def affordable_k(budget: Budget, constraints: Constraints, N: float, D: float) -> float:
    """Samples per query the budget affords a model of N parameters trained on D tokens, capped at k_max;
    0 if not even one sample is affordable.

    Split: the largest k whose query fits C_inf. Total: what training leaves for Q queries."""
    t, n0, p, q0 = budget.query_terms()
    if isinstance(budget, SplitBudget):
        x = designs.split_k_real(budget.inference_flops / (2.0 * t), n0, p, q0, N)
    elif isinstance(budget, TotalBudget):
        x = designs.total_k_real(budget.total_flops, 2.0 * t * budget.queries, n0, p, q0, N, D)
    else:
        raise InputError(f"unknown budget type {type(budget).__name__}")
    k = math.floor(x * (1.0 + _K_SLACK)) if math.isfinite(x) and x > 0 else 0
    return float(max(0, min(k, constraints.k_max_f)))


def design_at(budget: Budget, constraints: Constraints, N: float, k: float | None = None) -> Design:
    """The design the budget buys at model size N (clipped to the sizes the budget and constraints allow):
    all the training budget (up to the data wall), then the samples the inference budget affords.

    Split: D = min(C_train/(6N), max_tokens), k = the affordable k. Total: k rounded and capped so that
    training keeps D > 0 (at least 1), D = what the budget leaves for training, up to max_tokens; if the
    data wall leaves FLOPs over, k rises to what they afford. Returns `INFEASIBLE` if N is not a finite
    positive number."""
    if not (math.isfinite(N) and N > 0):
        return INFEASIBLE
    lo = constraints.min_params_f
    t, n0, p, q0 = budget.query_terms()
    if isinstance(budget, SplitBudget):
        c = budget.inference_flops / (2.0 * t)
        N = min(max(N, lo), constraints.max_params_f, designs.split_segment_end(c, n0, p, q0, 1.0))
        D = designs.split_D(budget.train_flops, constraints.max_tokens_f, N)
        return Design(N, D, max(1.0, affordable_k(budget, constraints, N, D)))
    if isinstance(budget, TotalBudget):
        C, b1 = budget.total_flops, 2.0 * t * budget.queries
        N = min(max(N, lo), constraints.max_params_f, designs.total_n_top(C, b1, n0, p, q0, 1.0) * (1.0 - 1e-9))
        kfeas = designs.total_k_top(C, b1, n0, p, q0, N, constraints.k_max_f)  # largest k leaving D > 0
        kk = max(1.0, min(float(round(k)) if k is not None and math.isfinite(k) else 1.0, kfeas))
        D = min(designs.total_D(C, b1, n0, p, q0, N, kk), constraints.max_tokens_f)
        return Design(N, D, max(kk, affordable_k(budget, constraints, N, D)))
    raise InputError(f"unknown budget type {type(budget).__name__}")


def chinchilla_baseline(budget: Budget, constraints: Constraints = Constraints()) -> Design:
    """The Chinchilla baseline at this budget: the largest model trained on D = 20 N tokens that the budget
    and every constraint allow, drawing as many samples per query as its inference budget affords.

    N is the smallest of: what the training budget buys at 20 tokens/param (120 N^2 = C_train; total
    budget: 120 N^2 + Q query_cost(N, 1) = C, one sample a query), the data wall / 20, max_params, and
    (split) the largest model whose one-sample query fits C_inf. Where a cap binds, the baseline stays at 20 tokens/param
    and leaves training FLOPs unspent (`train_optimal` is the baseline that spends them well). Then
    k = the affordable k, capped at k_max. If that N is below min_params no such design exists:
    `INFEASIBLE`. It never spends more than any budget."""
    r = CHINCHILLA_TOKENS_PER_PARAM
    t, n0, p, q0 = budget.query_terms()
    if isinstance(budget, SplitBudget):
        n = min(designs.split_n_on_ratio(budget.train_flops, r),
                designs.split_segment_end(budget.inference_flops / (2.0 * t), n0, p, q0, 1.0))
    elif isinstance(budget, TotalBudget):
        n = designs.total_n_on_ratio(budget.total_flops, 2.0 * t * budget.queries, n0, p, q0, r)
    else:
        raise InputError(f"unknown budget type {type(budget).__name__}")
    n = min(n, constraints.max_tokens_f / r, constraints.max_params_f)
    if not n >= constraints.min_params_f:
        return INFEASIBLE
    d = r * n
    # n is at most the size that affords one sample, so k >= 1 (max: rounding where the cap binds, or in
    # C - 120 N^2 at the total budget's root)
    return Design(n, d, max(1.0, affordable_k(budget, constraints, n, d)))


def chinchilla_design(budget: Budget, constraints: Constraints = Constraints()) -> tuple[float, float, float]:
    """(N, D, k) of `chinchilla_baseline`; NaN where it is infeasible."""
    return chinchilla_baseline(budget, constraints).as_tuple()
