"""Backtest: the split, the scores and the command, on tiny simulated data with few draws.

Truths come from elsewhere: the split is checked by brute force over the rows, the scores against closed
forms (draws and observations from one distribution give uniform PIT values and nominal coverage).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings, strategies as st
from typer.testing import CliRunner

from bayes_t2.backtest import (HOLDOUTS, backtest, bias_text, fit_discrepancy_scale, score_points, split_data,
                               summarize)
from bayes_t2.routes.loss import LossRoute, extrapolation_efolds
from bayes_t2.cli import app
from bayes_t2.data import from_frame
from bayes_t2.errors import InputError
from bayes_t2.fit import SamplerSettings
from bayes_t2.simulate import simulate_loss


@pytest.fixture(scope="module")
def tiny_loss() -> pd.DataFrame:
    frame, _ = simulate_loss(seed=3, n_tasks=2, budgets=np.geomspace(1e17, 3e18, 5), sizes_per_budget=4,
                             n_overtrained=0, ks=(1,))
    return frame


@pytest.mark.parametrize("holdout", [h for h in HOLDOUTS if h != "most-repeated"])  # that one: test_repetition
@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.5])
def test_split_holds_out_the_largest(tiny_loss, holdout, fraction):
    data = from_frame(tiny_loss)
    split = split_data(data, holdout, fraction)
    key = lambda f: 6 * f["params"] * f["tokens"] if HOLDOUTS[holdout] == "compute" else f[HOLDOUTS[holdout]]  # noqa: E731
    train, test = split.train.frame, split.test.frame
    assert len(train) + len(test) == len(tiny_loss)
    assert key(train).max() < key(test).min()  # every held-out run is larger than every training run
    checkpoints = tiny_loss[["params", "tokens"]].drop_duplicates()
    n_held = len(test[["params", "tokens"]].drop_duplicates())
    assert n_held >= fraction * len(checkpoints)
    # the cut is the smallest one: moving the next-smaller group out would not be needed (keys within a
    # relative 1e-6 are one group: an IsoFLOP budget's runs, whose 6ND differ by the rounding of their tokens)
    above = checkpoints.assign(key=key(checkpoints))["key"] > key(test).min() * (1 + 1e-6)
    assert above.sum() < fraction * len(checkpoints)


@settings(max_examples=40, deadline=None)
@given(budgets=st.integers(3, 8), sizes=st.integers(2, 6), fraction=st.floats(0.1, 0.6), seed=st.integers(0, 10**6))
def test_split_keeps_an_isoflop_budget_whole(budgets, sizes, fraction, seed):
    """Runs of one IsoFLOP budget have 6ND equal only up to the rounding of their token counts (Porian's file:
    372 distinct products in 12 budgets): a compute holdout takes or leaves a budget whole, so no held-out run
    sits at the training part's largest compute. Truth: the budget each run was built from."""
    rng = np.random.default_rng(seed)
    rows = []
    for b, budget in enumerate(np.geomspace(1e17, 1e17 * 4 ** (budgets - 1), budgets)):
        for n in np.geomspace(2e7, 2e8, sizes) * rng.uniform(0.9, 1.1):
            rows.append({"task": "t", "params": round(n), "tokens": round(budget / (6 * round(n))),
                         "k": 1, "loss": 3.0 + rng.normal(0, 0.01), "budget": b})
    frame = pd.DataFrame(rows)
    assume(frame["params"].nunique() >= 4)
    try:
        split = split_data(from_frame(frame.drop(columns="budget")), "largest-compute", fraction)
    except InputError:
        return  # too few runs left to fit: said, not split
    held = split.test.frame.merge(frame, on=["params", "tokens"])["budget"]
    kept = split.train.frame.merge(frame, on=["params", "tokens"])["budget"]
    assert held.min() > kept.max()  # whole budgets, the largest ones


def test_split_rejects_bad_options(tiny_loss):
    data = from_frame(tiny_loss)
    with pytest.raises(InputError, match="--holdout"):
        split_data(data, "smallest", 0.2)
    with pytest.raises(InputError, match="--fraction"):
        split_data(data, "largest-params", 1.5)
    with pytest.raises(InputError, match="fewer than 3 checkpoints"):
        split_data(data, "largest-params", 0.99)


