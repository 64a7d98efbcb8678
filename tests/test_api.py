"""The Python API runs as documented (README, docs/api.md) and is the CLI's twin.

Every call of the documented session runs on a tiny fit; the checks take their truth from elsewhere: the
law's formula evaluated by hand on the posterior, the budget identities (6ND = C_train, 2NkT <= C_inf), the
CLI's JSON for the same fit file, and a round trip through the saved file.
"""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402

import bayes_t2 as bt  # noqa: E402
from bayes_t2.simulate import simulate_loss  # noqa: E402
from conftest import run_cli  # noqa: E402

BUDGET = dict(train_flops=2.56e19, inference_flops=2e9)


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """The documented session up to the fit: a CSV on disk, read and fitted through `bt` (2 tasks, small)."""
    folder = tmp_path_factory.mktemp("api")
    frame, _ = simulate_loss(seed=3, n_tasks=2, budgets=np.geomspace(1.25e16, 2.56e19, 4), sizes_per_budget=4,
                             n_overtrained=2, ks=(1, 4, 16))
    frame.to_csv(folder / "evals.csv", index=False)
    data = bt.read_data(folder / "evals.csv")
    fit = bt.fit(data, draws=150, tune=150, chains=2, seed=0, discrepancy=0)  # the law alone: checked against its formula
    return folder, frame, data, fit


def test_import_is_light_and_exports_only_the_api():
    import subprocess
    import sys

    code = ("import sys, bayes_t2 as bt; assert 'pymc' not in sys.modules and 'xarray' not in sys.modules; "
            "print(sorted(n for n in dir(bt) if not n.startswith('_')))")
    names = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert eval(names) == sorted(["Constraints", "Decision", "Fit", "InputError", "SamplerSettings",  # noqa: S307
                                  "SplitBudget", "TotalBudget", "example_data", "fit", "load", "plots",
                                  "read_data"])
    assert callable(bt.fit) and bt.fit.__module__ == "bayes_t2.api"  # not shadowed by the submodule


def test_read_data_takes_a_path_a_frame_or_several_files(session):
    folder, frame, data, _ = session
    assert len(data) == len(frame) and data.kind == "loss"
    assert len(bt.read_data(frame)) == len(frame)
    half = len(frame) // 2
    frame.iloc[:half].to_csv(folder / "a.csv", index=False)
    frame.iloc[half:].to_csv(folder / "b.csv", index=False)
    both = bt.read_data([folder / "a.csv", folder / "b.csv"])
    assert len(both) == len(frame) and sorted(both.tasks) == sorted(data.tasks)
    with pytest.raises(bt.InputError):
        bt.read_data(frame.drop(columns="loss"))


def test_optimize_keywords_match_the_objects_and_the_budget(session):
    _, _, _, fit = session
    opt = fit.optimize(**BUDGET)
    assert isinstance(opt, xr.Dataset)
    for name in ("N", "D", "k", "tokens_per_param", "metric"):
        assert opt[name].dims == ("chain", "draw", "task", "budget")
    same = fit.optimize([bt.SplitBudget(2.56e19, 2e9)], bt.Constraints())
    xr.testing.assert_identical(opt[["N", "D", "k", "metric"]], same[["N", "D", "k", "metric"]])
    # the budget identities, computed here: training spends C_train exactly, a query at most C_inf
    np.testing.assert_allclose(6 * opt["N"] * opt["D"], 2.56e19, rtol=1e-9)
    assert bool((2 * opt["N"] * opt["k"] <= 2e9 * (1 + 1e-9)).all())
    capped = fit.optimize(**BUDGET, max_tokens=1e10)
    assert float(capped["D"].max()) <= 1e10 * (1 + 1e-9)
    with pytest.raises(TypeError, match="unknown keyword"):
        fit.optimize(train_flop=1e19, inference_flops=2e9)
    with pytest.raises(bt.InputError):
        fit.optimize(train_flops=1e19)  # no inference budget


