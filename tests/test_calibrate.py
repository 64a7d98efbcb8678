"""Simulation-based calibration: the scoring against hand-made cases, the coverage flags on a conjugate model
with known calibrated and over-confident posteriors, and a tiny end-to-end run of the real pipeline."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pymc as pm
import pytest
import xarray as xr

from bayes_t2.budget import Constraints
from bayes_t2.calibrate import (DEFAULT_BUDGET, N_RANK, CalibrationDesign, _CompiledSampler, _observations, calibrate,
                                coverage_summary, design_from_data, pad_cells, rank_covered, score,
                                truth_coefficients, wilson, write_outputs)
from bayes_t2.data import from_frame
from bayes_t2.errors import InputError
from bayes_t2.fit import SamplerSettings, get_route, route_optimum
from bayes_t2.routes.accuracy import build_accuracy_model
from bayes_t2.simulate import (ACC_K_RANGE, accuracy_truth_ok, draw_accuracy_truth, simulate_accuracy_population,
                               simulate_loss)


def _draws(values: np.ndarray, quantities=("q",), tasks=("t",)) -> xr.DataArray:
    return xr.DataArray(values.reshape(len(values), len(quantities), len(tasks)), dims=("sample", "quantity", "task"),
                        coords={"quantity": list(quantities), "task": list(tasks)})


def test_score_counts_coverage_and_rank_against_hand_made_case():
    draws = np.arange(1001, dtype=float)  # 0..1000: quantiles are exact
    truth = xr.DataArray([[100.5, 240.5, 500.5, 2000.0]], dims=("task", "quantity"),
                         coords={"task": ["t"], "quantity": ["a", "b", "c", "d"]})
    d = xr.DataArray(np.repeat(draws[:, None, None], 4, axis=1), dims=("sample", "quantity", "task"),
                     coords={"quantity": ["a", "b", "c", "d"], "task": ["t"]})
    s = score(d, truth, np.random.default_rng(0)).sel(task="t")
    # 90% interval [50, 950]; 50% interval [250, 750]
    assert float(s["lower_90"].sel(quantity="a")) == pytest.approx(50) and float(s["upper_50"].sel(quantity="a")) == pytest.approx(750)
    assert s["covered_90"].values.tolist() == [1, 1, 1, 0]
    assert s["covered_50"].values.tolist() == [0, 0, 1, 0]
    # thinned draws: 99 evenly spaced points of 0..1000 -> rank = number below the truth
    thin = draws[np.linspace(0, 1000, N_RANK).round().astype(int)]
    assert s["rank"].values.tolist() == [np.sum(thin < v) for v in (100.5, 240.5, 500.5, 2000)]
    assert s["rank"].sel(quantity="d") == N_RANK


def test_rank_ties_of_a_discrete_quantity_are_randomised_within_range():
    n = 300  # k* = 3 in every draw and the truth 3, in n cells
    d = xr.DataArray(np.full((400, 1, n), 3.0), dims=("sample", "quantity", "task"),
                     coords={"quantity": ["q"], "task": np.arange(n)})
    truth = xr.DataArray(np.full((1, n), 3.0), dims=("quantity", "task"), coords={"quantity": ["q"],
                                                                                   "task": np.arange(n)})
    ranks = score(d, truth, np.random.default_rng(0))["rank"].values
    assert ranks.min() >= 0 and ranks.max() <= N_RANK
    assert 0.4 < ranks.mean() / N_RANK < 0.6  # uniform over 0..n_rank, not always 0 or n_rank
    # the inclusive interval always holds a tied truth; judged by rank the coverage is nominal
    assert 0.84 < rank_covered(ranks, N_RANK, 0.9).mean() < 0.96
    assert rank_covered(np.arange(N_RANK + 1.0), N_RANK, 0.9).mean() == pytest.approx(0.9)
    assert rank_covered(np.arange(N_RANK + 1.0), N_RANK, 0.5).mean() == pytest.approx(0.5)


def _conjugate_scores(n_rep: int, sd_factor: float, seed: int) -> xr.Dataset:
    """theta ~ N(0, 1), y ~ N(theta, 1): the posterior is N(y/2, 1/2); sd_factor < 1 makes it over-confident.
    The replicates sit on the task dim (coverage_summary pools every cell of a quantity)."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=n_rep)
    y = theta + rng.normal(size=n_rep)
    post = y / 2 + sd_factor * np.sqrt(0.5) * rng.standard_normal((1000, n_rep))
    draws = xr.DataArray(post[:, None, :], dims=("sample", "quantity", "task"),
                         coords={"quantity": ["theta"], "task": np.arange(n_rep)})
    truth = xr.DataArray(theta[None, :], dims=("quantity", "task"),
                         coords={"quantity": ["theta"], "task": np.arange(n_rep)})
    return score(draws, truth, rng)


