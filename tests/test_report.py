"""The PDF report and the plot functions: every page drawn and readable, inputs reproducible, bad input refused."""

from __future__ import annotations

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pypdfium2 as pdfium  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402

from bayes_t2 import fmt, plots  # noqa: E402
from bayes_t2.budget import Constraints, SplitBudget, TotalBudget  # noqa: E402
from bayes_t2.cli import main  # noqa: E402
from bayes_t2.errors import InputError  # noqa: E402
from bayes_t2.fit import Fit  # noqa: E402
from bayes_t2.report import check_reportable, write_report  # noqa: E402
from bayes_t2.summary import optimum_records  # noqa: E402



BUDGET = ["--train-flops", "2.56e19", "--inference-flops", "2e9"]
DECISION = ["--risk", "cvar:0.1", "--target", "1.6"]


def run_cli(*args) -> int:
    """`bayes-t2 ARGS` in-process (the CLI's own error mapping), returning the exit code."""
    argv = sys.argv
    sys.argv = ["bayes-t2", *map(str, args)]
    try:
        main()
        return 0
    except SystemExit as exit_:
        return int(exit_.code or 0)
    finally:
        sys.argv = argv


def pages(path):
    """(grayscale pixels, text) of every page."""
    doc = pdfium.PdfDocument(str(path))
    try:
        out = []
        for page in doc:
            pixels = np.asarray(page.render(scale=0.6).to_pil().convert("L"), dtype=float)
            out.append((pixels, page.get_textpage().get_text_range()))
        return out
    finally:
        doc.close()


@pytest.fixture(scope="module")
def fit_file(loss_truth_fit, tmp_path_factory):
    path = tmp_path_factory.mktemp("report") / "fit.nc"
    loss_truth_fit[2].save(path)
    return path


@pytest.fixture(scope="module")
def report_pdf(fit_file):
    out = fit_file.parent / "report.pdf"
    assert run_cli("report", fit_file, "--out", out, *BUDGET, *DECISION) == 0
    return out, pages(out)