def test_scores_of_a_calibrated_forecast_are_nominal():
    """Observations drawn from the predictive itself: PIT ~ Uniform, coverage 50% / 90% (closed forms)."""
    rng = np.random.default_rng(0)
    n_points, n_draws = 4000, 400
    centre = rng.uniform(2, 4, size=n_points)
    draws = centre[:, None] * np.exp(0.05 * rng.standard_normal((n_points, n_draws)))
    observed = centre * np.exp(0.05 * rng.standard_normal(n_points))
    points = pd.DataFrame({"task": "t", "params": 1e8, "tokens": 1e9, "k": 1.0, "observed": observed})
    scored = score_points(points, draws, "loss", seed=1)
    scored["distance"] = 0.0
    s = summarize(scored, "loss")
    assert abs(s["coverage90"] - 0.9) < 0.02 and abs(s["coverage50"] - 0.5) < 0.03
    assert s["pit_ks"] < 0.03
    # median |relative error| of a log-normal(0, 0.05) observation around its median: 0.05 * 0.6745
    assert abs(s["median_abs_relative_error"] - 0.05 * 0.6745) < 0.003


def test_coverage_interval_is_jeffreys_for_independent_points():
    """One point per checkpoint: the interval is the Jeffreys binomial interval (scipy's beta quantiles),
    including the all-hit case a bootstrap would collapse to [100%, 100%]."""
    from scipy.stats import beta

    from bayes_t2.coverage import coverage_interval

    for hits, n in [(31, 31), (0, 20), (14, 20), (27, 36)]:
        covered = np.r_[np.ones(hits), np.zeros(n - hits)]
        expected = beta.ppf([0.05, 0.95], hits + 0.5, n - hits + 0.5)
        assert np.allclose(coverage_interval(covered, np.arange(n)), expected, atol=2e-3)


def test_coverage_interval_counts_checkpoints_not_points():
    """20 checkpoints of 15 points each that hit or miss together carry the evidence of 20 draws (the Jeffreys
    interval of 14 in 20), not of 300; 300 independent points give a much narrower one."""
    from scipy.stats import beta

    from bayes_t2.coverage import coverage_interval

    covered = np.repeat([1.0] * 14 + [0.0] * 6, 15)
    lo, hi = coverage_interval(covered, np.repeat(np.arange(20), 15))
    assert np.allclose([lo, hi], beta.ppf([0.05, 0.95], 14.5, 6.5), atol=0.03)
    lo_i, hi_i = coverage_interval(covered, np.arange(300))
    assert hi_i - lo_i < 0.5 * (hi - lo)


def test_coverage_interval_covers_a_known_rate_on_clustered_hits():
    """Simulated backtests with a known coverage rate (0.95) and strongly clustered hits (13 checkpoints of
    10-30 points; 90% of a checkpoint's points share one hit-or-miss): the 90% interval holds the rate in at
    least 85% of 200 data sets. A percentile bootstrap over the checkpoints holds it in about half."""
    from bayes_t2.coverage import coverage_interval

    rng = np.random.default_rng(11)
    rate, held = 0.95, 0
    for _ in range(200):
        sizes = rng.integers(10, 31, 13)
        cluster = np.repeat(np.arange(13), sizes)
        shared = (rng.random(13) < rate)[cluster]
        own = rng.random(cluster.size) < rate
        covered = np.where(rng.random(cluster.size) < 0.9, shared, own).astype(float)
        lo, hi = coverage_interval(covered, cluster)
        held += lo <= rate <= hi
    assert held >= 170, held


def test_scores_see_a_biased_forecast():
    rng = np.random.default_rng(1)
    draws = 3.0 * np.exp(0.01 * rng.standard_normal((500, 300)))
    points = pd.DataFrame({"task": "t", "params": 1e8, "tokens": 1e9, "k": 1.0, "observed": np.full(500, 3.3)})
    scored = score_points(points, draws, "loss", seed=1)
    scored["distance"] = 1.0
    s = summarize(scored, "loss")
    assert s["coverage90"] == 0.0 and s["share_observed_below_median"] == 0.0
    assert abs(s["mean_relative_error"] - (3.0 / 3.3 - 1)) < 0.002