def test_flags_an_over_confident_posterior_and_not_a_calibrated_one():
    """Conjugate normal model: the exact posterior covers nominally (both measures), a posterior 0.6x too
    narrow is flagged on the primary (rank) measure."""
    good = coverage_summary(_conjugate_scores(600, 1.0, seed=1))["theta"]
    bad = coverage_summary(_conjugate_scores(600, 0.6, seed=1))["theta"]
    for p in ("50", "90"):
        assert good[f"coverage_{p}"]["wilson_lower"] <= int(p) / 100 <= good[f"coverage_{p}"]["wilson_upper"]
        assert good[f"coverage_{p}"]["measure"] == "rank" and good[f"inclusive_{p}"]["measure"] != "rank"
        # continuous quantity: the two measures agree up to the thinning of the ranks
        assert abs(good[f"coverage_{p}"]["coverage"] - good[f"inclusive_{p}"]["coverage"]) < 0.05
    assert good["flagged"] == []
    assert bad["coverage_90"]["wilson_upper"] < 0.9 and any("90%" in f for f in bad["flagged"])


def test_discrete_posterior_is_nominal_by_rank_and_conservative_inclusive():
    """k ~ Uniform{1..6}, y ~ N(k, 0.7): exact posterior draws of a discrete quantity, as k* (and N* = C/(2k*))
    are. The inclusive 90% interval covers well above 90%, the randomised rank measure covers 90%, and the
    primary measure is the one the flags judge."""
    rng = np.random.default_rng(3)
    n_rep, support = 800, np.arange(1, 7)
    k = rng.choice(support, size=n_rep)
    y = k + 0.7 * rng.standard_normal(n_rep)
    logp = -0.5 * ((y[:, None] - support[None, :]) / 0.7) ** 2
    prob = np.exp(logp - logp.max(axis=1, keepdims=True))
    prob /= prob.sum(axis=1, keepdims=True)
    post = np.stack([rng.choice(support, size=1000, p=pr) for pr in prob], axis=1).astype(float)
    draws = xr.DataArray(post[:, None, :], dims=("sample", "quantity", "task"),
                         coords={"quantity": ["k"], "task": np.arange(n_rep)})
    truth = xr.DataArray(k[None, :].astype(float), dims=("quantity", "task"),
                         coords={"quantity": ["k"], "task": np.arange(n_rep)})
    rec = coverage_summary(score(draws, truth, rng))["k"]
    for p in ("50", "90"):
        primary, inclusive = rec[f"coverage_{p}"], rec[f"inclusive_{p}"]
        assert primary["wilson_lower"] <= int(p) / 100 <= primary["wilson_upper"]
        assert inclusive["wilson_lower"] > int(p) / 100  # conservative, and it would have been mis-flagged
    assert rec["flagged"] == []


def test_wilson_interval_closed_form():
    lo, hi = wilson(0, 20)
    assert lo == 0 and hi == pytest.approx(1.96 ** 2 / (20 + 1.96 ** 2))
    a, b = wilson(7, 30)
    c, d = wilson(23, 30)
    assert (a, b) == pytest.approx((1 - d, 1 - c))
    assert a < 7 / 30 < b


def test_truth_with_k_one_only_folds_the_k_term_into_e():
    truth = {"tasks": {"t": {"E": 0.3, "A": 100.0, "alpha": 0.3, "B": 200.0, "beta": 0.3, "G": 0.5, "gamma": 0.4}}}
    route = get_route("loss")
    c = truth_coefficients(truth, route, ks=(1,))
    assert c["E"].item() == pytest.approx(0.8) and c["G"].item() == 0 and c["gamma"].item() == 1
    assert truth_coefficients(truth, route, ks=(1, 4))["E"].item() == pytest.approx(0.3)