def test_every_page_is_drawn(report_pdf, loss_truth_fit):
    _, rendered = report_pdf
    n_tasks = len(loss_truth_fit[2].tasks)
    # headline, data+law (3 tasks a page), coefficients, diagnostics, optimum vs budget, optimum vs prompt
    # length, beyond the data, the backtest on the fit's own data (on by default: >= 3 model sizes), decision
    # (4 tasks a page), inputs
    assert len(rendered) == 1 + -(-n_tasks // 3) + 4 + 2 + -(-n_tasks // 4) + 1
    for i, (pixels, _) in enumerate(rendered):
        ink = float(np.mean(pixels < 200))  # share of pixels that are not (near) white
        assert ink > 0.01, f"page {i + 1} is (nearly) blank: {ink:.3%} ink"
        assert pixels.std() > 10, f"page {i + 1} has no contrast"


def test_backtest_and_extrapolation_pages(report_pdf, loss_truth_fit):
    """The report says how far the optimum extrapolates and backtests the law on the fit's own data."""
    _, rendered = report_pdf
    texts = [" ".join(t.split()) for _, t in rendered]
    beyond = next(t for t in texts if "how far the optimum extrapolates" in t)
    for task in loss_truth_fit[2].tasks:
        assert f"task '{task}': the optimum lies" in beyond
    page = next(t for t in texts if "How well this law extrapolated on your data" in t)
    assert "held out" in page and "2 chains x 300 draws" in page and "90% intervals covered" in page


def test_inputs_page_reproduces_the_fit(report_pdf, loss_truth_fit):
    data, _, fit = loss_truth_fit
    text = report_pdf[1][-1][1].replace("\r", "")
    flat = "".join(text.split())
    assert data.sha256 in flat  # the hash of the data the fit saw, in full
    assert "--seed11" in flat and "--draws300" in flat  # the sampler settings of the session fixture
    assert "bayes-t2reportfit.nc" in flat and "--train-flops2.56e+19" in flat
    assert "--riskcvar:0.1--target1.6" in flat
    assert "pool_sd" in text and "student_t" in text  # the priors


def test_headline_numbers_are_the_optimum(report_pdf, loss_truth_fit):
    fit = loss_truth_fit[2]
    records = optimum_records(fit.optimize([SplitBudget(2.56e19, 2e9)]), "loss", True, 0.9)
    text = "".join(report_pdf[1][0][1].split())
    for r in records:
        assert r["task"] in text
        assert fmt.number(r["N"]["median"]) in text and fmt.number(r["D"]["upper"]) in text
        assert f"{r['p_beats_chinchilla']:.2f}" in text


def test_decision_page_is_the_decision(report_pdf, loss_truth_fit):
    from bayes_t2.decide import decide

    fit = loss_truth_fit[2]
    ds = decide(fit, SplitBudget(2.56e19, 2e9), risk="cvar:0.1", target=1.6)
    text = "".join(report_pdf[1][-2][1].split())
    assert "risk'cvar:0.1'" in text and "CVaR10%" in text and "P(target)" in text
    for task in fit.tasks:
        for design in ("chosen", "chinchilla"):
            r = ds.sel(task=task, design=design)
            assert fmt.number(float(r["N"])) in text and fmt.number(float(r["D"])) in text
            assert f"{float(r['metric_mean']):.4g}" in text and f"{float(r['p_target']):.2f}" in text


def test_refuses_to_overwrite_without_force(report_pdf, fit_file):
    out, _ = report_pdf
    before = out.read_bytes()
    assert run_cli("report", fit_file, "--out", out, *BUDGET) == 2
    assert out.read_bytes() == before


@pytest.mark.parametrize("budget, fragment", [
    (["--train-flops", "1e19", "--inference-flops", "1e3"], "--inference-flops"),  # cannot draw one sample
    (["--total-flops", "1e15", "--queries", "1e9"], "--total-flops"),  # cannot serve the queries
    ([], "budget"),
])
def test_bad_budget_exits_2_and_writes_nothing(fit_file, tmp_path, capfd, budget, fragment):
    out = tmp_path / "r.pdf"
    assert run_cli("report", fit_file, "--out", out, *budget) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0] and "Traceback" not in err[0]
    assert not out.exists()


def test_empty_posterior_is_refused(loss_truth_fit, tmp_path, capfd):
    fit = loss_truth_fit[2]
    tree = xr.DataTree.from_dict({"posterior": fit.posterior[list(fit.route.coefficient_names)].isel(
        draw=slice(0, 0))})
    tree.attrs.update(fit.tree.attrs)
    with pytest.raises(InputError, match="empty"):
        check_reportable(Fit(tree))
    path = tmp_path / "empty.nc"
    Fit(tree).save(path)
    assert run_cli("report", path, "--out", tmp_path / "r.pdf", *BUDGET) == 2
    err = capfd.readouterr().err
    assert "empty.nc" in err and "posterior is empty" in err
    assert not (tmp_path / "r.pdf").exists()


def test_failed_diagnostics_are_stated_on_the_pages(loss_truth_fit, tmp_path):
    """Chains that disagree: the report is still written, and its headline and diagnostics pages say so."""
    fit = loss_truth_fit[2]
    post = fit.posterior.copy()
    shift = xr.DataArray([1.0, 1.3], dims="chain", coords={"chain": post["chain"]})
    for name in ("E", "B"):
        post[name] = post[name] * shift  # chain 1 somewhere else entirely
    tree = fit.tree.copy()
    tree["posterior"] = xr.DataTree(post)
    bad = Fit(tree)
    assert not bad.diagnostics().ok
    # many queries: the cheapest budgets of the sweep cannot serve them, and the optimum page says so
    # and a target no design reaches: the decision page says so
    report = write_report(bad, tmp_path / "bad.pdf", TotalBudget(1e23, 1e13), Constraints(k_max=64), target=0.2,
                          backtest=False)
    assert any("r-hat" in p for p in report.problems)
    rendered = pages(report.path)
    headline, diagnostics, optimum, decision = (rendered[report.pages.index(t)][1] for t in (
        "headline", "diagnostics", "optimum against budget", f"decision: {', '.join(fit.tasks)}"))
    assert "chains disagree" in headline and "chains disagree" in diagnostics
    assert "PROBLEM" in diagnostics
    assert "cannot buy the smallest model" in optimum.replace("\r\n", " ").replace("\n", " ")
    assert "no design under this budget reaches" in " ".join(decision.split())
    assert any("--target 0.2" in p for p in report.problems)


