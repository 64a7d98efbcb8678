"""The accuracy route (bayes_t2.routes.accuracy): parameterisation, likelihood, objective, recovery."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import pytest

from bayes_t2.errors import InputError
from bayes_t2.passk import beta_binomial_logpmf, beta_pass_at_k, log1m_beta_pass_at_k, unbiased_pass_at_k
from bayes_t2.routes.accuracy import (
    PYTHIA_PARAMS,
    PYTHIA_TOKENS,
    SAMPLED,
    AccuracyRoute,
    accuracy_config,
    accuracy_pass_at_k,
    accuracy_shapes,
    build_accuracy_model,
    collapse_samples,
    neg_pass_at_k_nb,
    pack_theta,
    reference_point,
    simulate_samples,
    standardize_coefficients,
    theta_names,
)

from conftest import SMALL_GRID
TRUTH_A = {"theta1": 4.4, "theta2": -2.5, "theta3": 0.0, "theta4": 0.3,
           "E": 1.69, "A": 406.4, "alpha": 0.34, "B": 410.7, "beta": 0.28, "logit_floor": -16.0}


# ------------------------------------------------------------------------------------ data and simulation
def test_simulate_samples_is_reproducible_and_valid():
    df, truth = simulate_samples(7, n_tasks=2, checkpoints=SMALL_GRID, n_problems=16, n_samples=[64, 256])
    again, _ = simulate_samples(7, n_tasks=2, checkpoints=SMALL_GRID, n_problems=16, n_samples=[64, 256])
    pd.testing.assert_frame_equal(df, again)
    assert list(df.columns) == ["task", "model", "params", "tokens", "problem", "n_samples", "n_correct"]
    assert len(df) == 2 * len(SMALL_GRID) * 16
    assert set(df["n_samples"]) == {64, 256}
    assert ((df["n_correct"] >= 0) & (df["n_correct"] <= df["n_samples"])).all()
    assert truth["route"] == "accuracy" and truth["seed"] == 7 and len(truth["tasks"]) == 2
    for coefs in truth["tasks"].values():
        assert set(theta_names) <= set(coefs)


def test_simulated_counts_follow_the_law():
    """The unbiased pass@k of simulated counts, averaged over problems, matches the Beta law's pass@k."""
    ckpt = [(1e9, 2e10), (12e9, 3e11)]
    df, truth = simulate_samples(0, n_tasks=1, checkpoints=ckpt, n_problems=4000, n_samples=1000)
    coefs = truth["tasks"]["task_a"]
    for (N, D), g in df.groupby(["params", "tokens"]):
        for k in (1, 10, 100):
            emp = np.mean(unbiased_pass_at_k(g["n_samples"], g["n_correct"], k))
            a, b = accuracy_shapes(coefs, N, D)
            assert emp == pytest.approx(float(beta_pass_at_k(a, b, k)), rel=0.08, abs=0.005)


def test_collapse_cells_are_sufficient_statistics():
    df, _ = simulate_samples(3, n_tasks=2, checkpoints=SMALL_GRID, n_problems=32, n_samples=128)
    cells = collapse_samples(df)
    assert list(cells.columns) == ["task", "params", "tokens", "n_samples", "n_correct", "weight"]
    assert cells["weight"].sum() == len(df) and len(cells) < len(df)
    a, b = 0.3, 4.0
    per_row = beta_binomial_logpmf(df["n_correct"], df["n_samples"], a, b).sum()
    per_cell = (cells["weight"] * beta_binomial_logpmf(cells["n_correct"], cells["n_samples"], a, b)).sum()
    assert per_cell == pytest.approx(per_row, rel=1e-12)
    try:  # the same cells as the data module's collapse, where it exists
        from bayes_t2.data import from_frame
    except ImportError:  # pragma: no cover
        return
    theirs = from_frame(df).collapse_counts()
    theirs["task"] = theirs["task"].astype(str)
    pd.testing.assert_frame_equal(cells, theirs, check_dtype=False)