def test_simulate_on_a_given_design_keeps_its_checkpoints():
    ckpt = pd.DataFrame({"params": [1e7, 1e8, 1e8, 5e8], "tokens": [1e9, 2e9, 2e9, 1e10]})
    frame, truth = simulate_loss(seed=4, n_tasks=2, ks=(1, 8), checkpoints=ckpt)
    got = frame[["params", "tokens"]].drop_duplicates().sort_values(["params", "tokens"]).to_numpy()
    assert got.tolist() == [[1e7, 1e9], [1e8, 2e9], [5e8, 1e10]]
    assert len(frame) == 3 * 2 * 2 and len(truth["tasks"]) == 2


def test_swap_check_refuses_a_model_with_baked_in_data():
    """A model that bakes a data summary into a constant cannot be re-used with swapped data: caught."""
    def build(y, baked):
        with pm.Model() as m:
            obs = pm.Data("y", y)
            mu = pm.Normal("mu", 0, 1)
            pm.Normal("obs", mu + (float(np.mean(y)) if baked else 0.0), 1, observed=obs)
        return m

    y1, y2 = np.array([0.1, 0.2, 0.3]), np.array([1.0, 2.0, 4.0])
    for baked, ok in ((False, True), (True, False)):
        sampler = _CompiledSampler(get_route("loss"), {}, SamplerSettings())
        sampler.reference = build(y1, baked)
        new = build(y2, baked)
        if ok:
            sampler._check_swap(new, {"y": y2})
            assert sampler.checked
        else:
            with pytest.raises(RuntimeError, match="data-dependent constants"):
                sampler._check_swap(new, {"y": y2})


def test_calibrate_end_to_end_tiny(tmp_path, monkeypatch):
    """Two replicates of the real pipeline (compiled once, data swapped in): shapes, ranges, files. The truth is
    the law's metric at its optimum, so the posterior side is the law's metric too, not a new run's (which adds
    noise the truth does not carry: the metric's 90% intervals then held the truth in 100% of 450 cells)."""
    from bayes_t2.fit import Fit

    laws = []
    optimize = Fit.optimize

    def spy(self, *args, **kwargs):
        laws.append(kwargs.get("law", False))
        return optimize(self, *args, **kwargs)

    monkeypatch.setattr(Fit, "optimize", spy)
    frame, _ = simulate_loss(seed=7, n_tasks=2, budgets=np.geomspace(1.25e16, 2.56e19, 4), sizes_per_budget=4,
                             n_overtrained=2)
    design = CalibrationDesign("loss", frame[["params", "tokens"]], ks=(1, 16), n_tasks=2)
    scores = calibrate(design, n_sims=2, seed=3, settings=SamplerSettings(draws=100, tune=150, chains=2))
    assert dict(scores.sizes) == {"replicate": 2, "quantity": 11, "task": 2}
    assert laws == [True, True]
    assert set(scores["quantity"].values) >= {"E", "alpha", "G", "N", "D", "k", "metric"}
    ranks = scores["rank"].values
    assert np.all(np.isfinite(ranks)) and ranks.min() >= 0 and ranks.max() <= N_RANK
    for p in ("50", "90"):
        covered = scores[f"covered_{p}"].values
        assert set(np.unique(covered)) <= {0.0, 1.0}
        inside = (scores[f"lower_{p}"] <= scores["truth"]) & (scores["truth"] <= scores[f"upper_{p}"])
        assert np.array_equal(covered.astype(bool), inside.values)
    assert np.all(np.isfinite(scores["max_rhat"].values))
    paths = write_outputs(scores, tmp_path)
    summ = json.loads(paths["json"].read_text())
    assert summ["n_replicates"] == 2 and set(summ["coverage_measures"]) == {"coverage_<p>", "inclusive_<p>"}
    for rec in summ["quantities"].values():
        for key in ("coverage_90", "inclusive_90"):
            assert 0 <= rec[key]["coverage"] <= 1 and rec[key]["n"] == 4
    assert paths["png"].stat().st_size > 0 and paths["pdf"].stat().st_size > 0


# ------------------------------------------------------------------------------------------- accuracy route
#: A tiny accuracy design: 3 sizes x 3 token counts of the Pythia-like grid, 2 tasks, 24 problems x 64 samples.
TINY_ACCURACY = pd.DataFrame([(n, d) for n in (14e6, 410e6, 6.9e9) for d in (2_097_152.0 * 32, 2_097_152.0 * 10_000,
                                                                              2_097_152.0 * 143_000)],
                             columns=["params", "tokens"])


