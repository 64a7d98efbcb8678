"""The discrepancy's scale per task: learned by empirical Bayes from held-out residuals (checked against
simulated truths), carried in the spec, and read per task by predictions, the optimizer and its summary
(checked against the same fit with one scale, and with none)."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import xarray as xr

from bayes_t2.budget import SplitBudget
from bayes_t2.discrepancy import fit_discrepancy_scale, fit_task_scales
from bayes_t2.errors import InputError
from bayes_t2.optimum import bent_fit, discrepancy_z
from bayes_t2.priors import load_spec
from bayes_t2.routes.extrapolation import discrepancy_scales, task_discrepancy_scale, with_discrepancy


def _simulate(rng, n_points: int, s: float):
    """Held-out residuals whose error grows at `s` per e-fold beyond the data, over a predictive sd of 0.01."""
    x = rng.uniform(0.2, 2.5, size=n_points)
    v = np.full(n_points, 0.01 ** 2)
    return rng.normal(0.0, np.sqrt(v + (s * x) ** 2)), v, x


def _pool(parts):
    tasks = np.concatenate([np.full(len(p[1]), name) for name, *p in parts])
    return (*(np.concatenate([p[j] for p in parts]) for j in (1, 2, 3)), tasks)


def test_task_scales_tell_tasks_apart():
    """Tasks whose misses grow at 0.01, 0.05 and 0.2 per e-fold (150 points each) get scales within a factor
    1.5 of their own; one maximum-likelihood scale for all lies between them."""
    rng = np.random.default_rng(5)
    r, v, x, tasks = _pool([(f"t{i}", *_simulate(rng, 150, s)) for i, s in enumerate((0.01, 0.05, 0.2))])
    res = fit_task_scales(r, v, x, tasks)
    got = np.array([res["by_task"][t] for t in ("t0", "t1", "t2")])
    assert np.all(np.abs(np.log(got / np.array([0.01, 0.05, 0.2]))) < np.log(1.5)), got
    assert 0.01 < res["shared_scale"] < 0.2 and res["pooling_sd"] >= 1.0


def test_task_scales_pool_alike_tasks():
    """Five tasks of one scale 0.05 with 8 points each: their scales are pulled together (spread below that of
    their own maximum-likelihood scales), the pooling spread is small, and the population's scale is near 0.05."""
    rng = np.random.default_rng(5)
    parts = [(f"u{i}", *_simulate(rng, 8, 0.05)) for i in range(5)]
    r, v, x, tasks = _pool(parts)
    own = np.array([fit_discrepancy_scale(*p[1:]) for p in parts])
    res = fit_task_scales(r, v, x, tasks)
    got = np.array(list(res["by_task"].values()))
    assert np.ptp(np.log(got)) < np.ptp(np.log(np.maximum(own, 1e-4)))
    assert res["pooling_sd"] <= 0.5
    assert 0.025 < res["scale"] < 0.1


def test_no_discrepancy_anywhere_gives_zero_scales():
    """Residuals within the predictive's own scatter: every scale is 0, not the grid's smallest."""
    rng = np.random.default_rng(1)
    r, v, x, tasks = _pool([(f"t{i}", *_simulate(rng, 60, 0.0)) for i in range(3)])
    res = fit_task_scales(r, v, x, tasks)
    assert res == {"scale": 0.0, "by_task": {}, "pooling_sd": None, "shared_scale": 0.0}


def test_task_scales_cover_simulated_truths():
    """Truths drawn from the pooling model itself (log s_t ~ Normal(log 0.04, 0.7), 6 tasks of 6-40 points):
    each task's learned scale is within a factor 2 of its truth in at least 80% of 40 x 6 cases, and closer
    to its truth than one shared scale is in most."""
    rng = np.random.default_rng(3)
    within, better = [], []
    for _ in range(40):
        truth = np.exp(rng.normal(np.log(0.04), 0.7, size=6))
        parts = [(f"t{i}", *_simulate(rng, int(rng.integers(6, 41)), s)) for i, s in enumerate(truth)]
        res = fit_task_scales(*_pool(parts))
        got = np.array([res["by_task"][f"t{i}"] for i in range(6)])
        within.extend(np.abs(np.log(got / truth)) < np.log(2.0))
        better.extend(np.abs(np.log(got / truth)) <= np.abs(np.log(res["shared_scale"] / truth)))
    assert np.mean(within) >= 0.8, np.mean(within)
    assert np.mean(better) >= 0.6, np.mean(better)


