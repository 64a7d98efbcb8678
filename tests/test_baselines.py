"""Baselines, P(beats), unclipped regret and bound shares, each checked against a truth computed here
(closed forms, numpy brute force over designs, hand computations on known draws)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bayes_t2.baselines import bound_shares, p_beats
from bayes_t2.budget import (Constraints, SplitBudget, TotalBudget, chinchilla_baseline, design_at)
from bayes_t2.decide import decide
from bayes_t2.errors import InputError

from test_decide import TRUTH, draws_of, law, make_fit, spread_fit

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings, strategies as st  # noqa: E402


def _cost_ok(budget, n: float, d: float, k: float, cons: Constraints, rtol: float = 1e-9) -> None:
    """The design fits every budget and constraint (the check is written here, not taken from budget.py)."""
    T = budget.tokens_per_sample
    assert n >= cons.min_params_f * (1 - rtol)
    assert n <= cons.max_params_f * (1 + rtol)
    assert d <= cons.max_tokens_f * (1 + rtol)
    assert k >= 1 and k == math.floor(k) and k <= cons.k_max_f
    if isinstance(budget, SplitBudget):
        assert 6 * n * d <= budget.train_flops * (1 + rtol)
        assert 2 * n * k * T <= budget.inference_flops * (1 + rtol)
    else:
        assert 6 * n * d + 2 * n * k * T * budget.queries <= budget.total_flops * (1 + rtol)


# ------------------------------------------------------------------------------------------------ Chinchilla
def test_chinchilla_closed_form_when_nothing_binds():
    for Ct in (1e18, 1e21, 1e24):
        b = SplitBudget(Ct, 1e15, 4.0)
        d = chinchilla_baseline(b)
        assert d.feasible and d.D / d.N == pytest.approx(20.0, rel=1e-14)
        assert 6 * d.N * d.D == pytest.approx(Ct, rel=1e-14)  # the whole training budget at 20 tokens/param
        assert d.k == math.floor(1e15 / (2 * d.N * 4.0))  # the samples C_inf affords, and no more
        assert 2 * d.N * d.k * 4.0 <= 1e15 < 2 * d.N * (d.k + 1) * 4.0


def test_chinchilla_clipped_to_the_inference_cap_never_overspends():
    """At C_train = 1e22, C_inf = 2e9 (the old baseline spent 9x the per-query budget) the D = 20N model
    shrinks to the inference cap C_inf/(2T) = 1e9 and draws one sample; with T = 256 the cap is 256x smaller."""
    d = chinchilla_baseline(SplitBudget(1e22, 2e9))
    assert d.feasible and d.N == pytest.approx(1e9, rel=1e-15) and d.D == pytest.approx(2e10) and d.k == 1
    assert 2 * d.N * d.k <= 2e9 * (1 + 1e-15)
    d = chinchilla_baseline(SplitBudget(2.56e19, 2e9, 256.0))
    assert d.N == pytest.approx(2e9 / 512) and d.k == 1 and 2 * d.N * d.k * 256 <= 2e9 * (1 + 1e-15)


def test_chinchilla_infeasible_is_said_not_overspent():
    # the inference cap is below the smallest model considered: no D = 20N design with one sample exists
    assert not chinchilla_baseline(SplitBudget(1e22, 1e6), Constraints(min_params=1e6)).feasible
    # 20 tokens/param at the smallest model costs more than the training budget
    assert not chinchilla_baseline(SplitBudget(1e14, 1e12), Constraints(min_params=1e6)).feasible
    # the data wall allows fewer than 20 x min_params tokens
    assert not chinchilla_baseline(SplitBudget(1e22, 1e12), Constraints(min_params=1e8, max_tokens=1e9)).feasible
    d = chinchilla_baseline(TotalBudget(1e15, 1e9), Constraints(min_params=1e6))
    assert not d.feasible and all(math.isnan(x) for x in d.as_tuple())


def test_chinchilla_in_the_records_and_decide_is_infeasible_with_nan_metric():
    fit = make_fit(TRUTH, draws=8)
    budget = SplitBudget(1e22, 4e6)  # C_inf/(2T) = 2e6 parameters
    cons = Constraints(min_params=3e6, max_params=1e12)
    with pytest.raises(InputError):  # not even the optimizer has a design here
        fit.optimize([budget], cons)
    budget = SplitBudget(1e13, 1e12)  # 120 N^2 <= 1e13: N <= 2.9e5 < min_params
    opt = fit.optimize([budget], Constraints(min_params=1e5)).isel(budget=0)
    # feasible at min_params 1e5 (sqrt(1e13/120) = 2.9e5), so make min_params bite instead
    assert bool(opt["chinchilla_feasible"])
    opt = fit.optimize([SplitBudget(1e13, 1e12)], Constraints(min_params=5e5)).isel(budget=0)
    assert not bool(opt["chinchilla_feasible"])
    assert bool(np.isnan(opt["chinchilla_metric"]).all()) and bool(np.isnan(opt["p_beats_chinchilla"]).all())
    ds = decide(fit, SplitBudget(1e13, 1e12), Constraints(min_params=5e5))
    assert not bool(ds["chinchilla_feasible"].sel(task="a"))
    assert np.isnan(float(ds["utility"].sel(task="a", design="chinchilla")))


@settings(max_examples=300, deadline=None)
@given(log_ct=st.floats(14, 26), log_ci=st.floats(6, 16), log_t=st.floats(0, 3),
       log_lo=st.floats(4, 9), wall=st.one_of(st.none(), st.floats(8, 14)),
       maxp=st.one_of(st.none(), st.floats(0.1, 4)), kmax=st.one_of(st.none(), st.integers(1, 64)),
       total=st.booleans(), log_q=st.floats(0, 12))
def test_baselines_never_exceed_any_budget(log_ct, log_ci, log_t, log_lo, wall, maxp, kmax, total, log_q):
    """Sweep over budgets and constraints: every feasible Chinchilla design, and every design_at (the
    recommended and train-optimal designs), fits every budget and constraint; an infeasible baseline is
    infeasible for a reason (a brute-force scan of D = 20N designs finds none)."""
    lo = 10.0 ** log_lo
    cons = Constraints(min_params=lo, max_tokens=None if wall is None else 10.0 ** wall,
                       max_params=None if maxp is None else lo * 10.0 ** maxp, k_max=kmax)
    T = 10.0 ** log_t
    budget = (TotalBudget(10.0 ** log_ct, 10.0 ** log_q, T) if total else
              SplitBudget(10.0 ** log_ct, 10.0 ** log_ci, T))
    d = chinchilla_baseline(budget, cons)
    if d.feasible:
        _cost_ok(budget, d.N, d.D, d.k, cons)
        assert d.D == pytest.approx(20 * d.N, rel=1e-14)
    else:
        # brute force: no D = 20N model with one sample fits
        N = np.geomspace(lo, lo * 1e12, 20001)
        N = N[N <= cons.max_params_f]
        D = 20 * N
        if total:
            fits = 6 * N * D + 2 * N * T * budget.queries <= budget.total_flops
        else:
            fits = (6 * N * D <= budget.train_flops) & (2 * N * T <= budget.inference_flops)
        fits &= D <= cons.max_tokens_f
        assert not fits.any()
    try:
        from bayes_t2.budget import check_feasible
        check_feasible(budget, cons)
    except InputError:
        return
    for n in (lo, lo * 3.7, 1e9, 1e12):
        e = design_at(budget, cons, n, 5.0)
        assert e.feasible and e.D > 0
        _cost_ok(budget, e.N, e.D, e.k, cons)


# ------------------------------------------------------------------------------------------------ P(beats)
def test_p_beats_hand_computation():
    x = np.array([1.0, 2.0, 3.0, 4.0, np.nan])
    y = np.array([2.0, 2.0, 1.0, 5.0, 0.0])
    assert p_beats(x, y, lower_is_better=True) == 2 / 4  # draws 0 and 3; the tie does not count
    assert p_beats(x, y, lower_is_better=False) == 1 / 4
    assert math.isnan(p_beats(x, np.full(5, np.nan), True))


def test_p_beats_is_about_the_recommended_design_on_known_draws():
    """P(beats) recomputed by hand with the numpy law: the recommended design (at the median optimum) against
    each baseline, draw by draw."""
    fit = spread_fit(S=300, sd=0.1)
    budget = SplitBudget(2.56e19, 2e9)
    opt = fit.optimize([budget], law=True).isel(budget=0).sel(task="a")
    c = draws_of(fit)
    rec = law(c, float(opt.recommended_N), float(opt.recommended_D), float(opt.recommended_k))
    chin = chinchilla_baseline(budget, Constraints())
    base = law(c, chin.N, chin.D, chin.k)
    to = law(c, float(opt.train_optimal_N), float(opt.train_optimal_D), float(opt.train_optimal_k))
    assert float(opt.p_beats_chinchilla) == np.mean(rec < base)
    assert float(opt.p_beats_train_optimal) == np.mean(rec < to)
    # the recommended design is the design at the median N* (split: k what C_inf affords there)
    n_med = float(np.median(opt["N"].values))
    assert float(opt.recommended_N) == n_med
    assert float(opt.recommended_k) == math.floor(budget.inference_flops / (2 * n_med))


def test_vague_posterior_p_beats_well_below_one():
    """The per-draw optimum beats every fixed design by construction; the committed design does not: with a
    deliberately vague posterior, P(recommended beats Chinchilla) must be well below 1."""
    fit = spread_fit(S=400, sd=0.5, seed=3)
    opt = fit.optimize([SplitBudget(2.56e19, 2e9)], law=True).isel(budget=0).sel(task="a")
    per_draw = float((opt["metric"] <= opt["chinchilla_metric"]).mean())
    assert per_draw == 1.0  # (the old, meaningless definition)
    assert float(opt.p_beats_chinchilla) < 0.9


def test_train_optimal_is_the_median_of_the_k1_optima():
    """Truth from the closed form: for the loss law the k = 1 optimum under C_train is Chinchilla's
    N = G (C/6)^(b/(a+b)) with G = (aA/(bB))^(1/(a+b)); the baseline is the median over draws."""
    fit = spread_fit(S=101, sd=0.05)
    budget = SplitBudget(1e21, 1e13)
    opt = fit.optimize([budget], law=True).isel(budget=0).sel(task="a")
    c = draws_of(fit)
    a, b, A, B = c["alpha"], c["beta"], c["A"], c["B"]
    n = (a * A / (b * B)) ** (1 / (a + b)) * (budget.train_flops / 6) ** (b / (a + b))
    assert float(opt.train_optimal_N) == pytest.approx(np.median(n), rel=1e-9)
    assert float(opt.train_optimal_D) == pytest.approx(budget.train_flops / (6 * np.median(n)), rel=1e-9)
    assert float(opt.train_optimal_k) == math.floor(budget.inference_flops / (2 * float(opt.train_optimal_N)))


# ------------------------------------------------------------------------------------------------ regret
def test_regret_is_unclipped_and_matches_brute_force_per_draw():
    """Regret per draw = law at the design minus that draw's own optimum, found here by numpy brute force
    over a fine grid of designs (and the segment ends); never negative beyond the grid's resolution."""
    fit = spread_fit(S=60, sd=0.08)
    budget = SplitBudget(2.56e19, 2e9)
    ds = decide(fit, budget, law=True).sel(task="a")
    c = draws_of(fit)
    cinf = budget.inference_flops / 2
    ks = np.arange(1, math.floor(cinf / 1e6) + 1)
    N = np.concatenate([np.geomspace(1e6, cinf, 20000), cinf / ks])
    N = N[(N >= 1e6) & (N <= cinf)]
    k = np.floor(cinf / N)
    D = budget.train_flops / (6 * N)
    best = law(c, N, D, k).min(axis=0)  # per-draw optimum by brute force
    for design in ("chosen", "chinchilla", "train_optimal", "median_optimum"):
        r = ds.sel(design=design)
        x = law(c, float(r.N), float(r.D), float(r.k))
        regret = r["regret"].values.reshape(-1)
        np.testing.assert_allclose(regret + ds["optimal_metric"].values.reshape(-1), x, rtol=1e-12)
        # the optimizer's optimum is at least as good as the brute-force grid's (to its resolution)
        assert np.all(ds["optimal_metric"].values.reshape(-1) <= best * (1 + 1e-9))
        assert np.all(regret >= -1e-8 * np.abs(best)), design  # a negative regret is a bug: it raises here
        assert float(r.negative_regret_share) == 0.0