def test_summary_is_the_cli_optimum(session, tmp_path):
    _, _, _, fit = session
    table = fit.summary(fit.optimize(**BUDGET))
    assert isinstance(table, pd.DataFrame) and list(table.index.names) == ["task", "budget"]
    path = tmp_path / "fit.nc"
    fit.save(path)
    code, _, _ = run_cli("optimize", path, "--train-flops", 2.56e19, "--inference-flops", 2e9,
                      "--json", tmp_path / "optimum.json")
    assert code == 0
    for rec in json.loads((tmp_path / "optimum.json").read_text()):
        row = table.xs(rec["task"], level="task").iloc[0]
        for name in ("N", "D", "k", "metric"):
            for end in ("median", "lower", "upper"):
                assert row[f"{name}_{end}"] == pytest.approx(rec[name][end], rel=1e-12)
        assert row["p_beats_chinchilla"] == pytest.approx(rec["p_beats_chinchilla"])


def test_predict_law_is_the_formula(session):
    _, _, _, fit = session
    pred = fit.predict(params=4e8, tokens=1e11, k=8, law=True)
    assert isinstance(pred, xr.Dataset) and pred["loss"].dims == ("chain", "draw", "task")
    post = fit.posterior
    by_hand = (post["E"] + post["A"] / 4e8 ** post["alpha"] + post["B"] / 1e11 ** post["beta"]
               + post["G"] / 8.0 ** post["gamma"])
    np.testing.assert_allclose(pred["loss"].values, by_hand.transpose(*pred["loss"].dims).values, rtol=1e-12)
    new = fit.predict(params=4e8, tokens=1e11, k=8, seed=1)  # a new checkpoint: the law plus its scatter
    assert not np.allclose(new["loss"].values, pred["loss"].values)
    xr.testing.assert_identical(new, fit.predict(params=4e8, tokens=1e11, k=8, seed=1))  # seeded
    grid = fit.predict(params=[4e8, 1e9], tokens=1e11, k=[1, 8], law=True)
    assert grid.sizes["point"] == 2 and list(grid["k"].values) == [1.0, 8.0]
    with pytest.raises(bt.InputError, match="k"):
        fit.predict(params=4e8, tokens=1e11, k=0.5)


def test_decide_and_save_load_round_trip(session, tmp_path):
    _, _, _, fit = session
    decision = fit.decide(total_flops=1e21, queries=1e9, risk="cvar:0.1")
    assert isinstance(decision, bt.Decision)
    table = decision.table
    assert set(table.index.get_level_values("design")) >= {"chosen", "chinchilla"}
    records = json.loads(decision.to_json())
    chosen = {r["task"]: r["chosen"] for r in records}
    for task, rec in chosen.items():  # the total budget holds: 6ND + 2NkTQ <= C
        cost = 6 * rec["N"] * rec["D"] + 2 * rec["N"] * rec["k"] * 1e9
        assert cost <= 1e21 * (1 + 1e-9)
        assert table.loc[(task, "chosen"), "N"] == rec["N"]
    opt = fit.optimize(**BUDGET)
    pred = fit.predict(params=[4e8, 1e9], tokens=1e11, k=8)
    path = tmp_path / "fit.nc"
    fit.save(path, optimum=opt, predictions=pred, decision=decision)
    with pytest.raises(bt.InputError, match="already exists"):
        fit.save(path)
    back = bt.load(path)
    assert set(back.results) == {"optimum", "predictions", "decision"}
    xr.testing.assert_allclose(back.results["optimum"][["N", "D", "k"]], opt[["N", "D", "k"]])
    assert back.results["predictions"]["loss"].dims == ("chain", "draw", "task", "point")
    pd.testing.assert_frame_equal(back.summary(back.results["optimum"]), fit.summary(opt))
    assert bt.Decision(back.results["decision"]).records == decision.records


def test_report_and_plots(session, tmp_path):
    _, _, _, fit = session
    written = fit.report(tmp_path / "report.pdf", **BUDGET, backtest=False)
    assert written.path.exists() and written.path.read_bytes()[:4] == b"%PDF"
    assert "optimum against budget" in written.pages
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    figures = [bt.plots.optimum_vs_budget(fit, **BUDGET, flops=[1e19, 1e20]), bt.plots.law(fit),
               bt.plots.coefficients(fit), bt.plots.diagnostics(fit),
               bt.plots.decision(fit.decide(**BUDGET))]
    for fig, axes in figures:
        assert isinstance(fig, Figure)
        assert all(isinstance(ax, Axes) for ax in np.ravel(axes))
