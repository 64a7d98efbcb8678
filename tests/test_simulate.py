"""Testbeds with a known truth (bayes_t2.simulate)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bayes_t2.data import read_data
from bayes_t2.errors import InputError
from bayes_t2.laws import LOSS_COEFFICIENTS, loss_law
from bayes_t2.resources import data_dir
from bayes_t2.simulate import (DEFAULT_BUDGETS, DEFAULT_KS, MAX_PARAMS, MIN_PARAMS, RANGES, identifiable,
                               loss_design, simulate, simulate_loss, task_average_optimal_params, term_shares,
                               truth_path, write_simulation)


@pytest.fixture(scope="module")
def sim():
    return simulate_loss(seed=7)


def law_from_truth(frame: pd.DataFrame, truth: dict) -> np.ndarray:
    coefs = pd.DataFrame(truth["tasks"]).T.loc[frame["task"]]
    c = {name: coefs[name].to_numpy(float) for name in LOSS_COEFFICIENTS}
    return loss_law(c["E"], c["A"], c["alpha"], c["B"], c["beta"], c["G"], c["gamma"],
                    frame["params"].to_numpy(float), frame["tokens"].to_numpy(float), frame["k"].to_numpy(float))


def test_columns_and_shape(sim):
    frame, truth = sim
    assert list(frame.columns) == ["task", "model", "params", "tokens", "k", "loss"]
    assert frame["k"].dtype == np.int64
    assert frame["params"].dtype == frame["tokens"].dtype == frame["loss"].dtype == np.float64
    assert sorted(frame["k"].unique()) == list(DEFAULT_KS)
    assert frame["task"].nunique() == 8
    assert set(frame["task"]) == set(truth["tasks"])
    # each checkpoint has every task at every k, exactly once
    counts = frame.groupby(["params", "tokens"]).size()
    assert (counts == 8 * len(DEFAULT_KS)).all()
    assert not frame.duplicated(["task", "params", "tokens", "k"]).any()
    # one model name per checkpoint
    assert frame.groupby("model")[["params", "tokens"]].nunique().max().max() == 1
    assert (frame["loss"] > 0).all() and np.isfinite(frame["loss"]).all()


def test_truth_format(sim):
    _, truth = sim
    assert truth["route"] == "loss" and truth["seed"] == 7 and truth["noise"] == 0.01
    for coefs in truth["tasks"].values():
        assert set(coefs) == set(LOSS_COEFFICIENTS)
        for name, value in coefs.items():
            lo, hi = RANGES[name]
            assert lo <= value <= hi, (name, value)
    json.dumps(truth)  # JSON-able as is


def test_same_seed_same_output_different_seed_different():
    a, ta = simulate_loss(seed=3)
    b, tb = simulate_loss(seed=3)
    c, tc = simulate_loss(seed=4)
    pd.testing.assert_frame_equal(a, b)
    assert ta == tb
    assert ta["tasks"] != tc["tasks"]
    assert not a["loss"].equals(c["loss"])


def test_truth_generates_the_data_with_stated_noise(sim):
    frame, truth = sim
    resid = np.log(frame["loss"].to_numpy() / law_from_truth(frame, truth))
    n = len(resid)
    assert abs(resid.mean()) < 4 * truth["noise"] / np.sqrt(n)
    # the sd of a normal sample of size n has relative standard error ~ 1/sqrt(2n)
    assert resid.std(ddof=1) == pytest.approx(truth["noise"], rel=4 / np.sqrt(2 * n))


def test_noise_free_data_equal_the_law():
    frame, truth = simulate_loss(seed=11, noise=0.0)
    np.testing.assert_allclose(frame["loss"], law_from_truth(frame, truth), rtol=1e-5)


def test_noise_sd_is_respected():
    frame, truth = simulate_loss(seed=5, noise=0.05)
    resid = np.log(frame["loss"].to_numpy() / law_from_truth(frame, truth))
    assert resid.std(ddof=1) == pytest.approx(0.05, rel=0.06)


def test_design_covers_sizes_and_budgets(sim):
    frame, truth = sim
    ck = frame[["params", "tokens"]].drop_duplicates()
    assert ck["params"].min() == MIN_PARAMS
    assert ck["params"].max() == MAX_PARAMS
    assert ck["params"].between(MIN_PARAMS, MAX_PARAMS).all()
    flops = 6.0 * ck["params"] * ck["tokens"]
    for budget in DEFAULT_BUDGETS:  # every budget has an IsoFLOP sweep of at least 3 sizes
        on_budget = np.isclose(flops, budget, rtol=1e-3)
        assert on_budget.sum() >= 3, budget
    ratio = ck["tokens"] / ck["params"]
    overtrained = ck[(ratio >= 199) & (ratio <= 1001) & (ck["params"] <= 4e7)]
    assert len(overtrained) >= 6


def test_isoflop_sweeps_bracket_the_true_optimum(sim):
    frame, truth = sim
    design = loss_design(truth["tasks"])
    for budget in DEFAULT_BUDGETS:
        n_opt = task_average_optimal_params(truth["tasks"], budget)
        sweep = design.loc[(design["design"] == "isoflop") & np.isclose(design["flops"], budget), "params"]
        assert sweep.min() <= max(n_opt, MIN_PARAMS) and sweep.max() >= min(n_opt, MAX_PARAMS)
    # the design of the frame is this design
    assert len(frame[["params", "tokens"]].drop_duplicates()) == len(design)


@pytest.mark.parametrize("seed", [0, 1, 2026])
def test_every_term_visible(seed):
    frame, truth = simulate_loss(seed=seed)
    for task, coefs in truth["tasks"].items():
        sub = frame[frame["task"] == task]
        shares = term_shares(coefs, sub["params"], sub["tokens"], sub["k"])
        for term, share in shares.items():
            assert share.max() >= 0.1, (task, term)
            # each power-law term varies across the design (its exponent is identifiable)
            if term != "E":
                assert share.max() / share.min() > 2, (task, term)
        design = frame[["params", "tokens"]].drop_duplicates()
        assert identifiable(coefs, design, DEFAULT_KS)


def test_given_truth_is_used():
    truth = {"tasks": {"only": {"E": 0.5, "A": 300.0, "alpha": 0.3, "B": 500.0, "beta": 0.3, "G": 1.0,
                                "gamma": 0.4}}}
    frame, out = simulate_loss(seed=1, truth=truth, noise=0.0, ks=(1, 8))
    assert out["tasks"] == truth["tasks"]
    assert set(frame["task"]) == {"only"} and set(frame["k"]) == {1, 8}
    np.testing.assert_allclose(frame["loss"], law_from_truth(frame, out), rtol=1e-5)


def test_small_custom_design():
    frame, truth = simulate_loss(seed=2, n_tasks=3, budgets=[1e17, 1e18], sizes_per_budget=3, n_overtrained=0,
                                 ks=(1, 4))
    assert frame["task"].nunique() == 3
    flops = 6.0 * frame["params"] * frame["tokens"]
    assert (np.isclose(flops, 1e17, rtol=1e-3) | np.isclose(flops, 1e18, rtol=1e-3)).all()


@pytest.mark.parametrize("kwargs, fragment", [
    ({"n_tasks": 0}, "n_tasks"),
    ({"ks": (0, 1)}, "ks"),
    ({"ks": (1.5,)}, "ks"),
    ({"noise": -0.1}, "noise"),
    ({"budgets": [-1.0]}, "budgets"),
    ({"sizes_per_budget": 0}, "sizes_per_budget"),
    ({"truth": {"tasks": {"t": {"E": 1.0}}}}, "missing"),
])
def test_bad_arguments(kwargs, fragment):
    with pytest.raises(InputError, match=fragment):
        simulate_loss(seed=0, **kwargs)


def test_dispatcher():
    frame, truth = simulate("loss", seed=3, n_tasks=2)
    pd.testing.assert_frame_equal(frame, simulate_loss(3, n_tasks=2)[0])
    with pytest.raises(InputError, match="no simulator for route 'nonsense'"):
        simulate("nonsense", seed=0)


# ------------------------------------------------------------------------------------------------- writing
def test_truth_path():
    assert truth_path("out/data.csv").name == "data.truth.json"
    assert truth_path("out/data.csv.gz").name == "data.truth.json"
    assert truth_path("data.parquet").name == "data.truth.json"


@pytest.mark.parametrize("name", ["sim.csv", "sim.csv.gz", "sim.parquet"])
def test_write_and_read_back(tmp_path, sim, name):
    frame, truth = sim
    out, tpath = write_simulation(tmp_path / name, frame, truth)
    assert tpath == tmp_path / "sim.truth.json"
    assert json.loads(tpath.read_text()) == truth
    data = read_data(out)
    assert data.kind == "loss"
    pd.testing.assert_frame_equal(data.frame, frame)


def test_write_refuses_to_overwrite(tmp_path, sim):
    frame, truth = sim
    out = tmp_path / "sim.csv"
    write_simulation(out, frame, truth)
    before = (out.read_bytes(), (tmp_path / "sim.truth.json").read_bytes())
    other_frame, other_truth = simulate_loss(seed=8)
    with pytest.raises(InputError, match="already exists"):
        write_simulation(out, other_frame, other_truth)
    assert (out.read_bytes(), (tmp_path / "sim.truth.json").read_bytes()) == before
    write_simulation(out, other_frame, other_truth, overwrite=True)
    assert json.loads((tmp_path / "sim.truth.json").read_text())["seed"] == 8


def test_write_checks_both_files_before_writing(tmp_path, sim):
    frame, truth = sim
    (tmp_path / "sim.truth.json").write_text("{}")
    with pytest.raises(InputError, match="sim.truth.json"):
        write_simulation(tmp_path / "sim.csv", frame, truth)
    assert not (tmp_path / "sim.csv").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sim.truth.json"]  # no temporary files left


def test_write_unknown_extension(tmp_path, sim):
    with pytest.raises(InputError, match="unknown file type"):
        write_simulation(tmp_path / "sim.txt", *sim)


# ------------------------------------------------------------------------------------------- embedded data
def test_embedded_default_data_is_seed_2026():
    path = data_dir() / "default_loss.csv"
    frame, truth = simulate_loss(seed=2026)
    data = read_data(path)
    pd.testing.assert_frame_equal(data.frame, frame)
    assert json.loads((data_dir() / "default_loss.truth.json").read_text()) == truth
    assert path.stat().st_size < 1_000_000


def test_embedded_default_samples_are_seed_2026():
    from bayes_t2.simulate import simulate

    path = data_dir() / "default_samples.csv"
    frame, truth = simulate("accuracy", 2026)
    data = read_data(path)
    assert data.kind == "samples"
    got = data.frame.reset_index(drop=True)
    want = frame[got.columns].astype(got.dtypes.to_dict()).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want, check_categorical=False)
    assert json.loads((data_dir() / "default_samples.truth.json").read_text()) == json.loads(json.dumps(truth))
    assert path.stat().st_size < 1_000_000


def test_checkpoint_effect_is_shared_by_every_row_of_a_checkpoint():
    """With noise 0, every row of a checkpoint (all tasks, all k) is the law times one factor exp(u_c), u_c of
    sd checkpoint_sd across checkpoints; the rest of the data set is as without it."""
    from bayes_t2.laws import loss_law

    base, truth = simulate_loss(seed=4, n_tasks=3, ks=(1, 8), noise=0.0)
    frame, truth2 = simulate_loss(seed=4, n_tasks=3, ks=(1, 8), noise=0.0, checkpoint_sd=0.05)
    assert truth2["checkpoint_sd"] == 0.05 and truth2["tasks"] == truth["tasks"]
    c = pd.DataFrame(truth["tasks"]).T.loc[frame["task"]]
    law = loss_law(*(c[n].to_numpy() for n in ("E", "A", "alpha", "B", "beta", "G", "gamma")),
                   frame["params"].to_numpy(), frame["tokens"].to_numpy(), frame["k"].to_numpy(float))
    shift = np.log(frame["loss"].to_numpy() / law)
    per_ckpt = pd.Series(shift).groupby(frame["model"].to_numpy()).agg(["std", "mean"])
    assert per_ckpt["std"].max() < 2e-5  # one shift per checkpoint (up to rounding to 6 digits)
    assert 0.03 < per_ckpt["mean"].std() < 0.07 and len(per_ckpt) > 30
    assert np.allclose(base["loss"], law, rtol=1e-5)


def test_bent_law_equals_the_law_inside_the_range_and_falls_below_beyond():
    from bayes_t2.laws import loss_law
    from bayes_t2.simulate import bent_loss_law

    c = {"E": 0.5, "A": 400.0, "alpha": 0.34, "B": 400.0, "beta": 0.28, "G": 0.5, "gamma": 0.4}
    N = np.array([1e7, 1e8, 1e9, 1e10])
    D = 20 * N
    plain = loss_law(*(c[n] for n in ("E", "A", "alpha", "B", "beta", "G", "gamma")), N, D, 1.0)
    bent = bent_loss_law(c, N, D, 1.0, drift=0.05, params=1e8, tokens=2e9)
    assert np.allclose(bent[:2], plain[:2], rtol=1e-12) and np.all(bent[2:] < plain[2:])
    # the size term's local log-log slope is -(alpha + 2 drift x), x = ln(N / 1e8)
    x, h = np.log(1e10 / 1e8), 1e-5
    term = lambda n: c["A"] * n ** -c["alpha"] * np.exp(-0.05 * np.log(n / 1e8) ** 2)  # noqa: E731
    slope = (np.log(term(1e10 * np.exp(h))) - np.log(term(1e10 * np.exp(-h)))) / (2 * h)
    assert slope == pytest.approx(-(0.34 + 2 * 0.05 * x), rel=1e-6)
    frame, truth = simulate_loss(seed=2, n_tasks=1, ks=(1,), noise=0.0, bend={"drift": 0.05, "params": 1e8,
                                                                              "tokens": 2e9})
    assert truth["bend"] == {"drift": 0.05, "params": 1e8, "tokens": 2e9}
    with pytest.raises(InputError):
        simulate_loss(seed=2, bend={"drift": 0.05})


def test_true_optimum_of_a_bent_law_comes_from_the_reference_solver():
    """drift 0 is the plain law's reference optimum; a bend beyond the optimum's size moves nothing, a bend
    below it makes larger models pay off (N* grows)."""
    from bayes_t2.budget import Constraints
    from bayes_t2.misspecified import true_optimum
    from bayes_t2.reference import reference_optimum
    from bayes_t2.simulate import T2_BUDGET

    _, truth = simulate_loss(seed=3, n_tasks=2)
    con = Constraints(min_params=5e5)
    theta = np.array([[truth["tasks"][t][n] for n in ("E", "A", "alpha", "B", "beta", "G", "gamma")]
                      for t in sorted(truth["tasks"])])
    plain = true_optimum(truth, T2_BUDGET, con)
    assert np.allclose(plain.to_numpy(), reference_optimum("loss", theta, T2_BUDGET, con))
    far = true_optimum({**truth, "bend": {"drift": 0.05, "params": 1e15, "tokens": 1e15}}, T2_BUDGET, con)
    assert np.allclose(far.to_numpy(), plain.to_numpy())
    near = true_optimum({**truth, "bend": {"drift": 0.05, "params": plain["N"].min() / 10,
                                           "tokens": 1e15}}, T2_BUDGET, con)
    assert np.all(near["N"] >= plain["N"]) and np.all(near["loss"] < plain["loss"])
