"""The accuracy route end to end: fit from samples data, optimum in pass@k, new-checkpoint predictions, CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from bayes_t2.budget import Constraints, SplitBudget, TotalBudget
from bayes_t2.fit import Fit
from bayes_t2.optimum import optimize_array
from bayes_t2.passk import unbiased_pass_at_k
from bayes_t2.routes.accuracy import AccuracyRoute, accuracy_shapes, pack_theta, theta_names

BUDGET = SplitBudget(train_flops=2.56e19, inference_flops=2e9)
CLI = [sys.executable, "-m", "bayes_t2.cli"]


def run(*args, cwd):
    return subprocess.run([*CLI, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=600)


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def _true_optimum(truth, budget, constraints=Constraints()):
    thetas = np.array([[c[n] for n in theta_names] for c in truth["tasks"].values()])
    out = optimize_array(thetas, [budget], constraints, objective=AccuracyRoute.objective_nb,
                         theta_names=theta_names)
    return {t: out[:, i, 0] for i, t in enumerate(truth["tasks"])}  # rows N, D, k, objective, ...


def test_fit_converges_and_records_the_route(accuracy_truth_fit):
    data, _, result = accuracy_truth_fit
    assert result.route is AccuracyRoute and result.tree.attrs["metric_name"] == "pass_at_k"
    d = result.diagnostics()
    assert d.max_rhat < 1.05 and d.divergences <= 6, d
    assert set(result.scaling) == {"N0", "D0"}
    # counts were collapsed to sufficient statistics: one likelihood term per distinct cell
    assert result.tree["observed_data"]["n_correct"].sizes["cell"] == len(data.collapse_counts()) < len(data)
    for group in ("log_likelihood", "posterior_predictive", "log_prior"):
        assert group in result.tree.children


def test_optimum_reports_pass_at_k_and_covers_the_true_optimum(accuracy_truth_fit):
    _, truth, result = accuracy_truth_fit
    opt = result.optimize([BUDGET])
    assert opt.attrs["metric_name"] == "pass_at_k"
    for name in ("metric", "chinchilla_metric", "chinchilla_metric_k1"):
        v = opt[name].values
        assert np.all((v >= 0) & (v <= 1)), name
    # the optimum is at least as good as the Chinchilla design, which is at least as good with its best k
    assert bool((opt["metric"] >= opt["chinchilla_metric"] - 1e-12).all())
    assert bool((opt["chinchilla_metric"] >= opt["chinchilla_metric_k1"] - 1e-12).all())
    assert bool((opt["k"] >= 1).all()) and bool((opt["k"] == np.round(opt["k"])).all())
    true = _true_optimum(truth, BUDGET)
    for task, (n_true, _, k_true, obj_true, *_) in true.items():
        o = opt.sel(task=task, budget=0)
        lo, hi = np.quantile(o["N"], [0.05, 0.95])
        assert lo <= n_true <= hi, (task, lo, n_true, hi)
        plo, phi = np.quantile(o["metric"], [0.05, 0.95])
        assert plo <= -np.expm1(obj_true) <= phi


def test_total_budget_optimum_uses_the_budget(accuracy_truth_fit):
    _, _, result = accuracy_truth_fit
    bud = TotalBudget(total_flops=1e21, queries=1e9)
    opt = result.optimize([bud], Constraints(k_max=64))
    cost = 6 * opt["N"] * opt["D"] + 2 * opt["N"] * opt["k"] * bud.queries
    assert bool((cost <= bud.total_flops * (1 + 1e-9)).all()) and bool((opt["k"] <= 64).all())


def test_new_checkpoint_interval_is_wider_than_the_law(accuracy_truth_fit):
    _, truth, result = accuracy_truth_fit
    law = result.metric_at(1e9, 2e10, 10, new_checkpoint=False)
    new = result.metric_at(1e9, 2e10, 10, seed=3)
    for task, coefs in truth["tasks"].items():
        true = float(np.asarray(accuracy_shapes(coefs, 1e9, 2e10)[0]))  # shapes are finite at the truth
        assert np.isfinite(true)
        lw = np.subtract(*np.quantile(law.sel(task=task), [0.95, 0.05]))
        nw = np.subtract(*np.quantile(new.sel(task=task), [0.95, 0.05]))
        assert nw > lw > 0
    np.testing.assert_array_equal(new.values, result.metric_at(1e9, 2e10, 10, seed=3).values)


def test_posterior_beta_shape_a_is_the_power_law_exponent_of_simulated_counts(accuracy_truth_fit):
    """At a fixed checkpoint, the empirical 1 - pass@k of simulated counts falls as k^-a, a the Beta's first
    shape, and the fit's posterior of a holds the truth."""
    rng = np.random.default_rng(0)
    a_true, b_true = 0.4, 6.0
    p = rng.beta(a_true, b_true, size=40_000)
    n = 8192
    c = rng.binomial(n, p)
    ks = np.unique(np.geomspace(256, 8192, 12).astype(int))
    miss = np.array([1.0 - unbiased_pass_at_k(n, c, k).mean() for k in ks])
    slope = np.polyfit(np.log(ks), np.log(miss), 1)[0]
    assert slope == pytest.approx(-a_true, abs=0.03)
    # on the fitted data: the posterior of a at a training checkpoint holds the true a
    _, truth, result = accuracy_truth_fit
    post = result.posterior.sel(task="task_a")
    a_post, _ = accuracy_shapes(post, 2.8e9, 2.1e10)
    a_t, _ = accuracy_shapes(truth["tasks"]["task_a"], 2.8e9, 2.1e10)
    lo, hi = np.quantile(a_post, [0.01, 0.99])
    assert lo <= float(a_t) <= hi


