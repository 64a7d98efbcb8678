"""The per-draw optimizer against closed forms, brute force and the budget/constraint rules."""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr
from scipy.optimize import minimize_scalar

from bayes_t2.budget import (
    Constraints,
    SplitBudget,
    TotalBudget,
    check_feasible,
    chinchilla_design,
    make_budget,
)
from bayes_t2.errors import InputError
from bayes_t2.laws import LOSS_COEFFICIENTS, chinchilla_optimal_params, loss_law
from bayes_t2.optimum import (
    OUTPUTS,
    loss_objective_nb,
    optimize_array,
    optimize_posterior,
    split_optimum,
    split_optimum_loss,
    total_optimum,
    total_optimum_loss,
)

METHODS = ("exact", "search")
ROW = {name: i for i, name in enumerate(OUTPUTS)}


def draws(n: int, seed: int) -> np.ndarray:
    """Realistic random loss-law coefficients, columns in LOSS_COEFFICIENTS order."""
    rng = np.random.default_rng(seed)
    return np.column_stack([
        rng.uniform(0.5, 3.0, n),     # E
        rng.uniform(50, 2000, n),     # A
        rng.uniform(0.2, 0.6, n),     # alpha
        rng.uniform(50, 5000, n),     # B
        rng.uniform(0.2, 0.6, n),     # beta
        rng.uniform(0.2, 2.0, n),     # G
        rng.uniform(0.1, 0.8, n),     # gamma
    ])


def loss(theta: np.ndarray, N, D, k):
    return loss_law(*theta, N, D, k)


# ------------------------------------------------------------------------------------------------------------
# Brute force references (no use of the structure the kernels exploit)
# ------------------------------------------------------------------------------------------------------------


def _refine(fun, lo: float, hi: float, start: float) -> tuple[float, float]:
    """Polish a grid minimum: bounded Brent on log N between the neighbouring grid points, plus the ends."""
    best_u, best_v = start, fun(start)
    if hi > lo:
        res = minimize_scalar(fun, bounds=(lo, hi), method="bounded", options={"xatol": 1e-13})
        if res.fun < best_v:
            best_u, best_v = float(res.x), float(res.fun)
    for u in (lo, hi):
        if fun(u) < best_v:
            best_u, best_v = u, fun(u)
    return best_u, best_v


def brute_split(theta, Ct, Ci, T=1.0, Dmax=np.inf, lo=1e6, maxN=np.inf, kmax=np.inf, grid=200):
    """Every integer k, a dense log-N grid inside its segment, then the best few segments polished."""
    c = Ci / (2 * T)
    hi = min(maxN, c)
    K = int(min(kmax, math.floor(c / lo)))
    ks, us, vs, bounds = [], [], [], []
    for k in range(1, K + 1):
        a = lo if k >= kmax else max(lo, c / (k + 1))
        b = min(hi, c / k)
        if a > b:
            continue
        u = np.linspace(np.log(a), np.log(b), grid)
        N = np.exp(u)
        v = loss(theta, N, np.minimum(Ct / (6 * N), Dmax), float(k))
        i = int(np.argmin(v))
        ks.append(k), us.append(u), vs.append(v[i]), bounds.append((i, u))
    order = np.argsort(vs)[:4]
    best = (np.inf, None, None)
    for o in order:
        k, (i, u) = ks[o], bounds[o]
        fun = lambda x, k=k: float(loss(theta, math.exp(x), min(Ct / (6 * math.exp(x)), Dmax), float(k)))  # noqa: E731
        ub, vb = _refine(fun, u[max(i - 1, 0)], u[min(i + 1, len(u) - 1)], u[i])
        if vb < best[0]:
            best = (vb, math.exp(ub), k)
    return best  # (value, N, k)


