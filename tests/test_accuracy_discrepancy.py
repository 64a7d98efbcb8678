"""The accuracy route's discrepancy beyond the data: a new checkpoint's logit(mu) gets Normal(0, s x) at x e-folds
beyond the fitted checkpoints, s learned from held-out checkpoints inside the data, and the optimizer's bend.

Truths from elsewhere:
* the predictive spread of logit(mu) against its closed form sqrt(sd_ckpt^2 + (s x)^2);
* learning: held-out checkpoints simulated here, in plain numpy from the truth's coefficients (not through the
  route's code), once without a bend (learned scale 0) and once with a known logit bend b * x (learned scale
  clearly positive, of the order of b), x the e-folds computed here by hand;
* the bent accuracy optimizer against `bayes_t2.reference`'s brute force (its own numpy distance, the route's
  numpy shapes), on draws whose bend moves the optimum;
* the CLI: --discrepancy on the accuracy route is accepted by fit and backtest, a bad value exits 2.
"""

from __future__ import annotations

import json
from functools import lru_cache

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from typer.testing import CliRunner

from bayes_t2.backtest import learn_discrepancy, split_data
from bayes_t2.budget import Constraints, SplitBudget
from bayes_t2.cli import app, main
from bayes_t2.data import from_frame
from bayes_t2.fit import SamplerSettings
from bayes_t2.optimum import BEND_NAMES, OUTPUTS, optimize_array
from bayes_t2.reference import objective_at, reference_optimum
from bayes_t2.routes.accuracy import (DEFAULT_TRUTH, PYTHIA_PARAMS, PYTHIA_TOKENS, T2_COEFFICIENTS, AccuracyRoute,
                                      accuracy_shapes, neg_pass_at_k_bent_nb, neg_pass_at_k_nb, simulate_samples)
from test_bend import data_ranges, with_bend  # the bent populations' data ranges

TRUTH = DEFAULT_TRUTH["task_a"]
#: 9 sizes x the 5 later token counts (pass@1 well above zero for the larger models)
GRID = [(n, d) for n in PYTHIA_PARAMS for d in PYTHIA_TOKENS[4:]]
SETTINGS = SamplerSettings(draws=150, tune=150, chains=2, seed=3, pointwise=False)


def test_new_checkpoint_logit_mu_widens_by_the_scale():
    """logit(mu) of a new checkpoint at x e-folds beyond the data: sd sqrt(sd_mu^2 + (s x)^2) (closed form)."""
    n = 40000
    post = {name: np.full(n, TRUTH[name]) for name in T2_COEFFICIENTS}
    post.update(checkpoint_sd_mu=np.full(n, 0.1), checkpoint_sd_nu=np.full(n, 0.0),
                data_log_range=np.array([[15.0, 20.0], [18.0, 23.0], [np.log(6) + 33, np.log(6) + 43], [-2.0, 8.0]]))
    law = accuracy_shapes(post, np.exp(20.0), np.exp(23.0))
    law_logit = float(np.log(law[0][0] / law[1][0]))
    spec = {"discrepancy": {"scale": 0.4}}
    for x in (0.0, 1.0, 3.0):  # through the route's predictive metric: pass@1 = mu
        mu = AccuracyRoute.metric(post, np.exp(20.0 + x), np.exp(23.0), 1.0, rng=np.random.default_rng(1), spec=spec)
        spread = np.log(mu / (1.0 - mu))
        assert float(np.std(spread)) == pytest.approx(np.hypot(0.1, 0.4 * x), rel=0.03)
        if x == 0.0:
            assert float(np.median(spread)) == pytest.approx(law_logit, abs=0.01)
    a0, b0 = accuracy_shapes(post, np.exp(23.0), np.exp(23.0), rng=np.random.default_rng(1))  # no scale: no term
    assert float(np.std(np.log(a0 / b0))) == pytest.approx(0.1, rel=0.03)


# ------------------------------------------------------------------------------------------------ learning
def _hand_simulated(frame: pd.DataFrame, held: pd.Series, bend: float, train: pd.DataFrame, seed: int) -> pd.DataFrame:
    """`frame` with the held-out rows' counts drawn again, in numpy from the truth: p ~ Beta(mu nu, (1-mu) nu),
    logit mu = logit(f + (1 - f) sigmoid(theta1 + theta2 L)) + bend * x, log nu = theta3 + theta4 L, x the e-folds
    (N, D) lies beyond the training checkpoints in log N, log D, log 6ND or log D/N."""
    t = TRUTH
    rng = np.random.default_rng(seed)
    out = frame.copy()
    rows = out[held]
    N, D = rows["params"].to_numpy(float), rows["tokens"].to_numpy(float)
    L = t["E"] + t["A"] / N ** t["alpha"] + t["B"] / D ** t["beta"]
    f = 1.0 / (1.0 + np.exp(-t["logit_floor"]))
    mu = f + (1.0 - f) / (1.0 + np.exp(-(t["theta1"] + t["theta2"] * L)))
    x = np.zeros(len(rows))
    tn, td = train["params"].to_numpy(float), train["tokens"].to_numpy(float)
    for value, ref in ((N, tn), (D, td), (6 * N * D, 6 * tn * td), (D / N, td / tn)):
        x = np.maximum(x, np.maximum(np.log(value / ref.max()), np.log(ref.min() / value)))
    assert x.min() > 0.5  # every held-out checkpoint lies beyond the data
    logit_mu = np.log(mu / (1.0 - mu)) + bend * x
    mu = 1.0 / (1.0 + np.exp(-logit_mu))
    nu = np.exp(t["theta3"] + t["theta4"] * L)
    p = rng.beta(mu * nu, (1.0 - mu) * nu)
    out.loc[held, "n_correct"] = rng.binomial(rows["n_samples"].to_numpy(np.int64), p)
    return out