def test_summary_by_task_tells_the_task_whose_law_misses():
    """Two tasks share the held-out checkpoints: one is forecast from its own predictive (calibrated), the
    other 10% too low. The summary's by-task cells tell them apart, each from its own points only."""
    rng = np.random.default_rng(3)
    n = 2000
    draws = 3.0 * np.exp(0.02 * rng.standard_normal((2 * n, 400)))
    observed = np.r_[3.0 * np.exp(0.02 * rng.standard_normal(n)), np.full(n, 3.3)]
    points = pd.DataFrame({"task": np.repeat(["calibrated", "biased"], n), "params": np.tile(np.arange(n) + 1e8, 2),
                           "tokens": 1e9, "k": 1.0, "observed": observed})
    scored = score_points(points, draws, "loss", seed=1)
    scored["distance"] = 1.0
    cells = {c["task"]: c for c in summarize(scored, "loss")["by_task"]}
    assert abs(cells["calibrated"]["coverage90"] - 0.9) < 0.02 and abs(cells["calibrated"]["coverage50"] - 0.5) < 0.03
    assert cells["biased"]["coverage90"] == 0.0 and cells["biased"]["share_observed_below_median"] == 0.0
    lo, hi = cells["calibrated"]["coverage90_interval"]
    assert lo < 0.9 < hi and cells["calibrated"]["n_clusters"] == n
    one_task = summarize(scored[scored["task"] == "biased"], "loss")
    assert one_task["by_task"] == []  # one task: the overall cells say it all


def _shifted_backtest(rng, shift: float, n: int = 30) -> pd.DataFrame:
    """n held-out checkpoints observed at `shift` x the centre of their predictive (both with sd 2%)."""
    draws = 0.3 * np.exp(0.02 * rng.standard_normal((n, 400)))
    observed = 0.3 * shift * np.exp(0.02 * rng.standard_normal(n))
    points = pd.DataFrame({"task": "t", "params": np.arange(n) + 1e8, "tokens": 1e9, "k": 1.0, "observed": observed})
    scored = score_points(points, draws, "loss", seed=int(rng.integers(1 << 30)))
    scored["distance"] = 1.0
    return scored


@pytest.mark.parametrize("metric, shift, verdict", [("loss", 1.05, "optimistic"), ("loss", 0.95, "pessimistic"),
                                                    ("pass@k", 0.95, "optimistic"), ("pass@k", 1.05, "pessimistic")])
def test_summary_says_which_way_the_law_missed(metric, shift, verdict):
    """Observations 5% above the predictive: a loss worse than predicted (optimistic), a pass@k better
    (pessimistic); 5% below, the reverse. Truth: the shift the observations were built with."""
    s = summarize(_shifted_backtest(np.random.default_rng(5), shift), metric)
    assert s["bias"] == verdict
    lo, hi = s["below_median_interval_99"]
    assert (hi < 0.5) == (shift > 1) and (lo > 0.5) == (shift < 1)
    text = bias_text(s)
    assert verdict in text and f"[{lo:.0%}, {hi:.0%}]" in text


def test_summary_rarely_calls_a_calibrated_law_one_sided():
    """Observations drawn from the predictive itself (200 backtests of 30 checkpoints): the one-sided verdict
    fires in about 1% of them (its interval is a 99% one), and the 90% interval holds one half in about 90%."""
    rng = np.random.default_rng(6)
    summaries = [summarize(_shifted_backtest(rng, 1.0), "loss") for _ in range(200)]
    fired = np.mean([s["bias"] != "none" for s in summaries])
    held = np.mean([s["below_median_interval"][0] <= 0.5 <= s["below_median_interval"][1] for s in summaries])
    assert fired <= 0.04 and 0.84 <= held <= 0.96
    assert all(bias_text(s) is None for s in summaries if s["bias"] == "none")