def brute_total(theta, C, Q, T=1.0, Dmax=np.inf, lo=1e6, maxN=np.inf, kmax=np.inf, grid=3000):
    b1 = 2 * T * Q
    K = int(min(kmax, math.ceil(C / (lo * b1)) - 1))
    rows = []
    for k in range(1, K + 1):
        b = min(maxN, C / (b1 * k))
        u = np.linspace(np.log(lo), np.log(b), grid)
        if b == C / (b1 * k):
            u = u[:-1]  # D = 0 at the upper end
        N = np.exp(u)
        D = np.minimum((C / N - b1 * k) / 6, Dmax)
        v = np.where(D > 0, loss(theta, N, np.maximum(D, 1e-300), float(k)), np.inf)
        i = int(np.argmin(v))
        rows.append((v[i], k, i, u))
    rows.sort(key=lambda r: r[0])
    best = (np.inf, None, None)
    for _, k, i, u in rows[:4]:
        def fun(x, k=k):
            N = math.exp(x)
            D = min((C / N - b1 * k) / 6, Dmax)
            return float(loss(theta, N, D, float(k))) if D > 0 else np.inf
        ub, vb = _refine(fun, u[max(i - 1, 0)], u[min(i + 1, len(u) - 1)], u[i])
        if vb < best[0]:
            best = (vb, math.exp(ub), k)
    return best


# ------------------------------------------------------------------------------------------------------------
# 1. k fixed at 1: the Chinchilla closed form
# ------------------------------------------------------------------------------------------------------------


def test_k1_split_matches_chinchilla_closed_form():
    th = draws(200, seed=1)
    train = 10.0 ** np.arange(17, 25)
    budgets = [SplitBudget(c, 1e40) for c in train]  # huge inference budget: only k_max limits k
    cons = Constraints(k_max=1, min_params=1.0, max_params=1e40)
    ref = chinchilla_optimal_params(th[:, 1, None], th[:, 2, None], th[:, 3, None], th[:, 4, None], train)
    out = optimize_array(th, budgets, cons)
    assert np.all(out[ROW["k"]] == 1.0)
    np.testing.assert_allclose(out[ROW["N"]], ref, rtol=1e-6, atol=0)
    np.testing.assert_allclose(out[ROW["D"]], train / (6 * ref), rtol=1e-6, atol=0)

    # The generic search (the path other objectives use) finds the same optimum. Near the
    # optimum the loss is flat, so float64 rounding of E + small terms limits any value-based search;
    # the constant terms (E, G k^-gamma) do not move the optimum, so drop them to test the search itself.
    th0 = th.copy()
    th0[:, 0] = 0.0
    th0[:, 5] = 0.0
    out0 = optimize_array(th0, budgets, cons, method="search")
    np.testing.assert_allclose(out0[ROW["N"]], ref, rtol=1e-6, atol=0)
    # ... and on the full law it is as close as float64 allows (the loss agrees to ~1e-15 relative).
    outs = optimize_array(th, budgets, cons, method="search")
    np.testing.assert_allclose(outs[ROW["N"]], ref, rtol=1e-4, atol=0)
    np.testing.assert_allclose(outs[ROW["metric"]], out[ROW["metric"]], rtol=1e-14, atol=0)


# ------------------------------------------------------------------------------------------------------------
# 2. Split budget: brute force over every integer k
# ------------------------------------------------------------------------------------------------------------

SPLIT_CASES = [
    # (C_train, C_inf, constraints)
    (1e20, 1e12, Constraints(min_params=5e8)),                     # k* in the tens
    (1e21, 4e12, Constraints(min_params=2e9)),
    (1e19, 1e11, Constraints(min_params=1e8, max_tokens=3e9)),     # data wall
    (1e20, 1e12, Constraints(min_params=5e8, k_max=7)),            # k_max
    (1e22, 4e12, Constraints(min_params=2e9, max_params=5e9)),     # max_params
]


@pytest.mark.parametrize("method", METHODS)
def test_split_matches_brute_force(method):
    th = draws(5, seed=2)
    for Ct, Ci, cons in SPLIT_CASES:
        out = optimize_array(th, [SplitBudget(Ct, Ci)], cons, method=method)
        for i, theta in enumerate(th):
            v_ref, n_ref, k_ref = brute_split(theta, Ct, Ci, Dmax=cons.max_tokens_f, lo=cons.min_params,
                                              maxN=cons.max_params_f, kmax=cons.k_max_f)
            n, k, v = out[ROW["N"], i, 0], out[ROW["k"], i, 0], out[ROW["metric"], i, 0]
            assert v <= v_ref * (1 + 1e-9), (Ct, Ci, cons, i)
            assert k == k_ref, (Ct, Ci, cons, i)
            assert n == pytest.approx(n_ref, rel=1e-5), (Ct, Ci, cons, i)
            # the reported metric is the loss at the reported design
            assert v == pytest.approx(loss(theta, n, out[ROW["D"], i, 0], k), rel=1e-14)


