"""The budget keywords every budget command takes, turned into a `Budget` and `Constraints`: one function the
command line (`--train-flops ...`) and the Python API (`fit.optimize(train_flops=...)`) both call, so the
two cannot read the same options differently."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .budget import Budget, Constraints, SplitBudget, TotalBudget, make_budget
from .errors import InputError

#: keywords that describe the budget (DESIGN.md "Budgets")
BUDGET_KEYWORDS = ("train_flops", "inference_flops", "total_flops", "queries", "tokens_per_sample")
#: keywords that constrain the design
CONSTRAINT_KEYWORDS = ("max_tokens", "max_params", "min_params", "k_max", "unique_tokens")


def budget_and_constraints(*, train_flops: float | None = None, inference_flops: float | None = None,
                           total_flops: float | None = None, queries: float | None = None,
                           tokens_per_sample: float | None = None, max_tokens: float | None = None,
                           max_params: float | None = None, min_params: float | None = None,
                           k_max: int | None = None, unique_tokens: float | None = None
                           ) -> tuple[Budget, Constraints]:
    """(budget, constraints) from the keywords: a split budget (train_flops and inference_flops) or a total
    one (total_flops and queries); unset constraints are unconstrained (min_params: the `Constraints`
    default). tokens_per_sample T defaults to 1, the T2 paper's convention (set it to an answer's length in
    tokens to count each sample's full decode). unique_tokens U: training beyond U tokens repeats data, valued
    by the data-constrained law (`bayes_t2.repetition`); max_tokens stays the hard cap."""
    if train_flops is None and inference_flops is None and total_flops is None and queries is None:
        raise InputError("give a budget: --train-flops C --inference-flops C, or --total-flops C --queries Q")
    budget = make_budget(train_flops=train_flops, inference_flops=inference_flops, total_flops=total_flops,
                         queries=queries, tokens_per_sample=1.0 if tokens_per_sample is None else tokens_per_sample)
    given = dict(max_tokens=max_tokens, max_params=max_params, min_params=min_params, k_max=k_max,
                 unique_tokens=unique_tokens)
    return budget, Constraints(**{k: v for k, v in given.items() if v is not None})


def resolve(budgets: Any, constraints: Constraints | None, options: Mapping[str, Any],
            *, many: bool = True) -> tuple[Any, Constraints]:
    """The budget(s) and constraints of a call that takes either the objects (`budgets`, `constraints`) or
    the keywords (`options`), not both. `many`: `budgets` may be a list (returned as a list; a single
    Budget becomes a one-element list); else one Budget is returned."""
    unknown = sorted(set(options) - set(BUDGET_KEYWORDS) - set(CONSTRAINT_KEYWORDS))
    if unknown:
        raise TypeError(f"unknown keyword(s) {', '.join(unknown)}; budget keywords are "
                        f"{', '.join(BUDGET_KEYWORDS + CONSTRAINT_KEYWORDS)}")
    if options:
        if budgets is not None or constraints is not None:
            raise InputError("give the budget either as Budget/Constraints objects or as keywords, not both")
        budget, constraints = budget_and_constraints(**options)
        return ([budget] if many else budget), constraints
    if budgets is None:
        raise InputError("give a budget: train_flops= and inference_flops=, or total_flops= and queries=")
    if isinstance(budgets, (SplitBudget, TotalBudget)):
        budgets = [budgets] if many else budgets
    elif not many:
        raise InputError(f"one budget is needed here, got {type(budgets).__name__}")
    return budgets, constraints or Constraints()