def test_plot_functions_return_labelled_figures(loss_truth_fit):
    fit = loss_truth_fit[2]
    budget = SplitBudget(2.56e19, 2e9)
    records = optimum_records(fit.optimize([budget]), "loss", True, 0.9)
    figures = {
        "law": plots.plot_law(fit, fit.tasks[:2]),
        "coefficients": plots.plot_coefficients(fit),
        "diagnostics": plots.plot_diagnostics(fit),
        "optimum": plots.plot_optimum_vs_budget(fit, budget, flops=np.geomspace(1e18, 1e22, 5)),
        "headline": plots.plot_headline(records, title="t"),
    }
    try:
        for name, (fig, axes) in figures.items():
            assert isinstance(fig, plt.Figure), name
            axes = np.ravel(axes)
            assert len(axes) and all(ax.get_figure(root=True) is fig for ax in axes), name
            for ax in axes:
                if not ax.get_visible() or not ax.axison:
                    continue
                shared = ax.get_shared_x_axes().get_siblings(ax)  # a shared x axis is labelled once
                assert any(a.get_xlabel() for a in shared), f"{name}: an axes without an x label"
                has_y = bool(ax.get_ylabel()) or len(ax.get_yticklabels()) and any(
                    t.get_text() for t in ax.get_yticklabels())
                assert has_y or name in ("headline", "optimum", "coefficients"), f"{name}: no y label"
        law_axes = figures["law"][1]
        assert law_axes.shape == (2, 2)
        assert "FLOPs" in law_axes[0, 0].get_xlabel() and law_axes[0, 0].get_xscale() == "log"
        assert all("loss" in ax.get_ylabel() for ax in law_axes.ravel())
        opt_axes = figures["optimum"][1]
        assert [ax.get_yscale() for ax in opt_axes.ravel()] == ["log"] * 4
        assert "parameters" in opt_axes[0, 0].get_ylabel() and "tokens" in opt_axes[0, 1].get_ylabel()
        # the Chinchilla line on the tokens/param panel sits at 20
        chin = [line for line in opt_axes[1, 0].get_lines() if line.get_linestyle() == "--"]
        assert chin and np.allclose(chin[0].get_ydata(), 20.0)
    finally:
        for fig, _ in figures.values():
            plt.close(fig)


def test_task_colours_are_one_palette(loss_truth_fit):
    fit = loss_truth_fit[2]
    colors = plots.task_colors(fit.tasks)
    assert list(colors) == fit.tasks and len(set(colors.values())) == len(fit.tasks)
    assert plots.task_colors([*fit.tasks, "extra"])[fit.tasks[1]] == colors[fit.tasks[1]]


