"""Backtest: the split, the scores and the command, on tiny simulated data with few draws.

Truths come from elsewhere: the split is checked by brute force over the rows, the scores against closed
forms (draws and observations from one distribution give uniform PIT values and nominal coverage).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from bayes_t2.backtest import HOLDOUTS, backtest, score_points, split_data, summarize
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


@pytest.mark.parametrize("holdout", list(HOLDOUTS))
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
    # the cut is the smallest one: moving the next-smaller group out would not be needed
    assert (checkpoints.assign(key=key(checkpoints))["key"] > key(test).min()).sum() < fraction * len(checkpoints)


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


def test_scores_see_a_biased_forecast():
    rng = np.random.default_rng(1)
    draws = 3.0 * np.exp(0.01 * rng.standard_normal((500, 300)))
    points = pd.DataFrame({"task": "t", "params": 1e8, "tokens": 1e9, "k": 1.0, "observed": np.full(500, 3.3)})
    scored = score_points(points, draws, "loss", seed=1)
    scored["distance"] = 1.0
    s = summarize(scored, "loss")
    assert s["coverage90"] == 0.0 and s["share_observed_below_median"] == 0.0
    assert abs(s["mean_relative_error"] - (3.0 / 3.3 - 1)) < 0.002


def test_logodds_error_and_ties_in_pit():
    """pass@k: log-odds error; an observed 0 that every draw also shows gets a uniform PIT, not 0 or 1."""
    draws = np.zeros((2000, 50))
    draws[:, :10] = 0.1
    points = pd.DataFrame({"task": "t", "params": 1.0, "tokens": 1.0, "k": 1.0, "observed": np.zeros(2000)})
    scored = score_points(points, draws, "pass_at_k", seed=3)
    assert scored["error"].isna().all()  # logit(0) is not finite
    assert abs(scored["pit"].mean() - 0.4) < 0.02  # 40 of 50 draws tie with the observation: U(0, 0.8)


def test_backtest_end_to_end_and_cli(tiny_loss, tmp_path):
    data = from_frame(tiny_loss)
    settings = SamplerSettings(draws=60, tune=60, chains=1, seed=2, pointwise=False)
    result = backtest(data, holdout="largest-compute", fraction=0.3, settings=settings)
    s = result.summary
    assert s["n_points"] == len(result.points) == s["n_test_rows"]
    assert (result.points["distance"] > 0).all() and s["max_distance"] > 0
    assert {"q05", "q25", "q50", "q75", "q95", "pit", "covered90"} <= set(result.points.columns)
    assert (result.points["q05"] <= result.points["q95"]).all()

    path = tmp_path / "data.csv"
    tiny_loss.to_csv(path, index=False)
    runner = CliRunner()
    out_json, out_png = tmp_path / "bt.json", tmp_path / "bt.png"
    res = runner.invoke(app, ["backtest", str(path), "--holdout", "largest-params", "--draws", "40", "--tune",
                              "40", "--chains", "1", "--json", str(out_json), "--out", str(out_png)])
    assert res.exit_code == 0, res.output
    doc = json.loads(out_json.read_text())
    assert doc["summary"]["holdout"] == "largest-params" and len(doc["points"]) == doc["summary"]["n_points"]
    assert out_png.stat().st_size > 1000
    res = runner.invoke(app, ["backtest", str(path), "--json", str(out_json)])
    assert res.exit_code != 0  # refuses to overwrite without --force
