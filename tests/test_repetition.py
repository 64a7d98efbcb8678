"""Repeated data (the data-constrained law of Muennighoff et al. 2023): the formulas, the optimizer against
the independent brute force with --unique-tokens, and the limit R_D* -> 0 against the hard cap.

Truth: `bayes_t2.reference` writes the effective-tokens formula again in its own numpy and searches dense
grids over designs; the hard-cap path (`max_tokens`) is the optimizer's exact closed-form path for the loss
law, which shares nothing with the repeated objective's generic search.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest

from bayes_t2.budget import Constraints, SplitBudget, TotalBudget
from bayes_t2.laws import (LOSS_COEFFICIENTS, effective_params, effective_params_nb, effective_tokens,
                           effective_tokens_nb, unique_params)
from bayes_t2.optimum import OUTPUTS, optimize_array
from bayes_t2.reference import _repeated_amount, objective_at, reference_optimum
from bayes_t2.repetition import R_STAR_OFF, RepeatedRoute, published_prior_draws
from bayes_t2.routes.accuracy import T2_COEFFICIENTS
from bayes_t2.routes.accuracy.route import AccuracyRoute
from bayes_t2.routes.loss import LossRoute
from bayes_t2.simulate import _draw_accuracy_one, _draw_one
from test_optimum_global import _feasible  # the budget and constraint checks of the global-optimum tests

TOL = 1e-6
ROW = {name: i for i, name in enumerate(OUTPUTS)}
U = 5e9  # ~10 epochs at the T2 budget's optimum: repetition matters, the decay has not saturated
CASES = [
    (SplitBudget(2.56e19, 2e9), Constraints()),
    (SplitBudget(2.56e19, 2e9), Constraints(max_tokens=4e10, k_max=64)),
    (TotalBudget(1e21, 1e10), Constraints(min_params=1e7, k_max=128)),
    (TotalBudget(2e20, 1e9), Constraints(min_params=5e7, max_tokens=2e11)),
]


def test_effective_amounts_agree_across_backends_and_limits():
    """numpy, numba and the reference's own numpy give the same D' and N', with the documented limits."""
    rng = np.random.default_rng(0)
    D = 10 ** rng.uniform(8, 12, 200)
    Uv = 10 ** rng.uniform(8, 12, 200)
    r = np.concatenate([10 ** rng.uniform(-1, 2, 196), [0.0, np.inf, 15.4, 0.0]])
    Uv[-1] = np.nan
    a = effective_tokens(D, Uv, r)
    b = np.array([effective_tokens_nb(d, u, s) for d, u, s in zip(D, Uv, r)])
    c = _repeated_amount(D, Uv, r)
    np.testing.assert_allclose(a, b, rtol=1e-13)
    np.testing.assert_allclose(a, c, rtol=1e-12)
    np.testing.assert_allclose(effective_params(D, Uv, r), c, rtol=1e-12)
    np.testing.assert_allclose([effective_params_nb(d, u, s) for d, u, s in zip(D, Uv, r)], c, rtol=1e-12)
    below = D <= np.nan_to_num(Uv, nan=np.inf)
    np.testing.assert_array_equal(a[below], D[below])  # no repetition: every token counts
    assert np.all(a <= D * (1 + 1e-15)) and np.all(a[~below] >= np.fmin(Uv, D)[~below])
    assert effective_tokens(1e11, 1e10, 0.0) == 1e10  # R* -> 0: a hard cap at U
    assert effective_tokens(1e11, 1e10, np.inf) == 1e11  # R* -> inf: fresh data
    # the published law's numbers (datablations README): 4 epochs lose little, 40 lose most of their value
    assert 0.9 < effective_tokens(4e10, 1e10, 15.387756) / 4e10 < 1.0
    assert effective_tokens(4e11, 1e10, 15.387756) / 4e11 < 0.5


def test_unique_params_is_the_compute_optimal_size_for_u_tokens():
    """U_N inverts Chinchilla's closed-form optimum: at C = 6 U_N U the compute-optimal N is U_N."""
    from bayes_t2.laws import chinchilla_optimal_params

    A, alpha, B, beta = 406.4, 0.34, 410.7, 0.28
    for u in (1e8, 1e10, 1e12):
        un = unique_params(A, alpha, B, beta, u)
        assert chinchilla_optimal_params(A, alpha, B, beta, 6 * un * u) == pytest.approx(un, rel=1e-10)