# ---------------------------------------------------------------------------------------- parameterisation
def test_standardisation_removes_the_exact_confounds():
    """E and the scale of L trade off exactly with theta1..theta4: all such sets map to one standardised set
    and give identical Beta shapes."""
    N0, D0 = 3e8, 1e9
    N = np.geomspace(1e7, 1e11, 7)[:, None]
    D = np.geomspace(1e6, 1e12, 9)[None, :]
    base = standardize_coefficients(TRUTH_A, N0, D0)
    a0, b0 = accuracy_shapes(TRUTH_A, N, D)
    for e_shift, scale in [(0.7, 1.0), (-1.0, 3.0), (0.0, 0.2)]:
        c = dict(TRUTH_A)
        c["E"] = scale * (c["E"] + e_shift)
        c["A"], c["B"] = scale * c["A"], scale * c["B"]
        c["theta2"], c["theta4"] = c["theta2"] / scale, c["theta4"] / scale
        c["theta1"] = TRUTH_A["theta1"] - TRUTH_A["theta2"] * e_shift
        c["theta3"] = TRUTH_A["theta3"] - TRUTH_A["theta4"] * e_shift
        a, b = accuracy_shapes(c, N, D)
        np.testing.assert_allclose(a, a0, rtol=1e-10)
        np.testing.assert_allclose(b, b0, rtol=1e-10)
        std = standardize_coefficients(c, N0, D0)
        for name in ("logit_mu_ref", "slope_mu", "log_nu_ref", "slope_nu", "w", "theta1", "theta2", "A", "B"):
            assert std[name] == pytest.approx(base[name], rel=1e-10, abs=1e-12)
    # the standardised T2 set (E = 0) is the same law
    std_t2 = {k: base[k] for k in theta_names}
    assert std_t2["E"] == 0.0
    a, b = accuracy_shapes(std_t2, N, D)
    np.testing.assert_allclose(a, a0, rtol=1e-10)
    np.testing.assert_allclose(b, b0, rtol=1e-10)


def test_numba_objective_matches_numpy_prediction():
    theta = np.array([TRUTH_A[k] for k in theta_names])
    for N, D, k in [(1e8, 1e9, 1.0), (7e9, 3e11, 100.0), (1.4e7, 2e6, 10.0), (2.8e9, 6e10, 1e6), (1e9, 2e10, 3.5)]:
        a, b = accuracy_shapes(TRUTH_A, N, D)
        expected = float(log1m_beta_pass_at_k(a, b, k))
        assert neg_pass_at_k_nb(theta, N, D, k) == pytest.approx(expected, rel=1e-12)
        assert -math.expm1(neg_pass_at_k_nb(theta, N, D, k)) == pytest.approx(
            float(accuracy_pass_at_k(TRUTH_A, N, D, k)), rel=1e-12)
    # lower is better: more parameters, tokens or samples never hurt under this truth
    assert neg_pass_at_k_nb(theta, 1e10, 1e11, 10.0) < neg_pass_at_k_nb(theta, 1e9, 1e11, 10.0)
    assert neg_pass_at_k_nb(theta, 1e9, 1e11, 100.0) < neg_pass_at_k_nb(theta, 1e9, 1e11, 10.0)
    assert AccuracyRoute.objective_nb is neg_pass_at_k_nb and AccuracyRoute.theta_names == theta_names


def test_chance_floor_is_f_plus_rest_times_law():
    """mu = f + (1 - f) sigmoid(law) in the numpy, numba and PyTensor forms, down to mu ~ 1e-30 and up to ~1."""
    import pytensor
    import pytensor.tensor as pt

    from bayes_t2.routes.accuracy.kernels import PT, floored_logit, floored_logit_nb

    x, fl = pt.dscalar("x"), pt.dscalar("fl")
    f_pt = pytensor.function([x, fl], floored_logit(x, fl, PT))
    for law in (-70.0, -30.0, -16.0, -3.0, 0.0, 4.0, 20.0):
        for floor in (-60.0, -16.0, -1.1):
            f, s = 1 / (1 + math.exp(-floor)), 1 / (1 + math.exp(-law))
            log_one_minus = -math.log1p(math.exp(floor)) - math.log1p(math.exp(law))  # log((1 - f)(1 - s))
            want = math.log(f + (1 - f) * s) - log_one_minus
            for got in (floored_logit(law, floor), floored_logit_nb(law, floor), f_pt(law, floor)):
                assert float(got) == pytest.approx(want, rel=1e-9, abs=1e-9)
    # the floor lifts the earliest checkpoint of TRUTH_A (law mu ~ 1e-9) to ~sigmoid(-16), leaves later ones
    no_floor = {k: v for k, v in TRUTH_A.items() if k != "logit_floor"}
    a, b = accuracy_shapes(TRUTH_A, 1.4e7, 2.1e6)
    a0, b0 = accuracy_shapes(no_floor, 1.4e7, 2.1e6)
    assert a0 / (a0 + b0) < 1e-8 and a / (a + b) == pytest.approx(1 / (1 + math.exp(16)), rel=0.02)
    a, b = accuracy_shapes(TRUTH_A, 1.4e9, 3e11)
    a0, b0 = accuracy_shapes(no_floor, 1.4e9, 3e11)
    assert a == pytest.approx(a0, rel=1e-6) and b == pytest.approx(b0, rel=1e-6)