@lru_cache(maxsize=None)
def _learned(bend: float) -> dict:
    frame, _ = simulate_samples(5, n_tasks=1, checkpoints=GRID, n_problems=48, n_samples=64)
    frame = frame.drop(columns="model")
    split = split_data(from_frame(frame), "largest-params", 0.25)
    held = frame["params"] >= split.threshold
    data = from_frame(_hand_simulated(frame, held, bend, frame[~held], seed=9))
    # one fold: the training part is the same whatever the bend (same fit), only the held-out counts differ
    return learn_discrepancy(data, [("largest-params", 0.25)], settings=SETTINGS, seed=0)


def test_learned_scale_is_zero_without_a_bend():
    learned = _learned(0.0)
    assert learned["n_points"] >= 8 and learned["folds"][0]["max_rhat"] < 1.1
    assert learned["scale"] == 0.0


def test_learned_scale_finds_a_known_logit_bend():
    learned = _learned(1.0)
    assert 0.4 < learned["scale"] < 2.5  # a bend of 1 logit per e-fold


# ------------------------------------------------------------------------------------------------ optimizer
ROW = {name: i for i, name in enumerate(OUTPUTS)}


@lru_cache(maxsize=None)
def bent_population(n: int = 24, seed: int = 2) -> np.ndarray:
    """Accuracy-law draws around the default truths, a bend z*s of up to ~1 logit per e-fold either sign, and a
    data range narrow in N, so the params distance decides along a split budget."""
    rng = np.random.default_rng(seed)
    truths = list(DEFAULT_TRUTH.values())
    law = np.array([[truths[i % len(truths)][c] * (1 + 0.03 * rng.standard_normal()) if c != "logit_floor"
                     else truths[i % len(truths)][c] for c in T2_COEFFICIENTS] for i in range(n)])
    bend = rng.normal(0.0, 0.6, size=n)
    return with_bend(law, bend, data_ranges(rng, n, (1e9, 1e10), (3e10, 3e11), (4.0, 5.0, 9.0, 3.0, 3.0)))


def test_zero_bend_is_the_law():
    thetas = bent_population().copy()
    thetas[:, len(T2_COEFFICIENTS)] = 0.0
    for row in thetas[:6]:
        for N, D, k in ((1e8, 1e10, 1.0), (3e10, 1e12, 16.0)):
            assert neg_pass_at_k_bent_nb(row, N, D, k) == neg_pass_at_k_nb(row[:len(T2_COEFFICIENTS)].copy(), N, D, k)


@pytest.mark.parametrize("budget,con", [(SplitBudget(1e23, 1e12), Constraints(k_max=64)),
                                        (SplitBudget(3e23, 1e11), Constraints(k_max=1024))])
def test_bent_accuracy_optimizer_matches_brute_force(budget, con):
    thetas = bent_population()
    names = tuple(T2_COEFFICIENTS) + BEND_NAMES
    out = optimize_array(thetas, [budget], con, objective=neg_pass_at_k_bent_nb, theta_names=names)[:, :, 0]
    ref = reference_optimum("accuracy_bent", thetas, budget, con)
    assert np.all(np.isfinite(ref[:, 3]))
    value = objective_at("accuracy_bent", thetas, out[ROW["N"]], out[ROW["D"]], out[ROW["k"]])
    worse = value > ref[:, 3] + 1e-6 * np.abs(ref[:, 3])
    assert not worse.any(), f"draws {np.where(worse)[0]} worse than the brute force"
    # the check can fail: the unbent optimum scored on the bent objective loses on some of these draws
    plain = optimize_array(np.ascontiguousarray(thetas[:, :len(T2_COEFFICIENTS)]), [budget], con,
                           objective=neg_pass_at_k_nb, theta_names=T2_COEFFICIENTS)[:, :, 0]
    plain_value = objective_at("accuracy_bent", thetas, plain[ROW["N"]], plain[ROW["D"]], plain[ROW["k"]])
    assert (plain_value > ref[:, 3] + 1e-4 * np.abs(ref[:, 3])).sum() >= 2