@lru_cache(maxsize=None)
def _population(route: str, n: int = 60, seed: int = 21) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if route == "accuracy":
        base = np.array([[d[c] for c in T2_COEFFICIENTS] for d in (_draw_accuracy_one(rng) for _ in range(n))])
        A, alpha, B, beta = (base[:, T2_COEFFICIENTS.index(c)] for c in ("A", "alpha", "B", "beta"))
    else:
        base = np.array([[d[c] for c in LOSS_COEFFICIENTS] for d in (_draw_one(rng) for _ in range(n))])
        A, alpha, B, beta = base[:, 1], base[:, 2], base[:, 3], base[:, 4]
    rd = published_prior_draws("R_D_star", (n,), seed)
    rn = published_prior_draws("R_N_star", (n,), seed + 1)
    return np.column_stack([base, np.full(n, U), rd, unique_params(A, alpha, B, beta, U), rn])


@pytest.mark.parametrize("budget,con", CASES, ids=lambda x: repr(x)[:50])
@pytest.mark.parametrize("route", ["loss", "accuracy"])
def test_optimizer_with_unique_tokens_matches_brute_force(route, budget, con):
    """With U set the optimizer (the route's numba objective at D', N', generic global search) is never worse
    than the dense brute force scored by the reference's own numpy formula, and stays within every budget."""
    thetas = _population(route)
    repeated = RepeatedRoute(LossRoute if route == "loss" else AccuracyRoute)
    out = optimize_array(thetas, [budget], con, objective=repeated.objective_nb,
                         theta_names=repeated.coefficient_names)[:, :, 0]
    ref = reference_optimum(f"{route}+repeated", thetas, budget, con)
    assert np.all(np.isfinite(ref[:, 3]))
    assert _feasible(out, budget, con).all()
    value = objective_at(f"{route}+repeated", thetas, out[ROW["N"]], out[ROW["D"]], out[ROW["k"]])
    worse = value > ref[:, 3] + TOL * np.abs(ref[:, 3])
    assert not worse.any(), [(int(i), value[i], ref[i, 3]) for i in np.where(worse)[0][:5]]
    # the law of repeated data moved the answer: some optima train beyond U (else the test proves little)
    assert np.mean(out[ROW["D"]] > U) > 0.2


@pytest.mark.parametrize("bent", [False, True], ids=["law", "bent"])
@pytest.mark.parametrize("budget", [SplitBudget(2.56e19, 2e9), SplitBudget(1e21, 1e10), TotalBudget(1e21, 1e10)],
                         ids=lambda x: repr(x)[:50])
def test_r_d_star_to_zero_is_the_hard_cap(budget, bent):
    """R_D* -> 0 with R_N* off (`R_STAR_OFF`) makes every token beyond U worthless: the optimum (N*, k*, loss) is the
    hard cap --max-tokens U's, solved by the exact closed-form path; D* spends the budget on repeats that
    are worth nothing, so it is compared as min(D*, U). With the law's discrepancy (`bent`: test_bend's draws,
    z*s = +-0.06 per e-fold) the limit holds against the bent law under the hard cap: the bend's distance is
    that of the effective design (N, min(D, U)) (docs/decisions.md)."""
    if bent:
        from test_bend import bent_repeated_population

        from bayes_t2.optimum import BentRoute, bend_route

        law, capped_route = bent_repeated_population()[:, :16], BentRoute(LossRoute)
        repeated = bend_route(RepeatedRoute(LossRoute))
    else:
        law, capped_route, repeated = _population("loss")[:, :7], LossRoute, RepeatedRoute(LossRoute)
    law = np.ascontiguousarray(law)
    n = len(law)
    con = Constraints(min_params=1e7, k_max=512)
    capped = optimize_array(law, [budget], Constraints(min_params=1e7, k_max=512, max_tokens=U),
                            objective=capped_route.objective_nb, theta_names=capped_route.coefficient_names)[:, :, 0]
    for r_d in (0.0, 1e-9):
        ext = np.column_stack([law, np.full(n, U), np.full(n, r_d), np.full(n, 1e6), np.full(n, R_STAR_OFF)])
        out = optimize_array(ext, [budget], con, objective=repeated.objective_nb,
                             theta_names=repeated.coefficient_names)[:, :, 0]
        np.testing.assert_allclose(out[ROW["metric"]], capped[ROW["metric"]], rtol=1e-9)
        np.testing.assert_allclose(out[ROW["k"]], capped[ROW["k"]])
        np.testing.assert_allclose(out[ROW["N"]], capped[ROW["N"]], rtol=1e-5)
        np.testing.assert_allclose(np.minimum(out[ROW["D"]], U), capped[ROW["D"]], rtol=1e-5)
    assert np.mean(capped[ROW["D"]] >= U * (1 - 1e-9)) > 0.5  # the cap binds for most draws