def test_coverage_clusters_follow_the_fits_checkpoints():
    """Runs named by `model` are separate checkpoints even at one (params, tokens) (two corpora, or two
    training configurations, at one design): 20 such runs count as 20 draws (the Jeffreys interval of 14 in
    20), where without the names they would be one checkpoint whose points hit or miss together."""
    from scipy.stats import beta

    covered = np.r_[np.ones(14), np.zeros(6)]
    points = pd.DataFrame({"task": "t", "params": 1e8, "tokens": 1e9, "k": 1.0, "observed": 1.0,
                           "covered50": covered.astype(bool), "covered90": covered.astype(bool), "error": 0.0,
                           "pit": 0.5, "distance": 0.0, "model": [f"run{i}" for i in range(20)]})
    s = summarize(points, "loss")
    assert s["n_clusters"] == 20
    assert np.allclose(s["coverage90_interval"], beta.ppf([0.05, 0.95], 14.5, 6.5), atol=3e-3)
    unnamed = summarize(points.drop(columns="model"), "loss")
    assert unnamed["n_clusters"] == 1 and unnamed["coverage90_interval"][1] - unnamed["coverage90_interval"][0] > 0.5


def test_logodds_error_and_ties_in_pit():
    """pass@k: log-odds error; an observed 0 that every draw also shows gets a uniform PIT, not 0 or 1."""
    draws = np.zeros((2000, 50))
    draws[:, :10] = 0.1
    points = pd.DataFrame({"task": "t", "params": 1.0, "tokens": 1.0, "k": 1.0, "observed": np.zeros(2000)})
    scored = score_points(points, draws, "pass_at_k", seed=3)
    assert scored["error"].isna().all()  # logit(0) is not finite
    assert abs(scored["pit"].mean() - 0.4) < 0.02  # 40 of 50 draws tie with the observation: U(0, 0.8)


def test_discrepancy_scale_recovers_a_simulated_one():
    """r ~ Normal(0, v + (s x)^2) simulated with known s: the maximum-likelihood estimate finds it; without any
    extra error it finds (practically) none."""
    rng = np.random.default_rng(5)
    x = rng.uniform(0, 3, size=4000)
    v = np.full(x.size, 0.01 ** 2)
    r = rng.normal(0, np.sqrt(v + (0.03 * x) ** 2))
    assert fit_discrepancy_scale(r, v, x) == pytest.approx(0.03, rel=0.05)
    assert fit_discrepancy_scale(rng.normal(0, 0.01, size=4000), v, x) < 0.002
    assert fit_discrepancy_scale(r, v, np.zeros_like(x)) == 0.0  # nothing beyond the data: nothing to learn


def test_extrapolation_distance_by_brute_force():
    """e-folds outside the box of log N, log D, log 6ND and log D/N, against a direct loop; a fit saved with
    the first three axes only is measured on those three."""
    rng = np.random.default_rng(2)
    n, d = np.exp(rng.uniform(15, 22, 50)), np.exp(rng.uniform(18, 25, 50))
    box = np.array([[17.0, 20.0], [20.0, 23.0], [np.log(6) + 38.0, np.log(6) + 42.0], [1.0, 5.0]])
    for rows in (4, 3):
        got = extrapolation_efolds(box[:rows], n, d)
        for i in range(50):
            coords = [np.log(n[i]), np.log(d[i]), np.log(6 * n[i] * d[i]), np.log(d[i] / n[i])][:rows]
            want = max([0.0] + [max(c - hi, lo - c) for c, (lo, hi) in zip(coords, box)])
            assert got[i] == pytest.approx(want)
    # over-training alone, at a size, token count and compute all inside the data, is an extrapolation
    inside = np.array([[10.0, 20.0], [10.0, 30.0], [np.log(6) + 20.0, np.log(6) + 50.0], [0.0, 2.0]])
    assert extrapolation_efolds(inside, np.exp(15.0), np.exp(20.0)) == pytest.approx(3.0)