def test_population_coefficients_map_the_hyperparameters_like_the_model(loss_truth_fit):
    """With zero spread and the population mean set to task t's sampled values, a 'new task' is task t."""
    fit = loss_truth_fit[2]
    post = fit.posterior.copy()
    task = fit.tasks[1]
    for name in ("E_rel", "A_rel", "alpha", "B_rel", "beta", "G_rel", "gamma"):
        post[f"log_{name}_mu"] = post[f"log_{name}"].sel(task=task, drop=True)
        post[f"log_{name}_sd"] = xr.zeros_like(post[f"log_{name}_sd"])
    new = fit.route.population_coefficients(post, fit.scaling, seed=3)
    for name in fit.route.coefficient_names:
        np.testing.assert_allclose(new[name].values, post[name].sel(task=task).values, rtol=1e-10)
    # with the real spread it is a proper predictive: wider than any single task's posterior
    pop = fit.route.population_coefficients(fit.posterior, fit.scaling, seed=3)
    assert float(np.log(pop["E"]).std()) > max(float(np.log(fit.posterior["E"].sel(task=t)).std())
                                               for t in fit.tasks)


def test_observed_points_are_the_data(loss_truth_fit):
    data, _, fit = loss_truth_fit
    obs = plots.observed_points(fit)
    want = data.frame[["task", "params", "tokens", "k", "loss"]].rename(columns={"loss": "metric"})
    key = ["task", "params", "tokens", "k"]
    got = obs.sort_values(key).reset_index(drop=True)
    want = want.sort_values(key).reset_index(drop=True).astype({"k": float})
    np.testing.assert_array_equal(got["task"], want["task"])
    np.testing.assert_allclose(got[["params", "tokens", "k", "metric"]].to_numpy(float),
                               want[["params", "tokens", "k", "metric"]].to_numpy(float), rtol=1e-12)


def test_loss_observed_points_keep_runs_the_data_named():
    """Two runs of one (params, tokens) that the data named apart stay apart when a fit file is read back (a
    `model` column, so the report's backtest refits them as the fit did); without such runs, no column."""
    from bayes_t2.routes.loss import LossRoute

    def tree(params):
        return xr.DataTree.from_dict({
            "posterior": xr.Dataset(coords={"chain": [0], "draw": [0], "task": ["a"]}),
            "constant_data": xr.Dataset({
                "checkpoint_params": ("checkpoint", params), "checkpoint_tokens": ("checkpoint", [1e9, 1e9, 4e9]),
                "checkpoint_index": ("obs", [0, 1, 2]), "task_index": ("obs", [0, 0, 0]), "k": ("obs", [1.0] * 3)}),
            "observed_data": xr.Dataset({"log_loss": ("obs", np.log([3.0, 3.1, 2.5]))}),
        })
    named = LossRoute.observed_points(tree([1e8, 1e8, 2e8]))
    assert list(named["model"]) == ["checkpoint 0", "checkpoint 1", "checkpoint 2"]
    assert "model" not in LossRoute.observed_points(tree([1e8, 2e8, 2e8]))


def test_backtest_page_names_the_tasks_that_extrapolated_worst():
    """The backtest page's by-task sentence: the range of the tasks' 90% coverages and the lowest ones with
    their intervals, lowest first; nothing for one task."""
    from bayes_t2.report import by_task_text

    cells = [{"task": name, "coverage90": c90, "coverage50": 0.5, "coverage90_interval": [c90 - 0.1, c90 + 0.05]}
             for name, c90 in (("a", 0.95), ("b", 0.6), ("c", 0.85), ("d", 0.75))]
    text = by_task_text({"by_task": cells}, shown=2)
    assert text.startswith("Task by task, the 90% intervals covered 60% to 95%")
    assert "lowest: b 60% [50%, 65%] (50%: 50%); d 75%" in text and "c 85%" not in text
    assert by_task_text({"by_task": []}) is None and by_task_text({}) is None