def test_pad_cells_splits_problems_and_keeps_the_log_density():
    """Padding to a fixed cell count keeps every (cell value -> problems) total and the model's log density."""
    design = CalibrationDesign("accuracy", TINY_ACCURACY, ks=(64,), n_tasks=2, n_problems=24)
    cells, _ = _observations(design, 5)
    target = len(cells) + 37
    padded = pad_cells(cells, target)
    keys = ["task", "params", "tokens", "n_samples", "n_correct"]
    assert len(padded) == target and padded["weight"].min() >= 1
    pd.testing.assert_series_equal(cells.groupby(keys)["weight"].sum(), padded.groupby(keys)["weight"].sum())
    assert pad_cells(cells, len(cells)).equals(cells)
    with pytest.raises(InputError, match="cannot pad"):
        pad_cells(cells, int(cells["weight"].sum()) + 1)
    with pytest.raises(InputError, match="cannot pad"):
        pad_cells(cells, len(cells) - 1)
    m1, m2 = (build_accuracy_model(c) for c in (cells, padded))
    point = m1.initial_point(0)
    point = {k: v + 0.1 for k, v in point.items()}  # not the prior centre
    logp = [float(m.compile_logp(mode="NUMBA")(point)) for m in (m1, m2)]
    assert logp[0] == pytest.approx(logp[1], rel=1e-12)


def test_accuracy_population_is_seeded_plausible_and_interior():
    ckpt = TINY_ACCURACY.to_numpy(float)
    a, b = (draw_accuracy_truth(np.random.default_rng(3), 4, ckpt) for _ in range(2))
    assert a == b and len(a) == 4
    route = get_route("accuracy")
    for coefs in a.values():
        assert accuracy_truth_ok(coefs, ckpt)
        assert coefs["theta2"] < 0 and coefs["checkpoint_sd_mu"] > 0
        ds = xr.Dataset({c: (("draw",), [coefs[c]]) for c in route.coefficient_names}, coords={"draw": [0]})
        k = float(route_optimum(route, ds, [DEFAULT_BUDGET], Constraints())["k"].item())
        assert ACC_K_RANGE[0] <= k <= ACC_K_RANGE[1]
    frame, truth = simulate_accuracy_population(9, ckpt, n_tasks=2, n_problems=24, n_samples=(32, 64))
    assert len(frame) == 2 * len(ckpt) * 24 and set(frame["n_samples"]) == {32, 64}
    assert (frame["n_correct"] <= frame["n_samples"]).all() and truth["tasks"].keys() == {"task_a", "task_b"}
    heavy, heavy_truth = simulate_accuracy_population(9, ckpt, n_tasks=2, n_problems=24, n_samples=(32, 64),
                                                      deviation_nu=4.0)
    assert heavy_truth["tasks"] == truth["tasks"] and heavy_truth["deviation_nu"] == 4.0 and truth["deviation_nu"] is None
    assert not heavy["n_correct"].equals(frame["n_correct"])  # same truth, Student-t deviations


def test_accuracy_truth_is_scored_in_the_fits_normalisation():
    """The standardised truth (E = 0) is the same law: same pass@k everywhere, same optimum."""
    ckpt = TINY_ACCURACY.to_numpy(float)
    truth = {"tasks": draw_accuracy_truth(np.random.default_rng(8), 2, ckpt)}
    route = get_route("accuracy")
    ref = (3e8, 4e10)
    std = truth_coefficients(truth, route, ks=(64,), reference=ref)
    assert np.all(std["E"].values == 0)
    raw = xr.Dataset({c: (("draw", "task"), [[truth["tasks"][t][c] for t in sorted(truth["tasks"])]])
                      for c in route.coefficient_names}, coords={"draw": [0], "task": sorted(truth["tasks"])})
    assert not np.allclose(raw["theta1"].values, std["theta1"].values)  # a different normalisation ...
    N, D = np.geomspace(1e7, 1e10, 5), np.geomspace(1e8, 1e12, 5)
    for k in (1.0, 16.0):  # ... of the same law
        np.testing.assert_allclose(route.metric(std.isel(draw=0), N, D, k), route.metric(raw.isel(draw=0), N, D, k),
                                   rtol=1e-9)
    opt = [route_optimum(route, c, [DEFAULT_BUDGET], Constraints()) for c in (std, raw)]
    for q in ("N", "D", "k"):
        np.testing.assert_allclose(opt[0][q].values, opt[1][q].values, rtol=1e-9)
    with pytest.raises(ValueError):
        truth_coefficients(truth, route, ks=(64,))