@pytest.fixture(scope="module")
def accuracy_fit_file(accuracy_truth_fit, tmp_path_factory):
    path = tmp_path_factory.mktemp("acc") / "fit.nc"
    accuracy_truth_fit[2].save(path)
    return path


def test_save_load_keeps_the_route(accuracy_fit_file, accuracy_truth_fit):
    loaded = Fit.load(accuracy_fit_file)
    assert loaded.route is AccuracyRoute
    np.testing.assert_allclose(loaded.posterior["theta1"].values, accuracy_truth_fit[2].posterior["theta1"].values)


def test_cli_optimize_and_predict(accuracy_fit_file, tmp_path):
    proc = run("optimize", accuracy_fit_file, "--train-flops", "2.56e19", "--inference-flops", "2e9",
               "--json", "o.json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    records = json.loads((tmp_path / "o.json").read_text())
    assert {r["metric_name"] for r in records} == {"pass_at_k"}
    assert all(0 <= r["metric"]["lower"] <= r["metric"]["median"] <= r["metric"]["upper"] <= 1 for r in records)
    assert all(r["chinchilla"]["metric_k1"]["median"] <= r["chinchilla"]["metric"]["median"] for r in records)
    proc = run("predict", accuracy_fit_file, "--params", "1e9", "--tokens", "2e10", "--k", "100", "--json",
               "p.json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    preds = json.loads((tmp_path / "p.json").read_text())
    assert len(preds) == 2 and all(0 <= r["lower"] <= r["median"] <= r["upper"] <= 1 for r in preds)


def test_cli_simulate_accuracy_and_route_mismatch(tmp_path):
    proc = run("simulate", "--route", "accuracy", "--out", "s.csv", "--seed", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    truth = json.loads((tmp_path / "s.truth.json").read_text())
    assert truth["route"] == "accuracy" and set(theta_names) <= set(next(iter(truth["tasks"].values())))
    assert (tmp_path / "s.csv").stat().st_mode & 0o777 == 0o666 & ~_umask()  # not mkstemp's 0600
    header = (tmp_path / "s.csv").read_text().splitlines()[0].split(",")
    assert {"problem", "n_samples", "n_correct"} <= set(header)
    proc = run("fit", "s.csv", "--route", "loss", "--out", "f.nc", cwd=tmp_path)
    assert proc.returncode == 2 and "needs 'loss' data" in proc.stderr and "Traceback" not in proc.stderr
    (tmp_path / "bad.csv").write_text("task,params,tokens,problem,n_samples,n_correct\na,1e8,1e9,0,10,11\n")
    proc = run("fit", "bad.csv", "--out", "f.nc", cwd=tmp_path)
    assert proc.returncode == 2 and "row 1" in proc.stderr and "n_correct" in proc.stderr
    assert not (tmp_path / "f.nc").exists()