def test_pack_theta_order():
    arrays = {name: np.full((2, 3, 4), float(i)) for i, name in enumerate(theta_names)}
    packed = pack_theta(arrays)
    assert packed.shape == (2, 3, 4, len(theta_names)) and packed.flags.c_contiguous
    np.testing.assert_array_equal(packed[0, 0, 0], np.arange(len(theta_names), dtype=float))


def test_config_merging_and_validation():
    spec = accuracy_config({"priors": {"log_alpha": {"scale": 0.3}}, "pooling": {"centered": False}})
    assert spec["priors"]["log_alpha"]["scale"] == 0.3
    assert spec["priors"]["log_alpha"]["loc"] == accuracy_config()["priors"]["log_alpha"]["loc"]
    assert spec["pooling"]["centered"] is False
    assert accuracy_config()["priors"]["log_alpha"]["scale"] == 0.6  # defaults untouched
    with pytest.raises(InputError, match="unknown setting 'priors.alfa'"):
        accuracy_config({"priors": {"alfa": {"scale": 1.0}}})
    with pytest.raises(InputError, match="must be > 0"):
        accuracy_config({"priors": {"log_alpha": {"scale": -1.0}}})
    with pytest.raises(InputError, match="must be a number"):
        accuracy_config({"priors": {"log_alpha": {"scale": "wide"}}})
    with pytest.raises(InputError, match="route 'loss'"):
        accuracy_config({"route": "loss"})


def test_bad_cells_are_reported():
    cells = pd.DataFrame({"task": ["t"], "params": [1e8], "tokens": [1e9], "n_samples": [10], "n_correct": [11],
                          "weight": [3]})
    with pytest.raises(InputError, match="n_correct"):
        build_accuracy_model(cells)
    with pytest.raises(InputError, match="weight"):
        build_accuracy_model(cells.drop(columns="weight"))


# ----------------------------------------------------------------------------------------------- the model
@pytest.fixture(scope="module")
def sim_two_tasks():
    df, truth = simulate_samples(11, n_tasks=2, checkpoints=SMALL_GRID, n_problems=64, n_samples=256)
    return collapse_samples(df), truth


def test_model_structure_and_likelihood_at_the_truth(sim_two_tasks):
    """The model's observed log-likelihood at the (standardised) truth equals the weighted beta-binomial sum."""
    cells, truth = sim_two_tasks
    model = build_accuracy_model(cells)
    assert list(model.coords["task"]) == ["task_a", "task_b"]
    assert len(model.coords["cell"]) == len(cells)
    assert model.named_vars_to_dims["n_correct"] == ("cell",)
    for name in theta_names + ("w", "slope_mu", "mu_ref", "nu_ref"):
        assert model.named_vars_to_dims[name] == ("task",)
    n0, d0 = reference_point(cells)
    assert model.bayes_t2_reference == {"params": n0, "tokens": d0}

    std = {t: standardize_coefficients(c, n0, d0) for t, c in truth["tasks"].items()}
    point = model.initial_point()
    for name in SAMPLED:  # on the sampler's scale (the exponents are truncated: an interval transform)
        rv = model[name]
        value = np.array([std[t][name] for t in model.coords["task"]])
        transform = model.rvs_to_transforms.get(rv)
        point[model.rvs_to_values[rv].name] = value if transform is None else \
            transform.forward(value, *rv.owner.inputs).eval()
    # the floor is always non-centred: floor = loc + sd * z, so put it through z with loc = 0
    floors = np.array([std[t]["logit_floor"] for t in model.coords["task"]])
    point["logit_floor_loc"] = np.array(0.0)
    point["logit_floor_z"] = floors / np.exp(point["logit_floor_sd_log__"])
    obs_logp = model.compile_logp(vars=model.observed_RVs, jacobian=False)(point)
    expected = 0.0
    for task, g in cells.groupby("task"):
        a, b = accuracy_shapes(truth["tasks"][task], g["params"].to_numpy(), g["tokens"].to_numpy())
        expected += float(np.sum(g["weight"] * beta_binomial_logpmf(g["n_correct"], g["n_samples"], a, b)))
    assert obs_logp == pytest.approx(expected, rel=1e-9)
    # the deterministics report the T2 coefficients of the same law
    outs = model.replace_rvs_by_values([model[n] for n in theta_names])
    det = model.compile_fn(outs, inputs=model.value_vars, on_unused_input="ignore")
    values = dict(zip(theta_names, det(point)))
    for i, task in enumerate(model.coords["task"]):
        for name in theta_names:
            assert values[name][i] == pytest.approx(std[task][name], rel=1e-9, abs=1e-12)