def test_split_brute_force_cases_are_not_trivial():
    """The brute-force cases above exercise k* > 1, a binding data wall, k_max and max_params."""
    th = draws(5, seed=2)
    ks = []
    for Ct, Ci, cons in SPLIT_CASES:
        out = optimize_array(th, [SplitBudget(Ct, Ci)], cons)
        ks.append(out[ROW["k"], :, 0])
        if cons.max_tokens is not None:
            assert np.any(out[ROW["D"], :, 0] == cons.max_tokens)
        if cons.k_max is not None:
            assert np.any(out[ROW["k"], :, 0] == cons.k_max)
        if cons.max_params is not None:
            assert np.any(out[ROW["N"], :, 0] == cons.max_params)
    assert np.max(ks[0]) > 5


def test_exact_and_search_agree():
    """Two independent algorithms (closed forms + Newton vs bracketing search) on random problems."""
    th = draws(150, seed=3)
    budgets = [SplitBudget(10.0 ** e, 10.0 ** f) for e, f in [(18, 9), (20, 11), (22, 12), (24, 14), (21, 16)]]
    budgets += [TotalBudget(10.0 ** e, 10.0 ** q) for e, q in [(20, 6), (22, 9), (24, 12), (23, 8)]]
    for cons in (Constraints(), Constraints(max_tokens=1e11, k_max=64)):
        ex = optimize_array(th, budgets, cons, method="exact")
        se = optimize_array(th, budgets, cons, method="search")
        # the search cannot beat the exact answer and finds the same value
        assert np.all(ex[ROW["metric"]] <= se[ROW["metric"]] * (1 + 1e-12))
        np.testing.assert_allclose(se[ROW["metric"]], ex[ROW["metric"]], rtol=1e-9)
        # the designs agree; with k in the millions neighbouring k tie to float64 precision
        np.testing.assert_allclose(se[ROW["k"]], ex[ROW["k"]], rtol=1e-5)
        np.testing.assert_allclose(se[ROW["N"]], ex[ROW["N"]], rtol=1e-4)
        small = ex[ROW["k"]] < 1e4
        assert np.all(se[ROW["k"]][small] == ex[ROW["k"]][small])


# ------------------------------------------------------------------------------------------------------------
# 3. Monotone responses to inference demand and budget size
# ------------------------------------------------------------------------------------------------------------


def test_more_queries_never_raise_n_at_fixed_k():
    """Total budget, k fixed: serving more queries makes the optimal model smaller (or keeps it)."""
    th = draws(200, seed=4)
    qs = np.logspace(0, 12, 40)
    for kmax in (1, 4):
        cons = Constraints(k_max=kmax, min_params=1e5)
        budgets = [TotalBudget(1e22, q) for q in qs]
        for method in METHODS:
            out = optimize_array(th, budgets, cons, method=method)
            N = out[ROW["N"]]
            if kmax > 1:
                keep = np.all(out[ROW["k"]] == kmax, axis=1)  # draws where k_max binds everywhere
                assert keep.sum() > 20
                N = N[keep]
            tol = 1e-12 if method == "exact" else 1e-5
            assert np.all(np.diff(np.log(N), axis=1) <= tol)
            assert np.all(N[:, -1] < N[:, 0])  # and the effect is real


def test_optimal_loss_monotone_in_budgets_and_bounded_by_k_free_optimum():
    th = draws(100, seed=5)
    cis = np.logspace(8, 15, 30)
    out = optimize_array(th, [SplitBudget(1e21, ci) for ci in cis], Constraints())
    # more inference budget per query never hurts ...
    assert np.all(np.diff(out[ROW["metric"]], axis=1) <= 1e-14)
    # ... and never buys a model larger than the k-free (Chinchilla) optimum of the same training budget
    nc = chinchilla_optimal_params(th[:, 1], th[:, 2], th[:, 3], th[:, 4], 1e21)
    nc = np.clip(nc[:, None], 1e6, cis / 2)  # smallest model considered; k >= 1 needs N <= C_inf/(2T)
    assert np.all(out[ROW["N"]] <= nc * (1 + 1e-12))
    assert np.any(out[ROW["N"]] < nc * (1 - 1e-3))  # (and more samples do pay for a smaller model)
    # the optimum beats the Chinchilla design at the same budget (a design within every budget: clipped to the
    # inference cap, so it exists at every C_inf here)
    fits = np.array([chinchilla_design(SplitBudget(1e21, ci))[0] <= ci / 2 for ci in cis])
    assert fits.all()
    assert np.all(out[ROW["metric"]] <= out[ROW["chinchilla_metric"]] * (1 + 1e-14))
    # total budget: more compute never hurts, more queries never help
    tot = optimize_array(th, [TotalBudget(c, 1e9) for c in np.logspace(19, 25, 20)], Constraints())
    assert np.all(np.diff(tot[ROW["metric"]], axis=1) <= 1e-14)
    tq = optimize_array(th, [TotalBudget(1e23, q) for q in np.logspace(3, 12, 20)], Constraints())
    assert np.all(np.diff(tq[ROW["metric"]], axis=1) >= -1e-14)