def test_new_checkpoint_interval_widens_with_distance_by_the_scale():
    """With a discrepancy scale s the predictive sd of log loss at x e-folds beyond the data is
    sqrt(sigma^2 + (s x)^2) (no checkpoint effect here): checked against that closed form."""
    import xarray as xr

    n_draws = 20000
    post = xr.Dataset({name: (("chain", "draw", "task"), np.full((1, n_draws, 1), v)) for name, v in
                       dict(E=1.0, A=100.0, alpha=0.3, B=100.0, beta=0.3, G=0.0, gamma=1.0, sigma=0.01).items()})
    post["data_log_range"] = (("chain", "draw", "range_axis", "range_end"),
                              np.broadcast_to([[15.0, 20.0], [18.0, 23.0], [35.0, 45.0]], (1, n_draws, 3, 2)))
    spec = {"likelihood": {"family": "normal"}, "discrepancy": {"scale": 0.05}}
    for efolds in (0.0, 1.0, 3.0):
        N = np.exp(20.0 + efolds)
        pred = LossRoute.metric(post, N, np.exp(20.0), 1.0, rng=np.random.default_rng(1), spec=spec)
        sd = float(np.log(pred).std())
        assert sd == pytest.approx(np.sqrt(0.01 ** 2 + (0.05 * efolds) ** 2), rel=0.03)


def test_backtest_end_to_end_and_cli(tiny_loss, tmp_path):
    data = from_frame(tiny_loss)
    settings = SamplerSettings(draws=60, tune=60, chains=1, seed=2, pointwise=False)
    result = backtest(data, holdout="largest-compute", fraction=0.3, settings=settings)
    s = result.summary
    assert s["discrepancy"]["scale"] >= 0 and s["discrepancy"]["n_points"] > 0  # learned inside the training part
    assert s["n_points"] == len(result.points) == s["n_test_rows"]
    assert (result.points["distance"] > 0).all() and s["max_distance"] > 0
    assert {"q05", "q25", "q50", "q75", "q95", "pit", "covered90"} <= set(result.points.columns)
    assert (result.points["q05"] <= result.points["q95"]).all()

    path = tmp_path / "data.csv"
    tiny_loss.to_csv(path, index=False)
    runner = CliRunner()
    out_json, out_png = tmp_path / "bt.json", tmp_path / "bt.png"
    res = runner.invoke(app, ["backtest", str(path), "--holdout", "largest-params", "--draws", "40", "--tune",
                              "40", "--chains", "1", "--discrepancy", "0", "--json", str(out_json), "--out", str(out_png)])
    assert res.exit_code == 0, res.output
    doc = json.loads(out_json.read_text())
    assert doc["summary"]["holdout"] == "largest-params" and len(doc["points"]) == doc["summary"]["n_points"]
    assert f"coverage [lo, hi]: 90% interval of the rate behind it, from the {doc['summary']['n_clusters']} held-out" \
        in res.output
    assert out_png.stat().st_size > 1000
    res = runner.invoke(app, ["backtest", str(path), "--json", str(out_json)])
    assert res.exit_code != 0  # refuses to overwrite without --force


def test_checkpoint_effect_only_when_a_checkpoint_has_several_rows(tiny_loss):
    """Single-task k = 1 data have one row per checkpoint: no effect (it would be the noise twice); two tasks
    share each checkpoint: one effect per checkpoint, centred or not as the spec says."""
    from bayes_t2.priors import load_spec

    frame = LossRoute.observations(from_frame(tiny_loss))
    one_task = frame[frame["task"] == frame["task"].iloc[0]]
    names = lambda m: {rv.name for rv in m.free_RVs}  # noqa: E731
    assert not {"checkpoint_sd", "checkpoint_z"} & names(LossRoute.build_model(one_task, load_spec("loss")))
    model = LossRoute.build_model(frame, load_spec("loss"))
    assert {"checkpoint_sd", "checkpoint_z"} <= names(model)
    assert model["checkpoint_z"].eval().shape == (frame[["model"]].drop_duplicates().shape[0],)
    centred = LossRoute.build_model(frame, load_spec("loss", {"checkpoint_effect": {"parameterization": "centered",
                                                                                   "orthogonal": False}}))
    assert "checkpoint_u" in names(centred) and "checkpoint_z" not in names(centred)
    off = LossRoute.build_model(frame, load_spec("loss", {"checkpoint_effect": {"enabled": "off"}}))
    assert "checkpoint_sd" not in names(off)
    per_task = LossRoute.build_model(frame, load_spec("loss", {"checkpoint_effect": {"sd_per_task": True}}))
    assert per_task["checkpoint_sd"].eval().shape == (frame["task"].nunique(),)
    with pytest.raises(InputError, match="sd_per_task needs parameterization"):
        LossRoute.build_model(frame, load_spec("loss", {"checkpoint_effect": {"sd_per_task": True,
                                                                             "parameterization": "centered"}}))