def test_bent_fit_and_route_metric_agree():
    """A fit's bent view (z per draw) scores the law through `AccuracyRoute.metric` with the same shift of
    logit mu that the numba objective applies: the two agree at a design beyond the data."""
    thetas = bent_population()[:5].copy()
    thetas[:, len(T2_COEFFICIENTS) + 1:] = thetas[0, len(T2_COEFFICIENTS) + 1:]  # one data range, as in a fit
    names = tuple(T2_COEFFICIENTS) + BEND_NAMES
    coefs = xr.Dataset({name: (("draw",), thetas[:, j]) for j, name in enumerate(names)})
    from bayes_t2.optimum import BentRoute

    N, D, k = 5e10, 2e12, 8.0
    metric = BentRoute(AccuracyRoute).metric(coefs, N, D, k).values
    direct = np.array([-np.expm1(neg_pass_at_k_bent_nb(row, N, D, k)) for row in thetas])
    np.testing.assert_allclose(metric, direct, rtol=1e-9)


# ------------------------------------------------------------------------------------------------ command line
@pytest.fixture(scope="module")
def samples_csv(tmp_path_factory):
    frame, _ = simulate_samples(1, n_tasks=1, checkpoints=[(n, d) for n in PYTHIA_PARAMS[::2] for d in PYTHIA_TOKENS[3::2]],
                                n_problems=16, n_samples=32)
    path = tmp_path_factory.mktemp("acc") / "samples.csv"
    frame.to_csv(path, index=False)
    return path


def test_cli_fit_and_backtest_take_a_discrepancy_on_the_accuracy_route(samples_csv, tmp_path, capsys):
    runner = CliRunner()
    tiny = ["--draws", "30", "--tune", "30", "--chains", "1"]
    res = runner.invoke(app, ["fit", str(samples_csv), "--out", str(tmp_path / "f.nc"), *tiny, "--discrepancy", "0.2"])
    assert res.exit_code == 0, res.output
    assert "discrepancy: sd 0.2 of logit of the mean success per e-fold beyond the data (given)" in \
        " ".join(res.output.split())
    res = runner.invoke(app, ["fit", str(samples_csv), "--out", str(tmp_path / "d.nc"), *tiny])  # the model file's 0
    assert res.exit_code == 0, res.output
    assert "discrepancy: sd 0 of logit of the mean success per e-fold beyond the data (from the model file" in \
        " ".join(res.output.split())
    # the same posterior and checkpoint deviations (the discrepancy acts at prediction time only, drawn after
    # them): a new checkpoint x = log(1e12 / 12e9) e-folds beyond the largest model differs in logit(pass@1) =
    # logit(mu) by Normal(0, 0.2 x) per draw
    from bayes_t2.api import load

    def logit_pass1(path):
        p = load(path).predict(params=1e12, tokens=3e11, k=1)["pass_at_k"].values.ravel()
        return np.log(p) - np.log1p(-p)

    diff = logit_pass1(tmp_path / "f.nc") - logit_pass1(tmp_path / "d.nc")
    assert float(np.std(diff)) == pytest.approx(0.2 * np.log(1e12 / 12e9), rel=0.4)  # 30 draws
    out_json = tmp_path / "bt.json"
    res = runner.invoke(app, ["backtest", str(samples_csv), *tiny, "--discrepancy", "0.3", "--json", str(out_json)])
    assert res.exit_code == 0, res.output
    doc = json.loads(out_json.read_text())
    assert doc["summary"]["discrepancy"] == {"scale": 0.3, "by_task": {}} and doc["summary"]["model_spec"]["discrepancy"]["scale"] == 0.3
    for command in (["fit", str(samples_csv), "--out", str(tmp_path / "g.nc")], ["backtest", str(samples_csv)]):
        with pytest.raises(SystemExit) as exc:
            main([*command, "--discrepancy", "lots"])
        err = capsys.readouterr().err.strip()
        assert exc.value.code == 2 and "--discrepancy" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "g.nc").exists()


def test_bent_accuracy_fit_optimizes_on_the_bent_law(accuracy_truth_fit):
    """A fit with a scale is bent (`bent_fit`: the accuracy bent objective, z per draw); the optimum's metric
    interval widens against the same draws with z = 0, and with scale 0 nothing is bent."""
    import copy
    import warnings

    from bayes_t2.optimum import BentRoute, bent_fit

    fit = accuracy_truth_fit[2]
    assert bent_fit(fit, seed=0) is fit  # the model file's scale 0
    bent = copy.copy(fit)
    bent.spec = {**fit.spec, "discrepancy": {"scale": 0.3}}
    view = bent_fit(bent, seed=1)
    assert isinstance(view.route, BentRoute) and view.route.objective_nb is neg_pass_at_k_bent_nb
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt = bent.optimize([SplitBudget(1e22, 1e10)], Constraints(k_max=64), seed=1)
    assert opt.attrs["discrepancy_scale"] == 0.3 and float(opt["extrapolation_efolds"].min()) > 0
    m, m0 = opt["metric"].isel(budget=0), opt["metric_no_discrepancy"].isel(budget=0)
    width = lambda x: float(x.quantile(0.95) - x.quantile(0.05))  # noqa: E731
    assert width(m) > width(m0)