# ------------------------------------------------------------------------------------------------------------
# 4. Constraints and budgets are respected
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_constraints_and_budgets_respected(method):
    th = draws(100, seed=6)
    split = [SplitBudget(10.0 ** e, 10.0 ** f, t) for e, f, t in [(19, 10, 1.0), (21, 12, 3.0), (23, 13, 1.0),
                                                                  (24, 16, 100.0)]]
    total = [TotalBudget(10.0 ** e, 10.0 ** q, t) for e, q, t in [(20, 5, 1.0), (22, 9, 2.0), (24, 11, 1.0)]]
    for cons in (Constraints(), Constraints(max_tokens=2e11, max_params=3e10, k_max=16, min_params=1e7),
                 Constraints(max_tokens=1e10, k_max=3)):
        out = optimize_array(th, split + total, cons, method=method)
        N, D, k = out[ROW["N"]], out[ROW["D"]], out[ROW["k"]]
        assert np.all(np.isfinite(out[[ROW["N"], ROW["D"], ROW["k"], ROW["metric"]]]))  # (baseline: tests/test_baselines.py)
        assert np.all(N >= cons.min_params_f) and np.all(N <= cons.max_params_f)
        assert np.all(D <= cons.max_tokens_f) and np.all(D > 0)
        assert np.all(k >= 1) and np.all(k == np.round(k)) and np.all(k <= cons.k_max_f)
        for j, b in enumerate(split):
            assert np.all(6 * N[:, j] * D[:, j] <= b.train_flops * (1 + 1e-12))
            assert np.all(2 * N[:, j] * k[:, j] * b.tokens_per_sample <= b.inference_flops * (1 + 1e-12))
            # the training budget is spent unless the data wall stops it
            spent = np.isclose(6 * N[:, j] * D[:, j], b.train_flops, rtol=1e-12)
            assert np.all(spent | (D[:, j] == cons.max_tokens_f))
        for jj, b in enumerate(total):
            j = len(split) + jj
            cost = 6 * N[:, j] * D[:, j] + 2 * N[:, j] * k[:, j] * b.tokens_per_sample * b.queries
            assert np.all(cost <= b.total_flops * (1 + 1e-12))


def test_data_wall_binds_and_changes_the_answer():
    th = draws(50, seed=7)
    budgets = [SplitBudget(1e23, 1e13), TotalBudget(1e23, 1e8)]
    for kmax in (None, 1):
        free = optimize_array(th, budgets, Constraints(k_max=kmax))
        wall = optimize_array(th, budgets, Constraints(k_max=kmax, max_tokens=1e11))
        hit = free[ROW["D"]] > 1e11
        assert hit.mean() >= 0.5
        np.testing.assert_allclose(wall[ROW["D"]][hit], 1e11, rtol=1e-12)  # the wall binds ...
        assert np.all(wall[ROW["metric"]][hit] > free[ROW["metric"]][hit])  # ... the loss is worse ...
        moved = (np.abs(wall[ROW["N"]] / free[ROW["N"]] - 1) > 1e-3) | (wall[ROW["k"]] != free[ROW["k"]])
        assert np.all(moved[free[ROW["D"]] > 1.1e11])                      # ... the design changes
        np.testing.assert_array_equal(wall[:4, ~hit], free[:4, ~hit])      # elsewhere nothing changes
        if kmax == 1:
            # with k fixed the compute the data cannot absorb goes into a bigger model: exactly the model
            # that spends the training budget on max_tokens (split), or the whole budget (total)
            np.testing.assert_allclose(wall[ROW["N"], :, 0][hit[:, 0]], 1e23 / (6 * 1e11), rtol=1e-12)
            np.testing.assert_allclose(wall[ROW["N"], :, 1][hit[:, 1]], 1e23 / (6 * 1e11 + 2e8), rtol=1e-12)
            assert np.all(wall[ROW["N"]][hit] > free[ROW["N"]][hit])