def test_accuracy_design_from_samples_data():
    frame, _ = simulate_accuracy_population(2, TINY_ACCURACY.to_numpy(float), n_tasks=2, n_problems=24,
                                            n_samples=(32, 64))
    design = design_from_data(from_frame(frame), route="accuracy")
    assert (design.n_tasks, design.n_problems, design.ks) == (2, 24, (32, 64))
    assert len(design.checkpoints) == len(TINY_ACCURACY)
    with pytest.raises(InputError, match="samples data"):
        design_from_data(from_frame(simulate_loss(seed=1, n_tasks=1)[0]), route="accuracy")


def test_calibrate_accuracy_end_to_end_tiny():
    """Two replicates of the accuracy pipeline, padded to one cell count and compiled once: the swap check
    passes, the pinned E is not scored, ranks and intervals are well formed, and N* = C_inf / (2 k* T)."""
    design = CalibrationDesign("accuracy", TINY_ACCURACY, ks=(64,), n_tasks=2, n_problems=24)
    scores = calibrate(design, n_sims=2, seed=3, settings=SamplerSettings(draws=100, tune=150, chains=2))
    quantities = list(scores["quantity"].values)
    assert "E" not in quantities
    assert set(quantities) == {"theta1", "theta2", "theta3", "theta4", "A", "alpha", "B", "beta", "logit_floor",
                               "N", "D", "k", "metric"}
    ranks = scores["rank"].values
    assert np.all(np.isfinite(ranks)) and ranks.min() >= 0 and ranks.max() <= N_RANK
    truth = scores["truth"]
    np.testing.assert_allclose(truth.sel(quantity="N") * truth.sel(quantity="k") * 2, 2e9, rtol=1e-9)
    # the true metric is pass@k of the truth's own law at the true design, recomputed here from the scored
    # coefficients (E = 0 in the fit's normalisation) with scipy's betaln, and no design on a dense grid of the
    # budget does better (the truth is the reference solver's optimum, independent of the optimizer)
    from scipy.special import betaln

    from bayes_t2.routes.accuracy import accuracy_shapes

    flat = truth.stack(case=[d for d in truth.dims if d != "quantity"])
    for j in range(flat.sizes["case"]):
        t = flat.isel(case=j)
        coefs = {c: float(t.sel(quantity=c)) for c in ("theta1", "theta2", "theta3", "theta4", "A", "alpha", "B",
                                                         "beta", "logit_floor")}
        coefs["E"] = 0.0
        N, k = float(t.sel(quantity="N")), float(t.sel(quantity="k"))
        a, b = accuracy_shapes(coefs, N, 2.56e19 / (6 * N))
        assert float(t.sel(quantity="metric")) == pytest.approx(-np.expm1(betaln(a, b + k) - betaln(a, b)), rel=1e-8)
        Ns = 1e9 / np.arange(1.0, 1001.0)  # every segment end of the T2 budget (min_params 1e6)
        a, b = accuracy_shapes(coefs, Ns, 2.56e19 / (6 * Ns))
        grid = -np.expm1(betaln(a, b + np.arange(1.0, 1001.0)) - betaln(a, b))
        assert float(t.sel(quantity="metric")) >= grid.max() * (1 - 1e-9)
    assert np.all(scores["lower_90"] <= scores["upper_90"]) and np.all(np.isfinite(scores["max_rhat"].values))


def test_identification_notes_a_quantity_the_data_do_not_inform():
    """Posterior = the N(0, 1) prior while truths come from a population 10x narrower: intervals ~10x the
    truths' range, coverage ~100%: noted as not informed. The exact conjugate posterior is not noted."""
    rng = np.random.default_rng(4)
    n = 400
    theta = 0.1 * rng.standard_normal(n)
    draws = xr.DataArray(rng.standard_normal((1000, 1, n)), dims=("sample", "quantity", "task"),
                         coords={"quantity": ["theta"], "task": np.arange(n)})
    truth = xr.DataArray(theta[None, :], dims=("quantity", "task"), coords={"quantity": ["theta"], "task": np.arange(n)})
    rec = coverage_summary(score(draws, truth, rng))["theta"]
    assert rec["identification"]["ratio"] > 5 and "hardly informed" in rec["note"]
    assert rec["coverage_90"]["coverage"] > 0.97
    good = coverage_summary(_conjugate_scores(600, 1.0, seed=1))["theta"]
    assert good["identification"]["ratio"] < 1 and good["note"] == ""
