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
    "budget_from_dict",
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


def _non_negative(option: str, value: Any) -> float:
    """`value` as a finite float >= 0, else an InputError naming `option`."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)) or value < 0:
        raise InputError(f"{option} must be a number >= 0, got {_show(value)}")
    return float(value)


#: the serving fields' defaults: the T2 paper's convention (no prompt, no attention term, costs in FLOPs)
SERVING_DEFAULTS: dict[str, Any] = {"prompt_tokens": 0.0, "kv_cache": True, "context_flops": 0.0,
                                    "prefill_weight": 1.0, "decode_weight": 1.0, "stated": ""}


@dataclass(frozen=True, kw_only=True)
class _Serving:
    """What a query costs under a budget (shared by both budget kinds; `designs.query_terms` has the formula).

    prompt_tokens P: prefilled once per query and shared by the k samples through a KV cache (kv_cache), or
    prefilled by every sample (kv_cache False). context_flops F: attention FLOPs per token per token of context
    it attends to (itself included), 0 = left out. prefill_weight, decode_weight: budget units per prefill /
    decode FLOP (1 for budgets in FLOPs; price ratios when a budget was given in money, `costs.py`).
    prices: dollars per training / prefill / decode FLOP (`costs.Prices`) when a cost file was given; then
    outputs show money beside FLOPs. stated: the budget as the user gave it in dollars or GPU-hours (words;
    '' when given in FLOPs)."""

    prompt_tokens: float = 0.0
    kv_cache: bool = True
    context_flops: float = 0.0
    prefill_weight: float = 1.0
    decode_weight: float = 1.0
    prices: Any = None
    stated: str = ""

    def _check_serving(self) -> None:
        object.__setattr__(self, "tokens_per_sample", _positive("--tokens-per-sample", self.tokens_per_sample))
        object.__setattr__(self, "prompt_tokens", _non_negative("--prompt-tokens", self.prompt_tokens))
        object.__setattr__(self, "context_flops", _non_negative("--context-flops", self.context_flops))
        object.__setattr__(self, "prefill_weight", _positive("prefill price", self.prefill_weight))
        object.__setattr__(self, "decode_weight", _positive("decode price", self.decode_weight))
        object.__setattr__(self, "kv_cache", bool(self.kv_cache))

    def _terms(self, w_prefill: float, w_decode: float) -> tuple[float, float, float, float]:
        return tuple(float(x) for x in designs.query_terms(self.tokens_per_sample, self.prompt_tokens,
                                                            self.context_flops, self.kv_cache, w_prefill, w_decode))

    def query_terms(self) -> tuple[float, float, float, float]:
        """(t, n0, p, q0): a query of k samples from N parameters costs 2t (k (N + n0) + p N + q0) budget
        units (the constraint the optimizer keeps)."""
        return self._terms(self.prefill_weight, self.decode_weight)

    def query_cost(self, N: float, k: float) -> float:
        """One query of k samples from a model of N parameters, in the budget's units."""
        return designs.query_cost(*self.query_terms(), N, k)

    def query_flops(self, N: Any, k: Any) -> Any:
        """Inference FLOPs of one query (prefill + decode, unweighted); 2NkT with the paper's convention."""
        return designs.query_cost(*self._terms(1.0, 1.0), N, k)

    def query_money(self, N: Any, k: Any) -> Any:
        """Dollars of one query (prefill FLOPs x prefill price + decode FLOPs x decode price); NaN without
        prices."""
        if self.prices is None:
            return math.nan * N
        return designs.query_cost(*self._terms(self.prices.prefill, self.prices.decode), N, k)

    def train_money(self, N: Any, D: Any) -> Any:
        """Dollars of training N parameters on D tokens (6ND FLOPs); NaN without prices."""
        return 6.0 * N * D * (math.nan if self.prices is None else self.prices.train)

    def design_costs(self, N: Any, D: Any, k: Any) -> dict[str, Any]:
        """What a design costs: FLOPs per query, and with prices dollars per query and for training."""
        out = {"flops_per_query": self.query_flops(N, k)}
        if self.prices is not None:
            out["money_per_query"] = self.query_money(N, k)
            out["train_money"] = self.train_money(N, D)
        return out

    def query_formula(self) -> str:
        """A query's FLOPs as a formula (the paper's 2NkT unless a prompt or attention term is set)."""
        if not self.prompt_tokens:
            text = "2NkT"
        else:
            text = "2N(P + kT)" if self.kv_cache else "2Nk(P + T)"
        return text + (" + F x context tokens" if self.context_flops else "")

    def units(self) -> str:
        """What the per-query (split) or total budget counts: FLOPs, or FLOPs weighted by price when it was
        given in money or GPU-hours (prefill and decode FLOPs priced differently)."""
        plain = self.prefill_weight == 1.0 and self.decode_weight == 1.0
        return "FLOPs" if plain else "weighted FLOPs"

    def serving_dict(self) -> dict[str, Any]:
        """The serving fields that differ from the paper's convention, and the prices (JSON-ready)."""
        out = {k: getattr(self, k) for k, v in SERVING_DEFAULTS.items() if getattr(self, k) != v}
        if out:  # say the whole query model once any part of it is set
            out = {k: getattr(self, k) for k in ("prompt_tokens", "kv_cache", "context_flops")} | out
        if self.prices is not None:
            out["prices"] = self.prices.as_dict()
        return out

    def serving_label(self) -> str:
        """The query model in words ('' with the paper's convention)."""
        parts = []
        if self.prompt_tokens:
            parts.append(f"P={self.prompt_tokens:.3g} prompt tokens "
                         f"({'KV cache shared by the samples' if self.kv_cache else 'no KV cache'})")
        if self.context_flops:
            parts.append(f"attention {self.context_flops:.3g} FLOPs/token/context token")
        if self.stated:
            parts.append(f"given as {self.stated}")
        return "".join(", " + p for p in parts)