# ------------------------------------------------------------------------------------------------------------
# 5. Total budget
# ------------------------------------------------------------------------------------------------------------

TOTAL_CASES = [
    # (C, Q, constraints): small k ranges so brute force can try every k
    (1e21, 3e10, Constraints(min_params=2e8)),
    (1e22, 1e10, Constraints(min_params=1e8, k_max=40)),
    (1e22, 1e9, Constraints(min_params=1e8, k_max=60, max_tokens=5e10)),
    (1e22, 1e11, Constraints(min_params=1e8, max_params=2e9, max_tokens=2e10)),  # both bind: compute to spare
]


@pytest.mark.parametrize("method", METHODS)
def test_total_matches_brute_force(method):
    th = draws(4, seed=8)
    for C, Q, cons in TOTAL_CASES:
        out = optimize_array(th, [TotalBudget(C, Q)], cons, method=method)
        for i, theta in enumerate(th):
            v_ref, n_ref, k_ref = brute_total(theta, C, Q, Dmax=cons.max_tokens_f, lo=cons.min_params,
                                              maxN=cons.max_params_f, kmax=cons.k_max_f)
            n, k, v = out[ROW["N"], i, 0], out[ROW["k"], i, 0], out[ROW["metric"], i, 0]
            assert v <= v_ref * (1 + 1e-9), (C, Q, cons, i)
            assert k == k_ref, (C, Q, cons, i)
            assert n == pytest.approx(n_ref, rel=1e-5), (C, Q, cons, i)


def test_total_cases_are_not_trivial():
    th = draws(4, seed=8)
    ks = np.concatenate([optimize_array(th, [TotalBudget(C, Q)], cons)[ROW["k"], :, 0]
                         for C, Q, cons in TOTAL_CASES])
    assert ks.min() >= 1 and len(np.unique(ks)) > 3


def test_total_with_vanishing_queries_is_chinchilla_at_k_max():
    th = draws(100, seed=9)
    C = 10.0 ** np.arange(18, 25)
    out = optimize_array(th, [TotalBudget(c, 1e-30) for c in C], Constraints(k_max=8, min_params=1.0))
    assert np.all(out[ROW["k"]] == 8)
    ref = chinchilla_optimal_params(th[:, 1, None], th[:, 2, None], th[:, 3, None], th[:, 4, None], C)
    np.testing.assert_allclose(out[ROW["N"]], ref, rtol=1e-6, atol=0)
    np.testing.assert_allclose(6 * out[ROW["N"]] * out[ROW["D"]], np.broadcast_to(C, (100, 7)), rtol=1e-12)


# ------------------------------------------------------------------------------------------------------------
# 6. The xarray wrapper
# ------------------------------------------------------------------------------------------------------------


def posterior(th: np.ndarray, chains: int, n_draws: int, tasks: list[str]) -> xr.Dataset:
    arr = th.reshape(chains, n_draws, len(tasks), len(LOSS_COEFFICIENTS))
    return xr.Dataset(
        {name: (("chain", "draw", "task"), arr[..., i]) for i, name in enumerate(LOSS_COEFFICIENTS)},
        coords={"chain": np.arange(chains), "draw": np.arange(n_draws), "task": tasks},
    )


