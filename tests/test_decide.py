"""Risk-aware decisions: the search against brute force, closed forms at a point mass, risk orderings,
min-budget, bad input and the command line."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import xarray as xr

from bayes_t2.budget import Constraints, SplitBudget, TotalBudget
from bayes_t2.decide import DESIGNS, LOG_N_TOL, decide, decision_records, min_budget, parse_risk
from bayes_t2.errors import InputError
from bayes_t2.fit import FIT_FORMAT, Fit
from bayes_t2.laws import LOSS_COEFFICIENTS, chinchilla_optimal_params
from bayes_t2.optimum import optimize_posterior

from test_cli import assert_one_line_error, run

TRUTH = dict(E=1.7, A=400.0, alpha=0.34, B=410.0, beta=0.28, G=0.3, gamma=0.5)
SPLIT = SplitBudget(2.56e19, 2e9)
TOTAL = TotalBudget(1e21, 1e9)


def make_fit(coefs: dict[str, np.ndarray | float], tasks=("a",), draws: int | None = None,
             route: str = "loss") -> Fit:
    """A Fit holding a hand-made posterior: coefs[name] is (draws,) or (draws, tasks) or a scalar."""
    S = draws or max(np.shape(v)[0] for v in coefs.values() if np.ndim(v))
    data = {}
    for name, v in coefs.items():
        v = np.broadcast_to(np.asarray(v, float).reshape(-1, 1) if np.ndim(v) == 1 else np.asarray(v, float),
                            (S, len(tasks)))
        data[name] = (("chain", "draw", "task"), v.reshape(1, S, len(tasks)).copy())
    ds = xr.Dataset(data, coords={"chain": [0], "draw": np.arange(S), "task": list(tasks)})
    tree = xr.DataTree.from_dict({"posterior": ds})
    tree.attrs.update({"bayes_t2_format": FIT_FORMAT, "route": route, "model_spec": "{}", "scaling": "{}"})
    return Fit(tree)


def spread_fit(S: int = 200, seed: int = 0, sd: float = 0.06, tasks=("a",)) -> Fit:
    rng = np.random.default_rng(seed)
    return make_fit({k: v * np.exp(sd * rng.standard_normal((S, len(tasks)))) for k, v in TRUTH.items()},
                    tasks=tasks)


def law(c: dict[str, np.ndarray], N, D, k) -> np.ndarray:
    """Loss of every draw (last axis) at designs N, D, k (leading axes), plain numpy."""
    N, D, k = (np.asarray(x, float)[..., None] for x in (N, D, k))
    return c["E"] + c["A"] * N ** -c["alpha"] + c["B"] * D ** -c["beta"] + c["G"] * k ** -c["gamma"]


def draws_of(fit: Fit, task: str = "a") -> dict[str, np.ndarray]:
    post = fit.coefficients().sel(task=task)
    return {k: post[k].values.reshape(-1) for k in LOSS_COEFFICIENTS}


def utility_np(x: np.ndarray, risk: str, target: float | None = None) -> np.ndarray:
    """Utility of loss rows x[M, S], independently of decide.py (sorting, not partitioning)."""
    r = parse_risk(risk)
    if r.kind == "mean":
        return x.mean(axis=1)
    if r.kind == "prob":
        return (x <= target).mean(axis=1)
    m = math.ceil(r.q * x.shape[1] - 1e-9)
    worst = np.sort(x, axis=1)[:, ::-1][:, :m]
    return worst[:, -1] if r.kind == "quantile" else worst.mean(axis=1)


def split_grid(budget: SplitBudget, constraints: Constraints = Constraints(), n: int = 6000):
    """Every design of a fine brute-force grid: log-grid in N plus both ends of every k segment."""
    c = budget.inference_flops / (2 * budget.tokens_per_sample)
    lo, hi = constraints.min_params_f, min(constraints.max_params_f, c)
    ks = np.arange(1, min(np.floor(c / lo), constraints.k_max_f) + 1)
    N = np.concatenate([np.geomspace(lo, hi, n), c / ks, c / (ks + 1)])
    N = N[(N >= lo) & (N <= hi)]
    k = np.maximum(1, np.minimum(constraints.k_max_f, np.floor(c / N)))
    D = np.minimum(budget.train_flops / (6 * N), constraints.max_tokens_f)
    return N, D, k


def total_grid(budget: TotalBudget, k_max: int, n: int = 1500):
    b1 = 2 * budget.tokens_per_sample * budget.queries
    rows = []
    for k in range(1, k_max + 1):
        N = np.geomspace(1e6, budget.total_flops / (b1 * k) * (1 - 1e-9), n)
        rows.append((N, (budget.total_flops / N - b1 * k) / 6, np.full(n, float(k))))
    return tuple(np.concatenate(x) for x in zip(*rows))


# ------------------------------------------------------------------------------------------------ brute force
@pytest.mark.parametrize("risk, target, constraints", [
    ("mean", None, Constraints()), ("quantile:0.1", None, Constraints()), ("cvar:0.2", None, Constraints()),
    ("prob", 3.0, Constraints()), ("mean", None, Constraints(max_params=1.5e8, k_max=16, max_tokens=3e10)),
    ("cvar:0.1", None, Constraints(max_params=3e8, k_max=4))])
def test_split_decision_matches_brute_force(risk, target, constraints):
    fit = spread_fit()
    ds = decide(fit, SPLIT, constraints, risk=risk, target=target)
    c = draws_of(fit)
    N, D, k = split_grid(SPLIT, constraints)
    u = utility_np(law(c, N, D, k), risk, target)
    best = u.max() if risk == "prob" else u.min()
    chosen = ds.sel(task="a", design="chosen")
    # the reported utility is the utility of the reported design
    mine = utility_np(law(c, float(chosen.N), float(chosen.D), float(chosen.k))[None, :], risk, target)[0]
    assert float(chosen.utility) == pytest.approx(mine, rel=1e-12)
    # the design is feasible under the budget and at least as good as the best of the fine grid
    assert 6 * float(chosen.N) * float(chosen.D) <= SPLIT.train_flops * (1 + 1e-12)
    assert 2 * float(chosen.N) * float(chosen.k) <= SPLIT.inference_flops * (1 + 1e-12)
    if risk == "prob":
        assert mine >= best
    else:
        assert mine <= best + 1e-12 * abs(best)
        j = int(np.argmin(u))
        assert float(chosen.k) == k[j]
        assert float(chosen.N) == pytest.approx(N[j], rel=2e-3)


@pytest.mark.parametrize("risk, target", [("mean", None), ("quantile:0.1", None), ("prob", 2.45)])
def test_total_decision_matches_brute_force(risk, target):
    fit = spread_fit(seed=1)
    ds = decide(fit, TOTAL, Constraints(k_max=40), risk=risk, target=target)
    c = draws_of(fit)
    N, D, k = total_grid(TOTAL, 40)
    u = utility_np(law(c, N, D, k), risk, target)
    chosen = ds.sel(task="a", design="chosen")
    mine = utility_np(law(c, float(chosen.N), float(chosen.D), float(chosen.k))[None, :], risk, target)[0]
    assert float(chosen.utility) == pytest.approx(mine, rel=1e-12)
    cost = 6 * float(chosen.N) * float(chosen.D) + 2 * float(chosen.N) * float(chosen.k) * TOTAL.queries
    assert cost <= TOTAL.total_flops * (1 + 1e-12)
    if risk == "prob":
        assert 0 < u.max() < 1 and mine >= u.max()
        return
    j = int(np.argmin(u))
    assert mine <= u[j] * (1 + 1e-12)
    assert float(chosen.k) == k[j]
    assert float(chosen.N) == pytest.approx(N[j], rel=1e-2)


# ------------------------------------------------------------------------------------------------ point mass
@pytest.mark.parametrize("budget, constraints", [(SPLIT, Constraints()), (TOTAL, Constraints()),
                                                 (SPLIT, Constraints(max_tokens=5e9)),
                                                 (TOTAL, Constraints(k_max=8, max_tokens=1e11))])
@pytest.mark.parametrize("risk", ["mean", "quantile:0.1", "cvar:0.1"])
def test_point_mass_gives_the_per_draw_optimum(budget, constraints, risk):
    fit = make_fit(TRUTH, draws=16)
    ds = decide(fit, budget, constraints, risk=risk).sel(task="a")
    opt = fit.optimize([budget], constraints).isel(budget=0, chain=0, draw=0).sel(task="a")
    chosen = ds.sel(design="chosen")
    assert float(chosen.k) == float(opt.k)
    assert float(chosen.N) == pytest.approx(float(opt.N), rel=10 * LOG_N_TOL)
    assert float(chosen.utility) == pytest.approx(float(opt.metric), rel=1e-12)
    assert float(chosen.expected_regret) == pytest.approx(0.0, abs=1e-12)
    # and the median-optimum design is that same optimum
    assert float(ds.sel(design="median_optimum").N) == pytest.approx(float(opt.N), rel=1e-12)


@pytest.mark.parametrize("budget", [SPLIT, TOTAL])
def test_point_mass_prob_ties_go_to_the_optimum(budget):
    fit = make_fit(TRUTH, draws=8)
    opt = fit.optimize([budget]).isel(budget=0, chain=0, draw=0).sel(task="a")
    ds = decide(fit, budget, risk="prob", target=float(opt.metric) + 0.05).sel(task="a", design="chosen")
    assert float(ds.utility) == 1.0 and float(ds.p_target) == 1.0
    assert float(ds.k) == float(opt.k)
    assert float(ds.metric_mean) == pytest.approx(float(opt.metric), rel=1e-12)


def test_nan_draws_are_dropped():
    rng = np.random.default_rng(5)
    good = {k: v * np.exp(0.05 * rng.standard_normal(40)) for k, v in TRUTH.items()}
    mixed = {k: np.concatenate([v, np.full(10, np.nan) if k == "A" else v[:10]]) for k, v in good.items()}
    a = decide(make_fit(good), SPLIT, risk="cvar:0.2")
    b = decide(make_fit(mixed), SPLIT, risk="cvar:0.2")
    assert int(b.n_draws.sel(task="a")) == 40
    for name in ("N", "k", "utility", "expected_regret", "metric_median"):
        np.testing.assert_allclose(b[name], a[name], rtol=1e-12)
    assert bool(b["metric"].isel(draw=slice(40, None)).isnull().all())


def test_point_mass_k_free_law_is_chinchilla_closed_form():
    fit = make_fit({**TRUTH, "G": 0.0, "gamma": 1.0}, draws=8)
    for C in (1e19, 1e21, 1e23):
        budget = SplitBudget(C, 1e14)
        chosen = decide(fit, budget, Constraints(k_max=1)).sel(task="a", design="chosen")
        n_opt = chinchilla_optimal_params(TRUTH["A"], TRUTH["alpha"], TRUTH["B"], TRUTH["beta"], C)
        assert float(chosen.k) == 1.0
        assert float(chosen.N) == pytest.approx(float(n_opt), rel=1e-6)
        assert float(chosen.expected_regret) == pytest.approx(0.0, abs=1e-12)


# ------------------------------------------------------------------------------------------------ risk & regret
@pytest.mark.parametrize("budget", [SPLIT, TOTAL])
def test_risk_orderings_and_regret(budget):
    fit = spread_fit(S=300, seed=2, sd=0.08)
    res = {r: decide(fit, budget, risk=r).sel(task="a") for r in ("mean", "quantile:0.1", "cvar:0.1")}
    u = {r: float(d.sel(design="chosen").utility) for r, d in res.items()}
    # loss: CVaR (mean of the worst tail) is never better than the tail's boundary or than the mean
    assert u["cvar:0.1"] >= u["quantile:0.1"] and u["cvar:0.1"] >= u["mean"]
    assert u["quantile:0.1"] >= u["mean"]  # holds here: a 90% upper quantile of a near-symmetric posterior
    for d in res.values():
        raw = d["metric"] - d["optimal_metric"]
        assert float(raw.min()) >= -1e-12 * float(d["optimal_metric"].max())  # per-draw optimum is optimal
        assert bool((d["expected_regret"] >= 0).all())
    # risk-neutral: the chosen design has the smallest expected regret of the three (regret = metric - optimum)
    mean = res["mean"]
    assert float(mean.expected_regret.sel(design="chosen")) <= float(mean.expected_regret.min()) + 1e-15
    regret = (mean["metric"] - mean["optimal_metric"]).mean(("chain", "draw"))
    np.testing.assert_allclose(mean["expected_regret"], regret, atol=1e-13)


def test_p_target_monotone_in_target():
    fit = spread_fit(S=200, seed=3)
    targets = [2.9, 3.0, 3.05, 3.1, 3.3]
    best = [float(decide(fit, SPLIT, risk="prob", target=t).utility.sel(task="a", design="chosen"))
            for t in targets]
    assert all(b >= a for a, b in zip(best, best[1:]))
    assert 0 < best[0] < best[-1]
    chin = [float(decide(fit, SPLIT, target=t).p_target.sel(task="a", design="chinchilla")) for t in targets]
    assert all(b >= a for a, b in zip(chin, chin[1:]))


def test_per_task_decisions_and_records():
    fit = spread_fit(S=100, tasks=("x", "y"))
    ds = decide(fit, SPLIT, risk="cvar:0.1", target=3.2)
    assert ds.sizes["task"] == 2 and list(ds["design"].values) == list(DESIGNS)
    assert ds["metric"].dims == ("chain", "draw", "task", "design")
    assert all(d in ds.coords for d in ds.dims)
    assert ds.attrs["risk"] == "cvar:0.1" and ds.attrs["target"] == 3.2
    assert json.loads(ds.attrs["budget"])["train_flops"] == SPLIT.train_flops
    recs = decision_records(ds)
    assert [r["task"] for r in recs] == ["x", "y"]
    for r in recs:
        assert r["risk"] == "cvar:0.1" and r["target"] == 3.2 and r["budget"]["kind"] == "split"
        for d in DESIGNS:
            e = r[d]
            assert set(e) >= {"N", "D", "k", "tokens_per_param", "flops_per_query", "metric", "p_target",
                              "expected_regret", "negative_regret", "utility"}
            assert e["flops_per_query"] == pytest.approx(2 * e["N"] * e["k"] * SPLIT.tokens_per_sample, rel=1e-12)
            assert e["negative_regret"]["share"] == 0.0
            assert e["metric"]["lower"] <= e["metric"]["median"] <= e["metric"]["upper"]
            assert 0 <= e["p_target"] <= 1
    one = decide(fit, SPLIT, task="y")
    assert list(one["task"].values) == ["y"]
    assert decision_records(one)[0]["chosen"]["p_target"] is None


def test_accuracy_route_orientation():
    from bayes_t2.routes.accuracy import DEFAULT_TRUTH

    fit = make_fit(DEFAULT_TRUTH["task_a"], draws=4, route="accuracy")
    budget = SplitBudget(1e21, 1e12)
    chosen = decide(fit, budget).sel(task="a", design="chosen")
    opt = fit.optimize([budget]).isel(budget=0, chain=0, draw=0).sel(task="a")
    # pass@k: higher is better (the optimum is flat in k here, so compare values, not k)
    assert float(chosen.utility) >= float(opt.metric) * (1 - 1e-9)
    assert float(chosen.utility) > float(decide(fit, budget).utility.sel(task="a", design="chinchilla"))
    assert float(chosen.expected_regret) <= 1e-9


# ------------------------------------------------------------------------------------------------ min budget
def test_min_budget_point_mass_against_exact_optimizer():
    fit = make_fit(TRUTH, draws=4)
    target = 2.5
    ds = min_budget(fit, TOTAL, target=target, confidence=0.9)
    C = float(ds["min_flops"].sel(task="a"))
    assert float(ds.p_target.sel(task="a", design="chosen")) == 1.0
    coefs = fit.coefficients()
    at = lambda c: float(optimize_posterior(coefs, [TotalBudget(c, TOTAL.queries)])["metric"].max())  # noqa: E731
    assert at(C) <= target < at(0.99 * C)
    assert decision_records(ds)[0]["budget"]["total_flops"] == C


def test_min_budget_reaches_confidence_and_one_percent_less_does_not():
    fit = spread_fit(S=200, seed=4)
    budget = SplitBudget(1e19, 1e10)
    target, conf = 2.7, 0.8
    ds = min_budget(fit, budget, target=target, confidence=conf)
    ct = float(ds["min_flops"].sel(task="a"))
    chosen = ds.sel(task="a", design="chosen")
    c = draws_of(fit)
    p = float((law(c, float(chosen.N), float(chosen.D), float(chosen.k)) <= target).mean())
    assert p >= conf and float(chosen.N) * float(chosen.D) * 6 <= ct * (1 + 1e-12)
    smaller = SplitBudget(0.99 * ct, budget.inference_flops)
    N, D, k = split_grid(smaller, n=4000)
    assert (law(c, N, D, k) <= target).mean(axis=1).max() < conf


# ------------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("risk", ["median", "quantile", "quantile:0", "quantile:1.5", "cvar:x", "mean:0.1",
                                  "prob:0.5", ""])
def test_malformed_risk(risk):
    with pytest.raises(InputError, match="--risk"):
        parse_risk(risk)


def test_bad_input_messages():
    fit = spread_fit(S=20)
    with pytest.raises(InputError, match="needs --target"):
        decide(fit, SPLIT, risk="prob")
    with pytest.raises(InputError, match=r"no design .*best achievable P = 0"):
        decide(fit, SPLIT, target=1.0)
    with pytest.raises(InputError, match="--inference-flops"):
        decide(fit, SplitBudget(1e19, 1e3))
    with pytest.raises(InputError, match="--task 'zz'"):
        decide(fit, SPLIT, task="zz")
    with pytest.raises(InputError, match="empty"):
        decide(Fit(_empty_tree()), SPLIT)
    nan = make_fit({**TRUTH, "E": np.full(5, np.nan)})
    with pytest.raises(InputError, match="all-NaN"):
        decide(nan, SPLIT)
    with pytest.raises(InputError, match="does not reach"):
        min_budget(fit, SPLIT, target=1.8, confidence=0.9)


def _empty_tree() -> xr.DataTree:
    ds = xr.Dataset({k: (("chain", "draw", "task"), np.zeros((1, 0, 1))) for k in LOSS_COEFFICIENTS},
                    coords={"chain": [0], "draw": np.arange(0), "task": ["a"]})
    tree = xr.DataTree.from_dict({"posterior": ds})
    tree.attrs.update({"bayes_t2_format": FIT_FORMAT, "route": "loss", "model_spec": "{}", "scaling": "{}"})
    return tree


# ------------------------------------------------------------------------------------------------ CLI
@pytest.fixture(scope="module")
def fit_file(loss_truth_fit, tmp_path_factory):
    path = tmp_path_factory.mktemp("decide") / "fit.nc"
    loss_truth_fit[2].save(path)
    return path


def test_real_posterior_against_brute_force(loss_truth_fit):
    fit = loss_truth_fit[2]
    ds = decide(fit, SPLIT, risk="quantile:0.1", task="code", law=True)
    c = draws_of(fit, "code")
    N, D, k = split_grid(SPLIT, n=3000)
    u = utility_np(law(c, N, D, k), "quantile:0.1")
    chosen = ds.sel(task="code", design="chosen")
    mine = utility_np(law(c, float(chosen.N), float(chosen.D), float(chosen.k))[None, :], "quantile:0.1")[0]
    assert float(chosen.utility) == pytest.approx(mine, rel=1e-12)
    assert mine <= u.min() * (1 + 1e-12)
    assert float(ds.expected_regret.sel(task="code", design="chinchilla")) > float(chosen.expected_regret) >= 0


@pytest.mark.slow  # 1500 designs x every draw through the xarray metric; test_decide_global covers the search fast
def test_real_accuracy_posterior_against_brute_force(accuracy_truth_fit):
    """Higher is better: the chosen design's lower 10% pass@k is the best on a fine grid, computed with the
    route's xarray metric (not the numba objective the search uses)."""
    fit = accuracy_truth_fit[2]
    task = fit.tasks[0]
    budget = SplitBudget(1e21, 1e11)
    ds = decide(fit, budget, Constraints(min_params=1e6), risk="quantile:0.1", task=task, law=True)
    N, D, k = split_grid(budget, n=1500)
    as_design = lambda x: xr.DataArray(np.asarray(x, float), dims="design")  # noqa: E731
    pass_k = fit.predict(as_design(N), as_design(D), as_design(k), new_checkpoint=False).sel(task=task)
    x = pass_k.stack(sample=("chain", "draw")).transpose("design", "sample").values
    u = -utility_np(-x, "quantile:0.1")  # the m-th worst draw of a higher-is-better metric
    chosen = ds.sel(task=task, design="chosen")
    assert float(chosen.utility) >= u.max() * (1 - 1e-9)
    assert float(chosen.expected_regret) >= 0 and ds.attrs["utility_better"] == "higher"


def test_cli_decide_real_fit(fit_file, tmp_path):
    proc = run("decide", fit_file, "--train-flops", "2.56e19", "--inference-flops", "2e9", "--risk", "cvar:0.1",
               "--target", "1.6", "--json", "d.json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "chinchilla" in proc.stdout
    recs = json.loads((tmp_path / "d.json").read_text())
    assert {r["task"] for r in recs} == {"arith", "code", "logic"}
    assert all(r["chosen"]["expected_regret"] >= 0 for r in recs)
    assert_one_line_error(run("decide", fit_file, "--train-flops", "2.56e19", "--inference-flops", "2e9",
                              "--json", "d.json", cwd=tmp_path), "already exists")


def test_cli_decide_bad_input(fit_file, tmp_path):
    base = ("decide", fit_file, "--train-flops", "2.56e19", "--inference-flops", "2e9")
    assert_one_line_error(run(*base, "--risk", "cvar:2", cwd=tmp_path), "--risk")
    assert_one_line_error(run(*base, "--risk", "prob", cwd=tmp_path), "--target")
    assert_one_line_error(run(*base, "--target", "0.01", cwd=tmp_path), "--target", "best")