def test_checkpoint_scale_per_task_by_default_from_three_tasks_per_checkpoint():
    """`sd_per_task = "auto"` (the default): one scale per task when some checkpoint is evaluated on three or
    more tasks (a one-factor model's loadings need three indicators), one shared scale with two tasks or with
    the centred form; a value other than true, false or "auto" is a user error."""
    from bayes_t2.priors import load_spec
    from bayes_t2.simulate import simulate_loss

    frame3, _ = simulate_loss(seed=4, n_tasks=3, ks=(1, 8), checkpoint_sd=0.03)
    obs3 = LossRoute.observations(from_frame(frame3))
    obs2 = obs3[obs3["task"].isin(sorted(obs3["task"].unique())[:2])]
    assert LossRoute.build_model(obs3, load_spec("loss"))["checkpoint_sd"].eval().shape == (3,)
    assert LossRoute.build_model(obs2, load_spec("loss"))["checkpoint_sd"].eval().shape == ()
    centred = LossRoute.build_model(obs3, load_spec("loss", {"checkpoint_effect": {"parameterization": "centered"}}))
    assert centred["checkpoint_sd"].eval().shape == ()
    shared = LossRoute.build_model(obs3, load_spec("loss", {"checkpoint_effect": {"sd_per_task": False}}))
    assert shared["checkpoint_sd"].eval().shape == ()
    with pytest.raises(InputError, match='sd_per_task must be true, false or "auto"'):
        LossRoute.build_model(obs3, load_spec("loss", {"checkpoint_effect": {"sd_per_task": "yes"}}))


def test_centred_checkpoint_effects_live_in_the_trend_free_basis(tiny_loss):
    """Centred and orthogonal: the effects' coordinates are sampled in an orthonormal basis of the trend-free
    directions (no direction left to the prior alone), so every effect vector the model can draw has no
    quadratic trend in (log N, log D) -- checked against numpy's lstsq on the checkpoints' own designs."""
    from bayes_t2.priors import load_spec
    from bayes_t2.routes.loss import trend_free_basis

    frame = LossRoute.observations(from_frame(tiny_loss))
    model = LossRoute.build_model(frame, load_spec("loss", {"checkpoint_effect": {"parameterization": "centered"}}))
    ck = pd.DataFrame({"params": model["checkpoint_params"].eval(), "tokens": model["checkpoint_tokens"].eval()})
    basis = trend_free_basis(ck["params"].to_numpy(), ck["tokens"].to_numpy())
    assert model["checkpoint_w"].eval().shape == (basis.shape[1],)
    np.testing.assert_allclose(basis.T @ basis, np.eye(basis.shape[1]), atol=1e-10)
    x, y = np.log(ck["params"].to_numpy()), np.log(ck["tokens"].to_numpy())
    design = np.column_stack([np.ones_like(x), x, y, x * x, x * y, y * y])
    u = basis @ np.random.default_rng(3).normal(size=basis.shape[1])
    np.testing.assert_allclose(design @ np.linalg.lstsq(design, u, rcond=None)[0], 0.0, atol=1e-8)
    assert basis.shape[1] == len(ck) - np.linalg.matrix_rank(design)


def test_checkpoint_effects_are_free_of_smooth_trends():
    """The orthogonal checkpoint effect keeps only what a quadratic surface in (log N, log D) cannot explain:
    checked against a least-squares fit (numpy's lstsq) of a trend plus scatter; a lone size or token count
    drops its terms instead of breaking the projection."""
    from bayes_t2.routes.loss import trend_free_projection

    rng = np.random.default_rng(5)
    n, d = np.exp(rng.uniform(16, 22, 40)), np.exp(rng.uniform(19, 25, 40))
    x, y = np.log(n), np.log(d)
    design = np.column_stack([np.ones(40), x, y, x * x, x * y, y * y])
    u = design @ rng.normal(size=6) + rng.normal(0, 0.1, 40)
    residual = u - design @ np.linalg.lstsq(design, u, rcond=None)[0]
    P = trend_free_projection(n, d)
    np.testing.assert_allclose(P @ u, residual, atol=1e-8)
    np.testing.assert_allclose(P @ P, P, atol=1e-10)
    one_size = trend_free_projection(np.full(40, 1e8), d)  # 1, log D, log D^2 only
    small = np.column_stack([np.ones(40), y, y * y])
    np.testing.assert_allclose(one_size @ small, 0.0, atol=1e-8)
    assert np.linalg.matrix_rank(one_size) == 37