def test_negative_regret_is_reported_not_hidden(monkeypatch):
    """A per-draw optimum that is not optimal (simulated: the optimizer's answer moved off the optimum)
    shows as negative regret in the output instead of being clipped to zero."""
    fit = spread_fit(S=40)
    budget = SplitBudget(2.56e19, 2e9)
    real = fit.optimize

    def worse(*args, **kwargs):
        opt = real(*args, **kwargs)
        opt["law_metric"] = opt["law_metric"] + 0.05  # each draw's "optimum" now 0.05 worse than it is
        opt["metric"] = opt["metric"] + 0.05
        return opt

    true_opt = real([budget], law=True).isel(budget=0).sel(task="a")["law_metric"].values.reshape(-1)
    monkeypatch.setattr(fit, "optimize", worse)
    ds = decide(fit, budget, law=True).sel(task="a")
    chosen = ds.sel(design="chosen")
    x = law(draws_of(fit), float(chosen.N), float(chosen.D), float(chosen.k))
    raw = x - (true_opt + 0.05)  # by hand: the design against the moved "optimum"
    assert float(chosen.negative_regret_share) == pytest.approx(np.mean(raw < -1e-8 * (true_opt + 0.05)))
    assert float(chosen.negative_regret_min) == pytest.approx(raw.min(), rel=1e-9)
    assert float(chosen.expected_regret) == pytest.approx(raw.mean(), rel=1e-9)  # not clipped
    assert raw.mean() < 0
    from bayes_t2.decide import decision_records
    from bayes_t2.summary import bound_warnings

    lines = bound_warnings(decision_records(ds.expand_dims("task").assign_attrs(ds.attrs)))
    assert any("beats the per-draw optimum" in line for line in lines)