def test_fit_optimize_with_unique_tokens_reports_epochs(loss_truth_fit, tmp_path):
    """The API keyword and the CLI option: the optimum moves, epochs D*/U come with intervals, DESIGN.md's
    optimum.json fields stay, and R* comes from the published prior for a fit without repetition data."""
    import json

    from bayes_t2.cli import main
    from bayes_t2.fit import Fit

    _, _, result = loss_truth_fit
    budget = dict(train_flops=2.56e19, inference_flops=2e9)
    free = result.optimum_records([SplitBudget(**budget)])
    U = 0.1 * min(r["D"]["median"] for r in free)
    opt = result.optimize(**budget, unique_tokens=U)
    assert "epochs" in opt and np.allclose(opt["epochs"], opt["D"] / U)
    assert json.loads(opt.attrs["repetition"]) == {"R_D_star": "published prior", "R_N_star": "published prior"}
    path = tmp_path / "fit.nc"
    result.save(path)
    out = tmp_path / "o.json"
    try:
        main(["optimize", str(path), "--train-flops", "2.56e19", "--inference-flops", "2e9", "--unique-tokens",
              f"{U:g}", "--json", str(out)])
    except SystemExit as exit_info:
        assert exit_info.code in (0, None)
    records = json.loads(out.read_text())
    for rec, base in zip(records, free):
        assert {"task", "budget", "N", "D", "k", "tokens_per_param", "metric", "chinchilla", "train_optimal",
                "p_beats_chinchilla", "p_beats_train_optimal", "bounds"} <= set(rec)
        e = rec["epochs"]
        assert e["lower"] <= e["median"] <= e["upper"] and e["median"] > 1.0
        assert rec["constraints"]["unique_tokens"] == pytest.approx(U, rel=1e-6)
        # repeated data are worth less than fresh data: the loss at the optimum rises
        assert rec["metric"]["median"] > base["metric"]["median"]
    assert Fit.load(path).posterior.equals(result.posterior)  # the view never writes into the fit


# ------------------------------------------------------------------------------------------ the data column
def test_unique_tokens_column_is_validated(tmp_path):
    """U > tokens, U <= 0 and junk are refused with one line naming file, row and column; a blank is fresh data."""
    from bayes_t2.data import read_data
    from bayes_t2.errors import InputError

    head = "task,params,tokens,loss,unique_tokens\n"
    good = "a,1e8,1e10,3.0,1e9\na,1e8,2e10,2.9,\n"
    path = tmp_path / "ok.csv"
    path.write_text(head + good)
    frame = read_data(path).frame
    assert frame["unique_tokens"].tolist() == [1e9, 2e10]  # blank: U = tokens, every token fresh
    for bad, reason in (("2e10", "> tokens"), ("0", "> 0"), ("-1", "> 0"), ("abc", "not a number")):
        path = tmp_path / "bad.csv"
        path.write_text(head + good + f"a,1e8,1e10,3.0,{bad}\n")
        with pytest.raises(InputError) as err:
            read_data(path)
        line = str(err.value)
        assert "\n" not in line and "row 3" in line and "unique_tokens" in line and reason in line, line


