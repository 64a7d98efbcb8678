"""The budget keywords every budget command takes, turned into a `Budget` and `Constraints`: one function the
command line (`--train-flops ...`) and the Python API (`fit.optimize(train_flops=...)`) both call, so the
two cannot read the same options differently."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .budget import Budget, Constraints, SplitBudget, TotalBudget, make_budget
from .errors import InputError

#: keywords that describe the budget (DESIGN.md "Budgets"), and what a query costs (serving)
BUDGET_KEYWORDS = ("train_flops", "inference_flops", "total_flops", "queries", "tokens_per_sample",
                   "prompt_tokens", "kv_cache", "context_flops", "costs", "train_budget", "serve_budget",
                   "total_budget")
#: keywords that constrain the design
CONSTRAINT_KEYWORDS = ("max_tokens", "max_params", "min_params", "k_max", "unique_tokens")


def budget_and_constraints(*, train_flops: float | None = None, inference_flops: float | None = None,
                           total_flops: float | None = None, queries: float | None = None,
                           tokens_per_sample: float | None = None, prompt_tokens: float | None = None,
                           kv_cache: bool | None = None, context_flops: float | None = None,
                           costs: Any = None, train_budget: str | None = None, serve_budget: str | None = None,
                           total_budget: str | None = None, max_tokens: float | None = None,
                           max_params: float | None = None, min_params: float | None = None,
                           k_max: int | None = None, unique_tokens: float | None = None
                           ) -> tuple[Budget, Constraints]:
    """(budget, constraints) from the keywords: a split budget (train_flops and inference_flops) or a total
    one (total_flops and queries); unset constraints are unconstrained (min_params: the `Constraints`
    default). tokens_per_sample T defaults to 1, the T2 paper's convention (set it to an answer's length in
    tokens to count each sample's full decode). What a query costs (docs/costs.md): prompt_tokens P
    (default 0) prefilled once and shared by the k samples through a KV cache (kv_cache=False: every sample
    prefills it), context_flops F attention FLOPs per token per token of context (default 0: left out).
    Money and hardware (`costs.py`): costs, a cost file (path or `costs.Costs`); then train_budget,
    serve_budget (per query) and total_budget may be given in dollars or GPU-hours ('$2e6', '1e5 GPU-h',
    '$0.002/query') instead of train_flops, inference_flops and total_flops, and outputs show money.
    unique_tokens U: training beyond U tokens repeats data, valued by the data-constrained law
    (`bayes_t2.repetition`); max_tokens stays the hard cap."""
    from .costs import Costs, budget_fields, load_costs

    if costs is not None and not isinstance(costs, Costs):
        costs = load_costs(costs)
    for money, flops, a, b in ((train_budget, train_flops, "--train-budget", "--train-flops"),
                               (serve_budget, inference_flops, "--serve-budget", "--inference-flops"),
                               (total_budget, total_flops, "--total-budget", "--total-flops")):
        if money is not None and flops is not None:
            raise InputError(f"give {a} or {b}, not both")
    fields = budget_fields(costs, train_budget=train_budget, serve_budget=serve_budget, total_budget=total_budget)
    train_flops = fields.pop("train_flops", train_flops)
    inference_flops = fields.pop("inference_flops", inference_flops)
    total_flops = fields.pop("total_flops", total_flops)
    if train_flops is None and inference_flops is None and total_flops is None and queries is None:
        raise InputError("give a budget: --train-flops C --inference-flops C, or --total-flops C --queries Q")
    serving = dict(prompt_tokens=prompt_tokens, kv_cache=kv_cache, context_flops=context_flops, **fields)
    budget = make_budget(train_flops=train_flops, inference_flops=inference_flops, total_flops=total_flops,
                         queries=queries, tokens_per_sample=1.0 if tokens_per_sample is None else tokens_per_sample,
                         **{k: v for k, v in serving.items() if v is not None})
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