# ------------------------------------------------------------------------------------------------ bounds
def test_bound_shares_constructed_case():
    cons = Constraints(min_params=1e6, max_params=1e9, k_max=8, max_tokens=1e11)
    N = np.array([1e6, 1e6 * (1 + 1e-12), 2e6, 1e9, 5e8, np.nan])
    D = np.array([1e10, 1e10, 1e11, 1e10, 1e11, 1e10])
    k = np.array([3, 8, 2, 1, 20, 1], float)
    shares = bound_shares(N, D, k, cons, k_data=16)
    assert shares == {"min_params": 2 / 5, "max_params": 1 / 5, "k_max": 2 / 5, "max_tokens": 2 / 5,
                      "k_beyond_data": 1 / 5}
    assert bound_shares(np.array([2e6]), np.array([1e10]), np.array([2.0]), cons, None) == {}


def test_bounds_in_optimize_records_on_a_constructed_posterior():
    """Half the draws want a model below min_params (tiny A), the other half do not: the share is 1/2."""
    from bayes_t2.summary import optimum_records

    S = 40
    A = np.where(np.arange(S) % 2 == 0, 400.0, 1e-3)
    fit = make_fit({**TRUTH, "A": A, "G": 0.0, "gamma": 1.0})
    budget = SplitBudget(2.56e19, 2e12)
    opt = fit.optimize([budget], Constraints(min_params=1e7), law=True)
    rec = optimum_records(opt, "loss", True)[0]
    # truth: with G = 0 the optimum is Chinchilla's closed form clipped at min_params
    a, b, B = TRUTH["alpha"], TRUTH["beta"], TRUTH["B"]
    n = (a * A / (b * B)) ** (1 / (a + b)) * (budget.train_flops / 6) ** (b / (a + b))
    assert rec["bounds"]["min_params"] == pytest.approx(np.mean(n <= 1e7))
    assert 0 < rec["bounds"]["min_params"] < 1