def test_predict_takes_unique_tokens_per_point(loss_truth_fit, tmp_path):
    """Fit.predict(unique_tokens=) and `predict --points` with a unique_tokens column: fresh points (blank)
    are unchanged, repeated ones predict a higher loss, rising with the epochs."""
    from bayes_t2.predict import predict_points, read_points

    _, _, result = loss_truth_fit
    fresh = result.predict(params=1e8, tokens=4e10, law=True)["loss"]
    rep = result.predict(params=[1e8, 1e8, 1e8], tokens=4e10, unique_tokens=[np.nan, 1e10, 1e9], law=True)["loss"]
    np.testing.assert_allclose(rep.isel(point=0), fresh)
    med = rep.median(("chain", "draw"))
    assert bool((med.isel(point=1) > med.isel(point=0)).all()) and bool((med.isel(point=2) > med.isel(point=1)).all())
    pts = tmp_path / "p.csv"
    pts.write_text("params,tokens,unique_tokens\n1e8,4e10,\n1e8,4e10,1e9\n")
    recs = predict_points(result, read_points(pts), new_checkpoint=False)
    assert {r["params"] for r in recs} == {1e8} and any(np.isnan(r["unique_tokens"]) for r in recs)
    pts.write_text("params,tokens,unique_tokens\n1e8,4e10,5e10\n")
    from bayes_t2.errors import InputError

    with pytest.raises(InputError, match="row 1.*unique_tokens"):
        read_points(pts)


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5])
def test_most_repeated_holdout_splits_by_epochs(fraction):
    """--holdout most-repeated holds out whole epoch groups, every held-out run more repeated than every
    training run, the smallest such cut; data without unique_tokens are refused."""
    from bayes_t2.backtest import split_data
    from bayes_t2.data import from_frame
    from bayes_t2.errors import InputError
    from bayes_t2.simulate import simulate_repeated

    frame, _ = simulate_repeated(0)
    split = split_data(from_frame(frame), "most-repeated", fraction)
    epochs = lambda f: f["tokens"] / f["unique_tokens"]  # noqa: E731
    train, test = split.train.frame, split.test.frame
    assert len(train) + len(test) == len(frame) and epochs(train).max() < epochs(test).min()
    runs = frame[["params", "tokens", "unique_tokens"]].drop_duplicates()
    assert split.n_test_checkpoints >= fraction * len(runs)
    assert (epochs(runs) > epochs(test).min()).sum() < fraction * len(runs)
    with pytest.raises(InputError, match="unique_tokens"):
        split_data(from_frame(frame.drop(columns="unique_tokens")), "most-repeated", fraction)


def test_backtest_on_repeated_runs_small():
    """A small version of benchmarks/backtest_repeated.py (docs/backtest.md): on simulated runs repeated up
    to 64 epochs (truth R_D* = 7, not the published 15.4), the fit that knows U predicts the held-out
    most-repeated runs far better than the repetition-blind fit, and learns R_D*."""
    from bayes_t2.data import from_frame
    from bayes_t2.simulate import simulate_repeated

    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "backtest_repeated", Path(__file__).resolve().parents[1] / "benchmarks" / "backtest_repeated.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    frame, truth = simulate_repeated(3, params=(2e7, 8e7, 3e8), unique_tokens=(1e8, 8e8))
    result = bench.run(from_frame(frame, source="sim"), draws=150, tune=250, chains=2, seed=1, discrepancy=0.0)
    aware, blind = result["U-aware"], result["blind"]
    assert aware["n_test_rows"] == blind["n_test_rows"] > 0
    assert aware["median_abs_relative_error"] < 0.5 * blind["median_abs_relative_error"], result
    assert aware["coverage90"] >= 0.6, result
    lo, _, hi = aware["R_D_star"]
    assert lo < truth["tasks"]["arith"]["R_D_star"] < hi, aware


def test_plot_of_the_optimum_against_unique_tokens(loss_truth_fit):
    """The figure's numbers: as U shrinks the epochs D*/U grow and the loss at the optimum rises; with U far
    beyond the unlimited D* the optimum is the unlimited one."""
    import matplotlib.pyplot as plt

    from bayes_t2.plots import plot_optimum_vs_unique_tokens
    from bayes_t2.repetition import optimum_vs_unique_tokens

    _, _, result = loss_truth_fit
    budget = SplitBudget(2.56e19, 2e9)
    swept, free = optimum_vs_unique_tokens(result, budget, Constraints(), [1e8, 1e9, 1e10, 1e15], seed=3)
    med = swept.median(("chain", "draw"))
    assert bool((med["epochs"].diff("unique_tokens") < 0).all())
    assert bool((med["metric"].diff("unique_tokens") <= 1e-12).all())
    np.testing.assert_allclose(swept["N"].sel(unique_tokens=1e15), free["N"], rtol=1e-6)
    fig, axes = plot_optimum_vs_unique_tokens(result, budget, Constraints(unique_tokens=1e9), u_values=[1e8, 1e9, 1e10])
    assert axes.shape == (2, 2) and "epochs" in axes[1, 0].get_title(loc="left")
    plt.close(fig)


def test_accuracy_fit_optimizes_with_unique_tokens(accuracy_truth_fit):
    """The accuracy route through the same view: pass@k at the effective design, epochs reported, and less
    unique data never helps."""
    _, _, result = accuracy_truth_fit
    budget = dict(train_flops=2.56e19, inference_flops=2e9, law=True)
    free = result.optimize(**budget)
    rep = result.optimize(**budget, unique_tokens=1e9)
    assert "epochs" in rep and float(rep["epochs"].median()) > 1.0
    assert bool((rep["metric"].median(("chain", "draw")) <= free["metric"].median(("chain", "draw")) + 1e-12).all())