def test_checkpoint_effects_cannot_carry_a_trend_of_one_group_of_tasks():
    """Checkpoints seen by different tasks (models of two corpora, each evaluated on its own validation sets):
    a trend on one corpus's checkpoints, cancelled by the opposite trend on the other's, is orthogonal to the
    global quadratic surface yet each corpus's laws can absorb it -- the projection removes it; the scatter
    around each corpus's own surface (numpy lstsq per corpus) is what is left; when every task sees every
    checkpoint the projection is the global one."""
    from bayes_t2.routes.loss import trend_free_projection

    rng = np.random.default_rng(7)
    n = np.tile(np.exp(rng.uniform(16, 22, 20)), 2)
    d = np.tile(np.exp(rng.uniform(19, 25, 20)), 2)  # both corpora at the same designs, as Gadre's are
    x, y = np.log(n), np.log(d)
    design = np.column_stack([np.ones(40), x, y, x * x, x * y, y * y])
    seen = np.zeros((4, 40), dtype=bool)  # tasks 0, 1 see corpus 0; tasks 2, 3 corpus 1
    seen[:2, :20] = True
    seen[2:, 20:] = True
    trend = design[:20] @ rng.normal(size=6)
    ridge = np.concatenate([trend, -trend])  # invisible to one global surface: it is the same design twice
    P_global = trend_free_projection(n, d)
    P = trend_free_projection(n, d, seen)
    assert np.linalg.norm(P_global @ ridge) > 0.5 * np.linalg.norm(ridge)  # the old projection keeps it
    np.testing.assert_allclose(P @ ridge, 0.0, atol=1e-8 * np.linalg.norm(ridge))
    u = ridge + rng.normal(0, 0.1, 40)
    expected = np.concatenate([g - design[s] @ np.linalg.lstsq(design[s], g, rcond=None)[0]
                               for s, g in ((slice(0, 20), u[:20]), (slice(20, 40), u[20:]))])
    np.testing.assert_allclose(P @ u, expected, atol=1e-8)
    np.testing.assert_allclose(P, P.T, atol=1e-10)
    np.testing.assert_allclose(trend_free_projection(n, d, np.ones((3, 40), bool)), P_global, atol=1e-8)
    few = seen.copy()
    few[2:, 24:] = False  # corpus 1's tasks see 4 checkpoints, no more than the trend's 6 terms: none pinned
    P_few = trend_free_projection(n, d, few)
    np.testing.assert_allclose(P_few[20:24], 0.0, atol=1e-10)


def test_fit_learns_its_discrepancy_by_default_and_says_so(tiny_loss, tmp_path, capsys):
    """`fit` learns the scale from two folds inside the data (by params and by compute) unless told a number;
    the scale is what the fit's spec carries (what predictions and the optimizer use), the CLI prints it, and
    a word that is neither 'learn' nor a number exits 2."""
    from bayes_t2.fit import fit

    data = from_frame(tiny_loss)
    settings = SamplerSettings(draws=60, tune=60, chains=1, seed=2, pointwise=False)
    learned = fit(data, settings=settings, progressbar=False)
    disc = learned.discrepancy
    assert [f["holdout"] for f in disc["folds"]] == ["largest-params", "largest-compute"]
    assert disc["scale"] >= 0 and disc["scale"] == learned.spec["discrepancy"]["scale"]
    assert disc["n_points"] == sum(f["n_points"] for f in disc["folds"])
    fixed = fit(data, settings=settings, progressbar=False, discrepancy=0.07)
    assert fixed.discrepancy == {"scale": 0.07, "by_task": {}}

    path = tmp_path / "data.csv"
    tiny_loss.to_csv(path, index=False)
    runner = CliRunner()
    res = runner.invoke(app, ["fit", str(path), "--out", str(tmp_path / "f.nc"), "--draws", "40", "--tune", "40",
                              "--chains", "1", "--discrepancy", "0"])
    assert res.exit_code == 0, res.output
    assert "discrepancy: sd 0 of log loss per e-fold beyond the data (given)" in " ".join(res.output.split())
    from bayes_t2.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["fit", str(path), "--out", str(tmp_path / "g.nc"), "--discrepancy", "lots"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and "--discrepancy" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "g.nc").exists()