def test_xarray_wrapper_dims_coords_and_values():
    th = draws(2 * 5 * 3, seed=10)
    post = posterior(th, 2, 5, ["gsm8k", "math", "code"])
    budgets = [SplitBudget(1e21, 1e12, 2.0), TotalBudget(1e22, 1e9)]
    cons = Constraints(max_tokens=1e12, k_max=32)
    ds = optimize_posterior(post, budgets, cons)

    for name in ("N", "D", "k", "tokens_per_param", "metric", "chinchilla_metric", "chinchilla_metric_k1"):
        assert ds[name].dims == ("chain", "draw", "task", "budget"), name
    for name in ("chinchilla_N", "chinchilla_D", "chinchilla_k"):
        assert ds[name].dims == ("budget",)
    assert list(ds["budget"].values) == [0, 1]
    assert list(ds["task"].values) == ["gsm8k", "math", "code"]
    assert list(ds["kind"].values) == ["split", "total"]
    np.testing.assert_array_equal(ds["train_flops"].values, [1e21, np.nan])
    np.testing.assert_array_equal(ds["inference_flops"].values, [1e12, np.nan])
    np.testing.assert_array_equal(ds["total_flops"].values, [np.nan, 1e22])
    np.testing.assert_array_equal(ds["queries"].values, [np.nan, 1e9])
    np.testing.assert_array_equal(ds["tokens_per_sample"].values, [2.0, 1.0])
    assert ds.attrs["k_max"] == 32 and ds.attrs["max_tokens"] == 1e12 and ds.attrs["max_params"] == np.inf
    assert '"k_max": 32' in ds.attrs["constraints"]

    # same numbers as the raw kernel on the same inputs, in the same order
    raw = optimize_array(th, budgets, cons)
    for name in OUTPUTS:
        np.testing.assert_array_equal(ds[name].values.reshape(-1, 2), raw[ROW[name]])
    np.testing.assert_array_equal(ds["tokens_per_param"].values, ds["D"].values / ds["N"].values)
    for j, b in enumerate(budgets):
        assert tuple(ds[n].values[j] for n in ("chinchilla_N", "chinchilla_D", "chinchilla_k")) == \
            pytest.approx(chinchilla_design(b, cons), rel=1e-15)
    # metric at the Chinchilla design, and at its N, D with k = 1
    sel = ds.isel(chain=1, draw=3, task=2, budget=0)
    theta = [float(post[n].isel(chain=1, draw=3, task=2)) for n in LOSS_COEFFICIENTS]
    cn, cd, ck = chinchilla_design(budgets[0], cons)
    assert float(sel["chinchilla_metric"]) == pytest.approx(loss_law(*theta, cn, cd, ck), rel=1e-14)
    assert float(sel["chinchilla_metric_k1"]) == pytest.approx(loss_law(*theta, cn, cd, 1.0), rel=1e-14)


def test_xarray_wrapper_other_sample_dims_and_dask():
    th = draws(40, seed=11)
    post = xr.Dataset({n: ("draw", th[:, i]) for i, n in enumerate(LOSS_COEFFICIENTS)})
    post["G"] = xr.zeros_like(post["G"])  # a k-free law ...
    post["gamma"] = xr.ones_like(post["gamma"])
    ds = optimize_posterior(post, [SplitBudget(1e20, 1e12)])
    assert ds["N"].dims == ("draw", "budget")
    # ... keeps the Chinchilla N (k does not matter, so no reason to shrink the model)
    nc = np.clip(chinchilla_optimal_params(th[:, 1], th[:, 2], th[:, 3], th[:, 4], 1e20), 1e6, 1e12 / 2)
    np.testing.assert_allclose(ds["N"].values[:, 0], nc, rtol=1e-12)
    pytest.importorskip("dask")
    lazy = optimize_posterior(post.chunk({"draw": 10}), [SplitBudget(1e20, 1e12)])
    assert lazy["N"].chunks is not None
    xr.testing.assert_identical(lazy.compute(), ds)


def test_generic_objective_plugs_in():
    """Any numba objective(theta, N, D, k) works through the same kernels (here: a shifted loss law)."""
    import numba

    @numba.njit
    def shifted(theta, N, D, k):
        return 2.0 * (loss_objective_nb(theta, N, D, k) - 1.0)

    th = draws(30, seed=12)
    budgets = [SplitBudget(1e21, 1e12), TotalBudget(1e22, 1e9)]
    ref = optimize_array(th, budgets, Constraints(k_max=50))
    out = optimize_array(th, budgets, Constraints(k_max=50), objective=shifted)
    np.testing.assert_allclose(out[ROW["metric"]], 2.0 * (ref[ROW["metric"]] - 1.0), rtol=1e-10)
    np.testing.assert_allclose(out[ROW["N"]], ref[ROW["N"]], rtol=1e-3)
    # plain kernels, one problem at a time
    theta = np.ascontiguousarray(th[0])
    assert split_optimum(loss_objective_nb, theta, 1e21, 1e12, 1.0, np.inf, 1e6, np.inf, 50.0)[3] == \
        pytest.approx(split_optimum_loss(theta, 1e21, 1e12, 1.0, np.inf, 1e6, np.inf, 50.0)[3], rel=1e-12)
    assert total_optimum(loss_objective_nb, theta, 1e22, 1.0, 1e9, np.inf, 1e6, np.inf, 50.0)[3] == \
        pytest.approx(total_optimum_loss(theta, 1e22, 1.0, 1e9, np.inf, 1e6, np.inf, 50.0)[3], rel=1e-12)