@dataclass(frozen=True)
class SplitBudget(_Serving):
    """Training FLOPs plus inference FLOPs *per query* (T2 convention): 6ND = C_train, 2NkT = C_inf."""

    train_flops: float
    inference_flops: float
    tokens_per_sample: float = 1.0

    kind = "split"

    def __post_init__(self) -> None:
        object.__setattr__(self, "train_flops", _positive("--train-flops", self.train_flops))
        object.__setattr__(self, "inference_flops", _positive("--inference-flops", self.inference_flops))
        self._check_serving()

    def as_dict(self) -> dict[str, Any]:
        return {"kind": "split", "train_flops": self.train_flops, "inference_flops": self.inference_flops,
                "tokens_per_sample": self.tokens_per_sample, **self.serving_dict()}

    def label(self) -> str:
        """The budget in words, with its units: FLOPs, and T tokens per sample."""
        return (f"train {self.train_flops:.3g} FLOPs, inference {self.inference_flops:.3g} {self.units()}/query, "
                f"T={self.tokens_per_sample:.3g} tokens/sample{self.serving_label()}")


@dataclass(frozen=True)
class TotalBudget(_Serving):
    """One end-to-end budget for training plus Q queries: 6ND + 2NkTQ <= C."""

    total_flops: float
    queries: float
    tokens_per_sample: float = 1.0

    kind = "total"

    def __post_init__(self) -> None:
        object.__setattr__(self, "total_flops", _positive("--total-flops", self.total_flops))
        object.__setattr__(self, "queries", _positive("--queries", self.queries))
        self._check_serving()

    def as_dict(self) -> dict[str, Any]:
        return {"kind": "total", "total_flops": self.total_flops, "queries": self.queries,
                "tokens_per_sample": self.tokens_per_sample, **self.serving_dict()}

    def label(self) -> str:
        """The budget in words, with its units: FLOPs, and T tokens per sample."""
        return (f"total {self.total_flops:.3g} {self.units()}, {self.queries:.3g} queries, "
                f"T={self.tokens_per_sample:.3g} tokens/sample{self.serving_label()}")


Budget = SplitBudget | TotalBudget


def budget_from_dict(d: dict[str, Any]) -> Budget:
    """The budget an `as_dict()` describes (the JSON `budget` object back to a Budget)."""
    kw = {k: d[k] for k in SERVING_DEFAULTS if k in d}
    if d.get("prices") is not None:
        from .costs import Prices

        kw["prices"] = Prices(**d["prices"])
    T = d.get("tokens_per_sample", 1.0)
    if d.get("kind") == "split":
        return SplitBudget(d["train_flops"], d["inference_flops"], T, **kw)
    if d.get("kind") == "total":
        return TotalBudget(d["total_flops"], d["queries"], T, **kw)
    raise InputError(f"unknown budget kind {d.get('kind')!r}")


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
                tokens_per_sample: float = 1.0, **serving: Any) -> Budget:
    """The budget the command-line options describe: (--train-flops and --inference-flops) or
    (--total-flops and --queries), not both; `serving`: the `_Serving` fields (prompt_tokens, kv_cache, ...)."""
    split = train_flops is not None or inference_flops is not None
    total = total_flops is not None or queries is not None
    if split and total:
        raise InputError("give either --train-flops/--inference-flops or --total-flops/--queries, not both")
    if split:
        if train_flops is None or inference_flops is None:
            missing = "--train-flops" if train_flops is None else "--inference-flops"
            raise InputError(f"{missing} is required with a split budget")
        return SplitBudget(train_flops, inference_flops, tokens_per_sample, **serving)
    if total:
        if total_flops is None or queries is None:
            missing = "--total-flops" if total_flops is None else "--queries"
            raise InputError(f"{missing} is required with a total budget")
        return TotalBudget(total_flops, queries, tokens_per_sample, **serving)
    raise InputError("a budget is required: --train-flops and --inference-flops, or --total-flops and --queries")


def scaled_budgets(budget: Budget, flops: Any) -> list[Budget]:
    """`budget` at other compute levels: the training budget (split; inference per query kept) or the total
    budget (total; queries kept) set to each value of `flops`. For curves of the optimum against budget."""
    if isinstance(budget, SplitBudget):
        return [replace(budget, train_flops=float(c)) for c in flops]
    if isinstance(budget, TotalBudget):
        return [replace(budget, total_flops=float(c)) for c in flops]
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
            prompt = f" after a {budget.prompt_tokens:g}-token prompt" if budget.prompt_tokens else ""
            raise InputError(
                f"--inference-flops {budget.inference_flops:g} cannot draw one sample of {t:g} tokens per query"
                f"{prompt} even from the smallest model ({n:g} parameters), which needs {need:g} FLOPs")
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