def test_inner_folds_that_cut_at_the_same_size_count_once():
    """Three model sizes x four budgets: holding out 25% or 12.5% of the checkpoints by params both remove the
    largest size (whole groups go together), so the second fold would pool the same residuals twice; by
    brute force over the rows the two cuts are equal, and `distinct_splits` keeps one and says why."""
    from bayes_t2.backtest import distinct_splits

    frame = pd.DataFrame([{"task": "t", "params": n, "tokens": d, "loss": 2.0 + 1e8 / n + 1e9 / d}
                          for n in (1e7, 3e7, 1e8) for d in (1e9, 3e9, 1e10, 3e10)])
    data = from_frame(frame)
    a, b = (split_data(data, "largest-params", f).test.frame for f in (0.25, 0.125))
    assert a.equals(b)  # the same rows held out
    splits, skipped = distinct_splits(data, [("largest-params", 0.25), ("largest-params", 0.125),
                                             ("largest-compute", 0.25), ("largest-params", 0.99)])
    assert [(h, f) for h, f, _ in splits] == [("largest-params", 0.25), ("largest-compute", 0.25)]
    assert len(skipped) == 2 and "same cut as largest-params 0.25" in skipped[0] and "fewer than 3" in skipped[1]


def test_per_task_checkpoint_sd_recovers_which_validation_sets_move_with_the_checkpoint():
    """`sd_per_task`: one shared effect per checkpoint, scaled per task (a one-factor model). Simulated truth:
    task "a" moves with its checkpoint by 0.06 on log loss, "b" and "c" by 0.01; the fit must rank them so and
    cover a's value in its 90% interval (one shared sd would give all three the same)."""
    from bayes_t2.fit import SamplerSettings, fit

    rng = np.random.default_rng(12)
    n, d = np.meshgrid([2e7, 6e7, 2e8, 6e8], [4e8, 1e9, 3e9, 8e9, 2e10, 5e10], indexing="ij")
    n, d = n.ravel(), d.ravel()
    u = rng.normal(size=n.size)
    law = 1.7 + 400 / n ** 0.34 + 410 / d ** 0.28
    scale = {"a": 0.06, "b": 0.01, "c": 0.01}
    frame = pd.concat([pd.DataFrame({"task": t, "model": [f"m{i}" for i in range(n.size)], "params": n,
                                     "tokens": d, "k": 1,
                                     "loss": law * np.exp(s * u + rng.normal(0, 0.003, n.size))})
                       for t, s in scale.items()])
    result = fit(from_frame(frame), route="loss", priors={"checkpoint_effect": {"sd_per_task": True}},
                 settings=SamplerSettings(draws=200, tune=300, chains=2, seed=4, pointwise=False),
                 progressbar=False, discrepancy=0)
    sd = result.tree["posterior"]["checkpoint_sd"]
    med = sd.median(("chain", "draw"))
    assert float(med.sel(task="a")) > 3 * max(float(med.sel(task="b")), float(med.sel(task="c")))
    lo, hi = sd.sel(task="a").quantile([0.05, 0.95]).values
    assert lo < 0.06 < hi


def test_coverage_intervals_at_several_levels_match_one_level_each():
    """One posterior, several levels: the same intervals as one call per level, nested, and NaN without points."""
    from bayes_t2.coverage import coverage_interval, coverage_intervals
    rng = np.random.default_rng(0)
    covered = rng.random(60) < 0.7
    cluster = np.repeat(np.arange(20), 3)
    both = coverage_intervals(covered, cluster, (0.5, 0.9, 0.99))
    assert both == [coverage_interval(covered, cluster, p) for p in (0.5, 0.9, 0.99)]
    assert both[2][0] < both[1][0] < both[0][0] < both[0][1] < both[1][1] < both[2][1]
    assert np.isnan(coverage_intervals(np.array([]), np.array([]), (0.9, 0.99))).all()