def test_undefined_draws_give_nan_and_leave_the_others_alone():
    th = draws(6, seed=13)
    bad = th.copy()
    bad[1, 0] = np.nan   # a failed draw
    bad[3, 2] = -0.1     # alpha <= 0: the loss law has no optimum
    bad[4, 5] = -1.0     # G < 0
    budgets = [SplitBudget(1e21, 1e12), TotalBudget(1e22, 1e9)]
    out = optimize_array(bad, budgets)
    assert np.all(np.isnan(out[:, [1, 3, 4]]))
    np.testing.assert_array_equal(out[:, [0, 2, 5]], optimize_array(th[[0, 2, 5]], budgets))


# ------------------------------------------------------------------------------------------------------------
# 7. Chinchilla baseline design
# ------------------------------------------------------------------------------------------------------------


# moved to tests/test_baselines.py (the baseline never exceeds any budget)


# ------------------------------------------------------------------------------------------------------------
# 8. Bad input
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("make, option", [
    (lambda: SplitBudget(-1, 1e12), "--train-flops"),
    (lambda: SplitBudget(0.0, 1e12), "--train-flops"),
    (lambda: SplitBudget(float("nan"), 1e12), "--train-flops"),
    (lambda: SplitBudget(1e20, float("inf")), "--inference-flops"),
    (lambda: SplitBudget(1e20, "1e12"), "--inference-flops"),
    (lambda: SplitBudget(1e20, 1e12, 0), "--tokens-per-sample"),
    (lambda: TotalBudget(1e20, -5), "--queries"),
    (lambda: TotalBudget(True, 5), "--total-flops"),
    (lambda: Constraints(max_tokens=0), "--max-tokens"),
    (lambda: Constraints(max_params=-1e9), "--max-params"),
    (lambda: Constraints(k_max=0), "--k-max"),
    (lambda: Constraints(k_max=2.5), "--k-max"),
    (lambda: Constraints(k_max=True), "--k-max"),
    (lambda: Constraints(max_params=1e5), "--max-params"),  # not above min_params
    (lambda: Constraints(min_params=0), "--min-params"),
    (lambda: make_budget(train_flops=1e20), "--inference-flops"),
    (lambda: make_budget(train_flops=1e20, inference_flops=1e12, queries=5), "--total-flops"),
    (lambda: check_feasible(SplitBudget(1e20, 1e6)), "--inference-flops"),
    (lambda: check_feasible(TotalBudget(1e15, 1e9)), "--total-flops"),
    (lambda: check_feasible(SplitBudget(1e3, 2e9)), "--train-flops"),  # D would be 1.7e-4 tokens
    (lambda: check_feasible(TotalBudget(6e12 - 1, 1e-3)), "--total-flops"),  # serving is cheap, training is not
    (lambda: optimize_array(draws(2, 0), [SplitBudget(1e20, 1e12), SplitBudget(1e20, 1e5)]),
     "--inference-flops"),
])
def test_bad_input_raises_input_error(make, option):
    with pytest.raises(InputError) as err:
        make()
    msg = str(err.value)
    assert option in msg and "\n" not in msg


def test_input_messages_and_normalisation():
    with pytest.raises(InputError, match=r"^--train-flops must be a positive number, got -1$"):
        SplitBudget(-1, 1e12)
    assert Constraints(k_max=np.int64(4)).k_max == 4 and Constraints(k_max=4.0).k_max == 4
    assert make_budget(total_flops=1e22, queries=1e9) == TotalBudget(1e22, 1e9)
    assert SplitBudget(1e21, 1e12).as_dict() == {"kind": "split", "train_flops": 1e21, "inference_flops": 1e12,
                                                  "tokens_per_sample": 1.0}
    assert TotalBudget(1e22, 1e9).as_dict()["kind"] == "total"
    assert "1e+21" in SplitBudget(1e21, 1e12).label()
    with pytest.raises(InputError, match="missing G, gamma"):
        optimize_posterior(xr.Dataset({n: ("draw", [1.0]) for n in LOSS_COEFFICIENTS[:5]}),
                           [SplitBudget(1e20, 1e12)])