def test_single_task_and_samples_frame_input():
    df, _ = simulate_samples(5, n_tasks=1, checkpoints=SMALL_GRID[:6], n_problems=8, n_samples=64)
    model = build_accuracy_model(df)  # a per-problem frame is collapsed automatically
    assert list(model.coords["task"]) == ["task_a"]
    assert "logit_mu_ref_sd" not in model.named_vars  # no pooling level for one task
    assert np.isfinite(model.compile_logp()(model.initial_point()))


def _fit(cells, seed, model=None):
    model = model if model is not None else build_accuracy_model(cells)
    with model:
        idata = pm.sample(nuts_sampler="nutpie", chains=2, tune=300, draws=300, random_seed=seed,
                          progressbar=False)
    return model, idata


def _check_recovery(cells, truth, reference, idata, min_theta_cover=0.8, min_curve_cover=0.8):
    post = idata.posterior
    n0, d0 = reference
    n_draws = post.sizes["chain"] * post.sizes["draw"]
    assert int(idata.sample_stats["diverging"].sum()) <= 0.01 * n_draws

    hits = []
    for task, coefs in truth["tasks"].items():
        std = standardize_coefficients(coefs, n0, d0)
        for name in ("logit_mu_ref", "slope_mu", "log_nu_ref", "slope_nu", "w", "alpha", "beta",
                     "theta1", "theta2", "theta3", "theta4", "A", "B"):
            lo, hi = np.quantile(post[name].sel(task=task).values, [0.05, 0.95])
            hits.append(lo <= std[name] <= hi)
    assert np.mean(hits) >= min_theta_cover, f"90% intervals hold {np.mean(hits):.0%} of the true coefficients"

    ckpt = cells[["params", "tokens"]].drop_duplicates()
    N, D = ckpt["params"].to_numpy(), ckpt["tokens"].to_numpy()
    covered = []
    for task, coefs in truth["tasks"].items():
        p = post.sel(task=task)
        for k in (1, 10, 100, 1000):
            true = np.asarray(accuracy_pass_at_k(coefs, N, D, k))
            pred = accuracy_pass_at_k(p, N, D, k)
            lo = pred.quantile(0.05, dim=("chain", "draw")).values
            hi = pred.quantile(0.95, dim=("chain", "draw")).values
            covered.append((lo <= true) & (true <= hi))
    coverage = float(np.mean(np.concatenate(covered)))
    assert coverage >= min_curve_cover, f"90% intervals hold {coverage:.0%} of the true pass@k values"
    return coverage


def test_recovery_two_tasks_nutpie(accuracy_truth_fit):
    """The session fit (2 tasks x 25 Pythia-like checkpoints x 64 problems x 256 samples, nutpie 2 x (300 + 300)):
    90% intervals hold the true coefficients and the true pass@k curves at k = 1..1000."""
    data, truth, result = accuracy_truth_fit
    cells = data.collapse_counts()
    idata = result.tree
    _check_recovery(cells, truth, (result.scaling["N0"], result.scaling["D0"]), idata)
    # the stored pointwise (per cell) log-likelihood sums to the model's observed log-likelihood
    model = build_accuracy_model(cells, result.spec)
    ll = idata["log_likelihood"]["n_correct"]
    assert ll.dims[-1] == "cell" and ll.sizes["cell"] == len(cells)
    draw = {v: idata.posterior[v].isel(chain=0, draw=0).values for v in
            [rv.name for rv in model.free_RVs]}
    value_point = {}  # on the sampler's (transformed) scale: sds are sampled as logs
    for rv in model.free_RVs:
        transform = model.rvs_to_transforms.get(rv)
        value = draw[rv.name] if transform is None else transform.forward(
            pt.as_tensor(draw[rv.name]), *rv.owner.inputs).eval()
        value_point[model.rvs_to_values[rv].name] = value
    obs_logp = model.compile_logp(vars=model.observed_RVs, jacobian=False)(value_point)
    assert float(ll.isel(chain=0, draw=0).sum()) == pytest.approx(obs_logp, rel=1e-5)  # stored as float32