def test_accuracy_observed_points_are_weighted_unbiased_pass_at_k():
    """Counts read back from an accuracy fit: pass@k per checkpoint is the problem-weighted unbiased estimate."""
    from bayes_t2.routes.accuracy import AccuracyRoute

    # task a, checkpoint 0: 3 problems with 1/4 correct and 1 problem with 4/4 -> pass@1 = (3/4 + 1)/4
    # task b, checkpoint 1: 2 problems with 0/2 correct -> pass@1 = pass@2 = 0
    tree = xr.DataTree.from_dict({
        "posterior": xr.Dataset(coords={"chain": [0], "draw": [0], "task": ["a", "b"]}),
        "constant_data": xr.Dataset({
            "unit_index": ("cell", [0, 0, 1]), "unit_task": ("task_checkpoint", [0, 1]),
            "unit_params": ("task_checkpoint", [1e8, 2e8]), "unit_tokens": ("task_checkpoint", [1e9, 4e9]),
            "n_samples": ("cell", [4.0, 4.0, 2.0]), "weight": ("cell", [3.0, 1.0, 2.0])}),
        "observed_data": xr.Dataset({"n_correct": ("cell", [1, 4, 0])}),
    })
    obs = AccuracyRoute.observed_points(tree).set_index(["task", "k"])
    assert obs.loc[("a", 1.0), "metric"] == pytest.approx((3 * 0.25 + 1.0) / 4)
    # pass@2 of 1/4 correct: 1 - C(3,2)/C(4,2) = 1/2; of 4/4: 1
    assert obs.loc[("a", 2.0), "metric"] == pytest.approx((3 * 0.5 + 1.0) / 4)
    assert obs.loc[("a", 4.0), "metric"] == pytest.approx(1.0)
    assert list(obs.loc["b"].index) == [1.0, 2.0] and (obs.loc["b", "metric"] == 0).all()
    assert obs.loc[("b", 1.0), "params"] == 2e8 and obs.loc[("b", 1.0), "tokens"] == 4e9


def test_tail_risk_closed_form():
    x = np.arange(1.0, 11.0)  # ten draws 1..10
    # lower is better: the worst 20% are 10 and 9
    worst, cvar = plots.tail_risk(x, lower_is_better=True, q=0.2)
    assert cvar == pytest.approx(9.5) and worst == pytest.approx(np.quantile(x, 0.8))
    worst, cvar = plots.tail_risk(x, lower_is_better=False, q=0.2)  # higher is better: 1 and 2
    assert cvar == pytest.approx(1.5) and worst == pytest.approx(np.quantile(x, 0.2))
    assert plots.tail_risk(np.array([np.nan, 3.0]), True, 0.1) == (3.0, 3.0)


def test_decision_figure_shows_every_design_and_risk_measure():
    """A decision dataset of the shape `decide` returns (task, design; chain, draw): one row per task x design."""
    rng = np.random.default_rng(0)
    designs = ["chosen", "chinchilla", "median_optimum"]
    metric = 1.0 + rng.gamma(2.0, 0.05, size=(2, 3, 1, 50))  # task, design, chain, draw
    per = ("task", "design")
    ds = xr.Dataset(
        {"N": (per, np.full((2, 3), 1e8)), "D": (per, np.full((2, 3), 2e9)), "k": (per, np.full((2, 3), 4.0)),
         "tokens_per_param": (per, np.full((2, 3), 20.0)), "expected_regret": (per, np.zeros((2, 3))),
         "p_target": (per, np.full((2, 3), 0.5)),
         "metric_median": (per, np.median(metric, axis=(2, 3))), "metric_mean": (per, metric.mean(axis=(2, 3))),
         "metric_lower": (per, np.quantile(metric, 0.05, axis=(2, 3))),
         "metric_upper": (per, np.quantile(metric, 0.95, axis=(2, 3))),
         "metric": (("task", "design", "chain", "draw"), metric)},
        coords={"task": ["a", "b"], "design": designs, "chain": [0], "draw": np.arange(50)},
        attrs={"risk": "cvar:0.1", "target": 1.2, "metric_name": "loss", "lower_is_better": 1, "prob": 0.9,
               "budget_label": "train 1e19, inference 1e9/query"})
    fig, axes = plots.plot_decision(ds)
    try:
        table = axes[0].tables[0]
        texts = [[cell.get_text().get_text() for (r, c), cell in sorted(table.get_celld().items()) if r == row]
                 for row in range(1 + 6)]
        assert "CVaR 10%" in texts[0] and "P(target)" in texts[0]
        assert [row[1] for row in texts[1:4]] == ["chosen (cvar:0.1)", "Chinchilla", "median optimum"]
        cvar_col = texts[0].index("CVaR 10%")
        want = plots.tail_risk(metric[1, 2].ravel(), True, 0.1)[1]
        assert texts[6][cvar_col] == f"{want:.4g}"  # task b, median optimum
        assert len(axes) == 3 and all(ax.get_xlabel().startswith("loss per draw") for ax in axes[1:])
    finally:
        plt.close(fig)


