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
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

from .errors import InputError
from .laws import CHINCHILLA_TOKENS_PER_PARAM

__all__ = [
    "Budget",
    "Constraints",
    "SplitBudget",
    "TotalBudget",
    "check_feasible",
    "chinchilla_design",
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


@dataclass(frozen=True)
class SplitBudget:
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
        text = f"train {self.train_flops:.3g}, inference {self.inference_flops:.3g}/query"
        return text if self.tokens_per_sample == 1.0 else f"{text}, T={self.tokens_per_sample:.3g}"


@dataclass(frozen=True)
class TotalBudget:
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
        text = f"total {self.total_flops:.3g}, {self.queries:.3g} queries"
        return text if self.tokens_per_sample == 1.0 else f"{text}, T={self.tokens_per_sample:.3g}"


Budget = SplitBudget | TotalBudget


@dataclass(frozen=True)
class Constraints:
    """Design constraints. None means unconstrained; `min_params` is the smallest model considered."""

    max_tokens: float | None = None
    max_params: float | None = None
    k_max: int | None = None
    min_params: float = 1e6

    def __post_init__(self) -> None:
        if self.max_tokens is not None:
            object.__setattr__(self, "max_tokens", _positive("--max-tokens", self.max_tokens))
        if self.max_params is not None:
            object.__setattr__(self, "max_params", _positive("--max-params", self.max_params))
        object.__setattr__(self, "min_params", _positive("--min-params", self.min_params))
        if self.k_max is not None:
            k = self.k_max
            ok = (not isinstance(k, bool) and isinstance(k, Real) and math.isfinite(float(k))
                  and float(k) >= 1.0 and float(k) == math.floor(float(k)))
            if not ok:
                raise InputError(f"--k-max must be an integer >= 1, got {_show(k)}")
            object.__setattr__(self, "k_max", int(k) if isinstance(k, Integral) else int(float(k)))
        if self.max_params is not None and self.max_params <= self.min_params:
            raise InputError(f"--max-params must be larger than the smallest model considered "
                             f"({self.min_params:g} parameters), got {self.max_params:g}")

    # Float views for the numba kernels (inf = unconstrained).
    @property
    def max_tokens_f(self) -> float:
        return math.inf if self.max_tokens is None else float(self.max_tokens)

    @property
    def max_params_f(self) -> float:
        return math.inf if self.max_params is None else float(self.max_params)

    @property
    def k_max_f(self) -> float:
        return math.inf if self.k_max is None else float(self.k_max)

    def as_dict(self) -> dict[str, Any]:
        return {"max_tokens": self.max_tokens, "max_params": self.max_params, "k_max": self.k_max,
                "min_params": self.min_params}

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
    n = constraints.min_params
    t = budget.tokens_per_sample
    if isinstance(budget, SplitBudget):
        if budget.train_flops < 6.0 * n * n:
            raise InputError(
                f"--train-flops {budget.train_flops:g} cannot train even the smallest model ({n:g} parameters) on "
                f"one token per parameter, which needs {6.0 * n * n:g} FLOPs")
        need = 2.0 * n * t
        if budget.inference_flops < need:
            raise InputError(
                f"--inference-flops {budget.inference_flops:g} cannot draw one sample of {t:g} tokens per query "
                f"even from the smallest model ({n:g} parameters), which needs {need:g} FLOPs")
    elif isinstance(budget, TotalBudget):
        need = 2.0 * n * t * budget.queries + 6.0 * n * n
        if budget.total_flops <= need:
            raise InputError(
                f"--total-flops {budget.total_flops:g} cannot serve {budget.queries:g} queries even with the "
                f"smallest model ({n:g} parameters, trained on one token per parameter) and one sample each, "
                f"which costs {need:g} FLOPs")
    else:
        raise InputError(f"unknown budget type {type(budget).__name__}")


def _clip(x: float, lo: float, hi: float) -> float:
    return min(max(x, lo), hi)


def chinchilla_design(budget: Budget, constraints: Constraints = Constraints()) -> tuple[float, float, int]:
    """The Chinchilla baseline (N, D, k) at this budget, under the same constraints.

    Split: the D = 20 N model the training budget buys (6ND = C_train), moved to the data wall if it is
    hit and clipped to [min_params, max_params]; it draws as many samples as the inference budget affords,
    k = floor(C_inf / (2 N T)), capped at k_max and at least 1.
    Total: D = 20 N and k = 1, spending the whole budget: 120 N^2 + 2 N T Q = C, same clipping.
    """
    r = CHINCHILLA_TOKENS_PER_PARAM
    lo, hi, dmax = constraints.min_params, constraints.max_params_f, constraints.max_tokens_f
    if isinstance(budget, SplitBudget):
        c = budget.train_flops
        n = math.sqrt(c / (6.0 * r))
        if r * n > dmax:
            n = c / (6.0 * dmax)
        n = _clip(n, lo, hi)
        d = min(c / (6.0 * n), dmax)
        k = math.floor(budget.inference_flops / (2.0 * n * budget.tokens_per_sample))
        k = int(_clip(k, 1, constraints.k_max_f))
        return n, d, k
    if isinstance(budget, TotalBudget):
        c, b = budget.total_flops, 2.0 * budget.tokens_per_sample * budget.queries
        # 6 r N^2 + b N - C = 0, positive root in the cancellation-free form.
        n = 2.0 * c / (b + math.sqrt(b * b + 24.0 * r * c))
        if r * n > dmax:
            n = c / (6.0 * dmax + b)
        n = _clip(n, lo, hi)
        d = min((c / n - b) / 6.0, dmax)
        return n, d, 1
    raise InputError(f"unknown budget type {type(budget).__name__}")