@pytest.mark.slow
def test_recovery_full_pythia_grid():
    """~2.5 min: 2 tasks x 81 checkpoints (14M-12B, 2M-300B tokens) x 128 problems, mixed n_samples."""
    df, truth = simulate_samples(4, n_tasks=2, n_problems=128, n_samples=[128, 512, 2048])
    cells = collapse_samples(df)
    model, idata = _fit(cells, seed=4)
    _check_recovery(cells, truth, (model.bayes_t2_reference["params"], model.bayes_t2_reference["tokens"]), idata)


@pytest.mark.slow
def test_persistent_problem_difficulty_keeps_point_predictions():
    """Real benchmarks keep hard problems hard across checkpoints; the model treats checkpoints as independent
    given the law (a pseudo-likelihood), so its intervals are then too narrow, but the law's point predictions
    must stay accurate: posterior-median pass@k within 0.5 in log-odds of the truth at k = 1..1000 (seen: 0.39
    at the 90% quantile, the largest errors where pass@1 ~ 1e-4 is barely observed)."""
    df, truth = simulate_samples(4, n_tasks=2, n_problems=128, n_samples=512, shared_difficulty=True)
    cells = collapse_samples(df)
    model, idata = _fit(cells, seed=4)
    ckpt = cells[["params", "tokens"]].drop_duplicates()
    N, D = ckpt["params"].to_numpy(), ckpt["tokens"].to_numpy()
    errors = []
    for task, coefs in truth["tasks"].items():
        post = idata.posterior.sel(task=task)
        for k in (1, 10, 100, 1000):
            true = np.asarray(accuracy_pass_at_k(coefs, N, D, k))
            med = accuracy_pass_at_k(post, N, D, k).median(dim=("chain", "draw")).values
            keep = true > 1e-4  # below that no checkpoint of 128 x 512 samples sees a success
            errors.append(np.abs(_logit(med[keep]) - _logit(true[keep])))
    errors = np.concatenate(errors)
    assert np.quantile(errors, 0.9) < 0.5, f"90% quantile of |log-odds error| = {np.quantile(errors, 0.9):.2f}"


def _logit(p):
    return np.log(p) - np.log1p(-p)


@pytest.mark.parametrize("n_tasks, centered", [(1, True), (3, True), (3, False)])
def test_exponent_priors_are_normals_truncated_at_their_upper_bound(n_tasks, centered):
    """The exponents' prior (models/accuracy.toml `upper`): each task's log exponent is a Normal truncated at
    the bound, in every pooling form -- one task: the model's log density against scipy's truncnorm; several:
    the prior draws' PIT under scipy's truncnorm given their drawn loc and sd is uniform (KS). A bound that is
    not a number is a one-line InputError."""
    from scipy.stats import kstest, truncnorm

    from bayes_t2.routes.accuracy.config import accuracy_config
    from bayes_t2.routes.accuracy.model import pooled

    spec = accuracy_config({"pooling": {"centered": centered}})
    prior = spec["priors"]["log_beta"]
    upper = prior["upper"]
    assert upper == pytest.approx(math.log(2.0), abs=1e-4)
    with pm.Model(coords={"task": [f"t{i}" for i in range(n_tasks)]}) as model:
        values = pooled("log_beta", prior, n_tasks, spec["pooling"])
    if n_tasks == 1:
        rv = model["log_beta_loc"]
        transform, name = model.rvs_to_transforms[rv], model.rvs_to_values[rv].name
        logp = model.compile_logp(vars=[rv], jacobian=False)
        x = np.array([-3.0, -1.2, 0.0, 0.69])
        got = [logp({**model.initial_point(), name: transform.forward(v, *rv.owner.inputs).eval()}) for v in x]
        b = (upper - prior["loc"]) / prior["scale"]
        np.testing.assert_allclose(got, truncnorm.logpdf(x, -np.inf, b, loc=prior["loc"], scale=prior["scale"]),
                                   rtol=1e-9)
        return
    loc, sd = model["log_beta_loc"], model["log_beta_sd"]
    drawn_loc, drawn_sd, drawn = pm.draw([loc, sd, values], draws=2000, random_seed=4)
    assert drawn.max() <= upper
    b = (upper - drawn_loc[:, None]) / drawn_sd[:, None]
    pit = truncnorm.cdf(drawn, -np.inf, b, loc=drawn_loc[:, None], scale=drawn_sd[:, None]).ravel()
    assert kstest(pit, "uniform").pvalue > 0.01
    with pytest.raises(InputError, match="upper"):
        accuracy_config({"priors": {"log_beta": {"upper": "two"}}})