def test_accuracy_route_report(accuracy_truth_fit, tmp_path):
    """The same pages for the accuracy route: pass@k, higher is better, observed pass@k from the counts."""
    fit = accuracy_truth_fit[2]
    budget = TotalBudget(1e22, 1e10)
    report = write_report(fit, tmp_path / "acc.pdf", budget, Constraints(k_max=64))
    rendered = pages(report.path)
    # + the "beyond the data" page: the fit keeps its checkpoints' range, so the optimum's distance is stated
    assert len(rendered) == 1 + -(-len(fit.tasks) // 3) + 4 + 1 + -(-len(fit.tasks) // 4) + 1
    assert "beyond the data" in report.pages
    for i, (pixels, _) in enumerate(rendered):
        assert float(np.mean(pixels < 200)) > 0.01 and pixels.std() > 10, f"page {i + 1} is blank"
    records = optimum_records(fit.optimize([budget], Constraints(k_max=64)), "pass_at_k", False, 0.9)
    headline = "".join(rendered[0][1].split())
    for r in records:
        assert f"{r['metric']['median']:.4g}" in headline and f"{r['p_beats_chinchilla']:.2f}" in headline
    law = " ".join(rendered[1][1].split())
    assert "pass@k (higher is better)" in law
    # the observed points are pass@k estimates in [0, 1], k = 1, 2, 4, ... up to the samples per problem
    obs = plots.observed_points(fit)
    assert obs["metric"].between(0, 1).all() and set(obs["k"]) == {2.0 ** i for i in range(9)}


@pytest.mark.parametrize("learned, expected", [
    ({"source": "learned", "folds": [{"holdout": "largest-params"}]}, "learn"),
    ({"source": "learned", "note": "not learned: too few sizes"}, "learn"),
    ({"source": "model file", "note": "from the model file; --discrepancy learn learns it"}, "spec"),
    ({"folds": [{"holdout": "largest-params"}]}, "learn"),  # a fit saved before the record named its source
    ({"note": "from the model file; --discrepancy learn learns it"}, "spec"),
    (None, "spec")])
def test_backtest_page_learns_the_discrepancy_inside_its_training_part(loss_truth_fit, monkeypatch, learned,
                                                                        expected):
    """A scale the fit learned from all its data has seen the held-out points: the page's backtest learns it
    again inside its training part; a scale the user fixed (no learning record) is used as it is."""
    import copy
    import json

    from bayes_t2 import backtest as backtest_module, report
    from bayes_t2.fit import DISCREPANCY_ATTR

    fit = copy.copy(loss_truth_fit[2])
    fit.tree = fit.tree.copy()
    fit.tree.attrs = {k: v for k, v in fit.tree.attrs.items() if k != DISCREPANCY_ATTR}
    if learned is not None:
        fit.tree.attrs[DISCREPANCY_ATTR] = json.dumps({"scale": 0.0, **learned})
    seen = {}

    def fake_backtest(data, **kwargs):
        seen.update(kwargs)
        raise RuntimeError("stop here")

    monkeypatch.setattr(backtest_module, "backtest", fake_backtest)
    with pytest.raises(InputError, match="stop here"):
        report._backtest_page(fit, loss_truth_fit[0], 50)
    assert seen["discrepancy"] == expected