def test_spec_scales_per_task():
    spec = with_discrepancy({"discrepancy": {"scale": 0.3, "per_task": True, "by_task": {"old": 9.0}}}, 0.02,
                            {"a": 0.1, "b": 0.0})
    assert spec["discrepancy"] == {"scale": 0.02, "per_task": True, "by_task": {"a": 0.1, "b": 0.0}}  # replaced
    post = xr.Dataset({"E": (("task",), [1.0, 1.0, 1.0])}, coords={"task": ["a", "b", "c"]})
    scales = discrepancy_scales(spec, post)
    assert list(scales["task"].values) == ["a", "b", "c"] and list(scales.values) == [0.1, 0.0, 0.02]
    assert discrepancy_scales(spec, post.sel(task="a")) == 0.1  # one task: its float
    assert discrepancy_scales(spec, xr.Dataset({"E": 1.0})) == 0.02  # no task: the population's
    assert task_discrepancy_scale(spec, "zzz") == 0.02
    assert discrepancy_scales(with_discrepancy(spec, 0.05), post) == 0.05  # one number: every task


def test_model_file_checks_task_scales(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text('[discrepancy]\nscale = 0.01\n[discrepancy.by_task]\n"my task" = 0.05\n')
    assert load_spec("loss", good)["discrepancy"]["by_task"] == {"my task": 0.05}
    for body, word in (('[discrepancy.by_task]\nx = -1\n', "discrepancy.by_task.x"),
                       ('[discrepancy]\nby_task = 3\n', "discrepancy.by_task"),
                       ('[discrepancy]\nper_task = "yes"\n', "discrepancy.per_task")):
        bad = tmp_path / "bad.toml"
        bad.write_text(body)
        with pytest.raises(InputError, match=word.replace(".", r"\.")):
            load_spec("loss", bad)


def _with_task_scales(fit, by_task: dict[str, float], scale: float = 0.0):
    out = copy.copy(fit)
    out.spec = with_discrepancy(fit.spec, scale, by_task)
    return out


def test_fit_reports_each_tasks_scale(loss_truth_fit):
    _, _, result = loss_truth_fit
    t0, t1, t2 = result.tasks
    fit = _with_task_scales(result, {t1: 0.05}, 0.01)
    scales = fit.discrepancy_scales
    assert scales.dims == ("task",) and list(scales["task"].values) == [t0, t1, t2]
    assert list(scales.values) == [0.01, 0.05, 0.01]
    assert fit.discrepancy["by_task"] == {t1: 0.05}


def test_prediction_widens_by_task(loss_truth_fit):
    """Beyond the data a task with scale 0 predicts exactly as with no discrepancy at all; a task with a scale
    predicts wider, by the amount one scale for every task gives it (same seed, same draws)."""
    _, _, result = loss_truth_fit
    t0, t1, t2 = result.tasks
    far = dict(params=1e12, tokens=1e14, k=1, seed=3)
    per_task = _with_task_scales(result, {t0: 0.0, t1: 0.05, t2: 0.0}).predict(**far)["loss"]
    shared = _with_task_scales(result, {}, 0.05).predict(**far)["loss"]
    none = _with_task_scales(result, {}, 0.0).predict(**far)["loss"]
    spread = lambda da, t: float(np.log(da.sel(task=t)).std())  # noqa: E731
    assert spread(per_task, t0) == pytest.approx(spread(none, t0), rel=0.05)
    assert spread(per_task, t1) == pytest.approx(spread(shared, t1), rel=0.05)
    assert spread(per_task, t1) > 1.5 * spread(none, t1)


def test_optimizer_bends_each_task_by_its_own_scale(loss_truth_fit):
    """The bend is z x the task's scale: the task with scale 0 has the unbent optimum draw for draw (truth: the
    optimizer without any discrepancy), the task with a scale the optimum of one scale 0.05 for all."""
    _, _, result = loss_truth_fit
    t0, t1, _ = result.tasks
    budget = SplitBudget(1e22, 1e12)
    per_task = _with_task_scales(result, {t0: 0.0, t1: 0.05}, 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt = per_task.optimize([budget], seed=4)
        shared = _with_task_scales(result, {}, 0.05).optimize([budget], seed=4)
        none = _with_task_scales(result, {}, 0.0).optimize([budget], seed=4)
    view = bent_fit(per_task, seed=4)
    z = discrepancy_z(4, *opt["N"].shape[:2])
    assert np.allclose(view.posterior["discrepancy_bend"].sel(task=t1).values, 0.05 * z)
    assert np.all(view.posterior["discrepancy_bend"].sel(task=t0).values == 0.0)
    assert np.allclose(opt["N"].sel(task=t0).values, none["N"].sel(task=t0).values, rtol=1e-9)
    assert np.allclose(opt["N"].sel(task=t1).values, shared["N"].sel(task=t1).values, rtol=1e-9)
    from bayes_t2.summary import optimum_records

    records = {r["task"]: r for r in optimum_records(opt, "loss", True)}
    assert records[t0]["discrepancy"]["scale"] == 0.0 and records[t1]["discrepancy"]["scale"] == 0.05


def test_decide_bends_each_task_by_its_own_scale(loss_truth_fit):
    """`decide` inherits the per-task bend: per draw, the metric at its own optimum equals the unbent fit's for
    the task at scale 0 and the one-scale fit's for the task at 0.05 (same seed, same z)."""
    from bayes_t2.decide import decide

    _, _, result = loss_truth_fit
    t0, t1, _ = result.tasks
    budget = SplitBudget(1e22, 1e12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        per_task = decide(_with_task_scales(result, {t0: 0.0, t1: 0.05}, 0.0), budget, seed=4)
        none = decide(_with_task_scales(result, {}, 0.0), budget, seed=4)
        shared = decide(_with_task_scales(result, {}, 0.05), budget, seed=4)
    got = per_task["optimal_metric"]
    assert np.allclose(got.sel(task=t0).values, none["optimal_metric"].sel(task=t0).values, rtol=1e-9)
    assert np.allclose(got.sel(task=t1).values, shared["optimal_metric"].sel(task=t1).values, rtol=1e-9)
    assert not np.allclose(got.sel(task=t1).values, none["optimal_metric"].sel(task=t1).values, rtol=1e-3)


def test_fit_line_names_the_tasks_scales():
    from bayes_t2.fmt import describe_discrepancy

    one = describe_discrepancy({"scale": 0.0, "by_task": {}, "n_points": 40})
    assert "sd 0 of log loss" in one and "no error beyond the model's own" in one
    line = describe_discrepancy({"scale": 0.02, "by_task": {"a": 0.01, "b": 0.3}, "pooling_sd": 1.0,
                                 "n_points": 40})
    assert "per task 0.01 (a) to 0.3 (b)" in line and "0.02 for a task without its own" in line
    assert "pooled with spread 1 in log" in line


def test_report_backtest_page_names_the_scales():
    from bayes_t2.report import discrepancy_clause

    assert discrepancy_clause({"scale": 0.04, "by_task": {}}) == ", discrepancy sd 0.04 per e-fold"
    assert discrepancy_clause({"scale": 0.02, "by_task": {"a": 0.01, "b": 0.3}}) == \
        ", discrepancy sd 0.01-0.3 per e-fold by task"
    assert discrepancy_clause({}) == ""
