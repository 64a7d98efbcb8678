"""What a query costs with a prompt, a KV cache and an attention term: the optimizer stays exact against the
brute force (`reference.py`, which writes the cost model on its own) and no design or baseline ever spends more
than a budget (checked with a third, position-by-position count of the FLOPs written in this file)."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from bayes_t2.budget import (Constraints, SplitBudget, TotalBudget, budget_from_dict, chinchilla_baseline,
                             design_at)
from bayes_t2.errors import InputError
from bayes_t2.laws import LOSS_COEFFICIENTS
from bayes_t2.optimum import OUTPUTS, optimize_array
from bayes_t2.options import budget_and_constraints
from bayes_t2.reference import objective_at, reference_optimum
from bayes_t2.routes.accuracy import T2_COEFFICIENTS, neg_pass_at_k_nb
from bayes_t2.simulate import _draw_accuracy_one, _draw_one

ROW = {name: i for i, name in enumerate(OUTPUTS)}
TOL = 1e-6


def counted_query_flops(N: float, k: float, T: int, P: int, F: float, kv: bool) -> float:
    """FLOPs of one query counted token by token: a token at position i (0-based) costs 2N + F (i + 1); the
    prompt is processed once (KV cache) or once per sample; each sample generates T tokens after it."""
    prompt = sum(2.0 * N + F * (i + 1) for i in range(P))
    sample = sum(2.0 * N + F * (i + 1) for i in range(P, P + T))
    return (prompt + k * sample) if kv else k * (prompt + sample)


def _population(route: str, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if route == "loss":
        return np.array([[d[c] for c in LOSS_COEFFICIENTS] for d in (_draw_one(rng) for _ in range(n))])
    return np.array([[d[c] for c in T2_COEFFICIENTS] for d in (_draw_accuracy_one(rng) for _ in range(n))])


SERVING = [dict(prompt_tokens=500.0), dict(prompt_tokens=500.0, kv_cache=False),
           dict(prompt_tokens=2000.0, context_flops=2e5), dict(prompt_tokens=64.0, kv_cache=False, context_flops=1e6)]
CASES = [(SplitBudget(2.56e19, 2e12, 16.0, **s), Constraints()) for s in SERVING] + [
    (SplitBudget(1e21, 1e13, 8.0, **SERVING[2]), Constraints(k_max=64, max_tokens=2e11)),
    (TotalBudget(1e21, 1e8, 8.0, **SERVING[0]), Constraints(min_params=1e7, k_max=128)),
    (TotalBudget(1e21, 1e8, 8.0, **SERVING[1]), Constraints(min_params=1e7, k_max=128)),
    (TotalBudget(3e21, 1e8, 4.0, **SERVING[3]), Constraints(min_params=1e7, max_tokens=1e11)),
]


def _within(out: np.ndarray, budget, con: Constraints) -> np.ndarray:
    """Rows (N, D, k) inside the budget (FLOPs counted token by token) and every constraint."""
    N, D, k = out[ROW["N"]], out[ROW["D"]], out[ROW["k"]]
    r = 1.0 + 1e-9
    ok = (N >= con.min_params / r) & (N <= con.max_params_f * r) & (D <= con.max_tokens_f * r)
    ok &= (k >= 1) & (k == np.round(k)) & (k <= con.k_max_f) & (D > 0)
    q = np.array([counted_query_flops(n, kk, int(budget.tokens_per_sample), int(budget.prompt_tokens),
                                      budget.context_flops, budget.kv_cache) for n, kk in zip(N, k)])
    if isinstance(budget, SplitBudget):
        ok &= (6 * N * D <= budget.train_flops * r) & (q <= budget.inference_flops * r)
    else:
        ok &= 6 * N * D + budget.queries * q <= budget.total_flops * r
    return ok


@pytest.mark.parametrize("budget,con", CASES, ids=lambda x: repr(x)[:90])
@pytest.mark.parametrize("route,method", [("loss", "auto"), ("loss", "search"), ("accuracy", "auto")])
def test_optimum_with_serving_costs_matches_brute_force(route, method, budget, con):
    thetas = _population(route, 12, 5 if route == "loss" else 6)
    if route == "accuracy":
        out = optimize_array(thetas, [budget], con, objective=neg_pass_at_k_nb, theta_names=T2_COEFFICIENTS)
    else:
        out = optimize_array(thetas, [budget], con, method=method)
    out = out[:, :, 0]
    assert _within(out, budget, con).all()
    ref = reference_optimum(route, thetas, budget, con)
    assert np.all(np.isfinite(ref[:, 3]))
    value = objective_at(route, thetas, out[ROW["N"]], out[ROW["D"]], out[ROW["k"]])
    worse = value > ref[:, 3] + TOL * np.abs(ref[:, 3])
    assert not worse.any(), [(float(value[i]), float(ref[i, 3]), out[:3, i].tolist(), ref[i, :3].tolist())
                             for i in np.where(worse)[0][:3]]


def test_a_prompt_moves_the_optimum():
    """The check above can fail: solving as if the prompt were free gives designs over the budget."""
    thetas = _population("loss", 12, 5)
    budget = CASES[0][0]
    free = optimize_array(thetas, [replace(budget, prompt_tokens=0.0)], Constraints())[:, :, 0]
    assert not _within(free, budget, Constraints()).all()


def test_kv_cache_makes_more_samples_affordable():
    b = SplitBudget(1e21, 1e12, 16.0, prompt_tokens=1000.0)
    N = 1e8
    with_cache = design_at(b, Constraints(), N).k
    without = design_at(replace(b, kv_cache=False), Constraints(), N).k
    assert with_cache == math.floor((1e12 - 2 * N * 1000) / (2 * N * 16))  # 2N(P + kT) <= C_inf
    assert without == math.floor(1e12 / (2 * N * (1000 + 16)))          # 2Nk(P + T) <= C_inf
    assert with_cache > without


budgets = st.one_of(
    st.builds(lambda ct, ci, T, P, kv, F: SplitBudget(ct, ci, float(T), prompt_tokens=float(P), kv_cache=kv,
                                                      context_flops=F),
              st.floats(1e16, 1e25), st.floats(1e9, 1e15), st.integers(1, 64), st.integers(0, 4000),
              st.booleans(), st.sampled_from([0.0, 1e3, 1e5, 1e7])),
    st.builds(lambda c, q, T, P, kv, F: TotalBudget(c, q, float(T), prompt_tokens=float(P), kv_cache=kv,
                                                    context_flops=F),
              st.floats(1e18, 1e26), st.floats(1e3, 1e11), st.integers(1, 64), st.integers(0, 4000),
              st.booleans(), st.sampled_from([0.0, 1e3, 1e5, 1e7])))
constraints = st.builds(lambda lo, kmax, wall: Constraints(min_params=lo, k_max=kmax, max_tokens=wall),
                        st.sampled_from([1e6, 1e7, 1e8]), st.one_of(st.none(), st.integers(1, 1000)),
                        st.one_of(st.none(), st.floats(1e9, 1e13)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(budget=budgets, con=constraints, log_n=st.floats(5.0, 13.0), k=st.floats(1.0, 1e4))
def test_no_design_or_baseline_exceeds_a_budget(budget, con, log_n, k):
    """design_at (the recommended and train-optimal designs), the Chinchilla baseline and the optimizer's
    design, each checked against the FLOPs counted token by token."""
    try:
        from bayes_t2.budget import check_feasible

        check_feasible(budget, con)
    except InputError:
        return
    rows = [design_at(budget, con, 10.0 ** log_n, k).as_tuple(), design_at(budget, con, 10.0 ** log_n).as_tuple()]
    chin = chinchilla_baseline(budget, con)
    if chin.feasible:
        rows.append(chin.as_tuple())
    theta = np.array([[1.7, 400.0, 0.34, 1100.0, 0.28, 0.6, 0.5]])
    opt = optimize_array(theta, [budget], con)[:3, 0, 0]
    if np.all(np.isfinite(opt)):
        rows.append(tuple(opt))
    out = np.full((len(OUTPUTS), len(rows)), np.nan)
    out[:3] = np.array(rows).T
    assert _within(out, budget, con).all(), rows


def test_keywords_and_json_round_trip():
    budget, _ = budget_and_constraints(train_flops=1e21, inference_flops=1e12, prompt_tokens=300,
                                       kv_cache=False, context_flops=1e4)
    d = budget.as_dict()
    assert d["prompt_tokens"] == 300 and d["kv_cache"] is False and d["context_flops"] == 1e4
    assert budget_from_dict(json.loads(json.dumps(d))) == budget
    plain, _ = budget_and_constraints(train_flops=1e21, inference_flops=1e12)
    assert plain.as_dict() == {"kind": "split", "train_flops": 1e21, "inference_flops": 1e12,
                               "tokens_per_sample": 1.0}
    with pytest.raises(InputError, match="--prompt-tokens"):
        budget_and_constraints(train_flops=1e21, inference_flops=1e12, prompt_tokens=-1)
    with pytest.raises(InputError, match="--context-flops"):
        budget_and_constraints(total_flops=1e21, queries=1e9, context_flops=float("nan"))


def test_defaults_give_todays_numbers():
    """Unset serving options and the paper's values given explicitly solve the same problem bit for bit, and
    the FLOPs per query is 2NkT as the paper writes it."""
    thetas = _population("loss", 20, 5)
    plain = [SplitBudget(2.56e19, 2e9), TotalBudget(1e22, 1e9, 3.0)]
    explicit = [replace(b, prompt_tokens=0.0, kv_cache=True, context_flops=0.0) for b in plain]
    for method in ("auto", "search"):
        a = optimize_array(thetas, plain, Constraints(), method=method)
        b = optimize_array(thetas, explicit, Constraints(), method=method)
        assert np.array_equal(a, b, equal_nan=True)
    N, k = 3.3e8, 7.0
    assert plain[1].query_flops(N, k) == 2.0 * N * k * 3.0


def test_outputs_show_each_designs_query_cost_and_defaults_keep_todays_json(loss_truth_fit, tmp_path):
    """On a fit: with a prompt, optimum.json gives every design's FLOPs per query (counted token by token
    here), the budget object names the serving options, and the prompt figure is drawn; unset options give
    exactly the JSON of the paper's convention (FLOPs per query 2NkT, no serving keys)."""
    import matplotlib

    matplotlib.use("Agg")
    from bayes_t2 import plots
    from bayes_t2.summary import optimum_records

    _, _, fit = loss_truth_fit
    served = SplitBudget(2.56e19, 2e12, 8.0, prompt_tokens=256.0, kv_cache=False, context_flops=1e4)
    recs = optimum_records(fit.optimize([served], law=True), "loss", True)
    for r in recs:
        assert r["budget"]["prompt_tokens"] == 256.0 and r["budget"]["kv_cache"] is False
        for name in ("recommended", "chinchilla", "train_optimal"):
            d = r[name]
            want = counted_query_flops(d["N"], d["k"], 8, 256, 1e4, False)
            assert d["flops_per_query"] == pytest.approx(want, rel=1e-12)
            assert d["flops_per_query"] <= served.inference_flops * (1 + 1e-12)
    plain = SplitBudget(2.56e19, 2e9)
    a = json.dumps(optimum_records(fit.optimize([plain], law=True), "loss", True))
    b = json.dumps(optimum_records(fit.optimize([replace(plain, prompt_tokens=0.0, kv_cache=True,
                                                         context_flops=0.0)], law=True), "loss", True))
    assert a == b
    for r in json.loads(a):
        assert set(r["budget"]) == {"kind", "train_flops", "inference_flops", "tokens_per_sample"}
        for name in ("recommended", "chinchilla", "train_optimal"):
            d = r[name]
            assert d["flops_per_query"] == 2.0 * d["N"] * d["k"] * 1.0
    fig, axes = plots.optimum_vs_prompt(fit, served, prompts=[0.0, 64.0, 1024.0])
    assert len(axes) == 2 and axes[1].get_ylabel() == "samples per query k*"


@pytest.mark.parametrize("budget", [SplitBudget(2.56e19, 2e12, 8.0, prompt_tokens=256.0, context_flops=1e4),
                                    TotalBudget(1e21, 1e8, 8.0, prompt_tokens=256.0, kv_cache=False)],
                         ids=["split", "total"])
def test_decide_with_a_prompt_stays_within_the_budget(loss_truth_fit, budget):
    """decide searches the same design space: its chosen design and every baseline fit the budget, counted
    token by token, and each reports its own FLOPs per query."""
    _, _, fit = loss_truth_fit
    records = json.loads(fit.decide(budget, task=fit.tasks[0], law=True).to_json())
    for r in records:
        for name in ("chosen", "chinchilla", "train_optimal", "median_optimum"):
            d = r[name]
            if d.get("feasible") is False:
                continue
            out = np.full((len(OUTPUTS), 1), np.nan)
            out[:3, 0] = d["N"], d["D"], d["k"]
            assert _within(out, budget, Constraints(min_params=0.5 * d["N"])).all(), (name, d)
            want = counted_query_flops(d["N"], d["k"], 8, 256, budget.context_flops, budget.kv_cache)
            assert d["flops_per_query"] == pytest.approx(want, rel=1e-12)
