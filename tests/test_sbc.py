"""SBC from the prior (bayes_t2.sbc): the rank and uniformity code against known truth (a conjugate normal model
whose exact posterior is known; deliberately shifted, too narrow and too wide posteriors; autocorrelated
chains), the tests' own level under the null, and a tiny end-to-end run of the real pipeline through the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from bayes_t2.sbc import (N_RANK_MAX, chi2_uniformity, ecdf_band, ecdf_uniformity, fractional_ranks, score_draws,
                          sbc_design, uniformity)
from conftest import run_cli


def _conjugate(n_rep: int, seed: int, *, shift: float = 0.0, sd_factor: float = 1.0, rho: float = 0.0,
               draws: int = 400, chains: int = 2) -> xr.Dataset:
    """theta ~ N(0, 1), y ~ N(theta, 1): the exact posterior is N(y/2, 1/2). `shift` (in posterior sds) and
    `sd_factor` miscalibrate it by construction; rho > 0 draws stationary AR(1) chains of that posterior
    (autocorrelated like MCMC). Replicates sit on the task dim."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=n_rep)
    y = theta + rng.normal(size=n_rep)
    sd = np.sqrt(0.5)
    z = np.empty((chains, draws, n_rep))
    z[:, 0] = rng.standard_normal((chains, n_rep))
    for i in range(1, draws):
        z[:, i] = rho * z[:, i - 1] + np.sqrt(1 - rho ** 2) * rng.standard_normal((chains, n_rep))
    post = y / 2 + shift * sd + sd_factor * sd * z
    draws_da = xr.DataArray(post[:, :, None, :], dims=("chain", "draw", "quantity", "task"),
                            coords={"quantity": ["theta"], "task": np.arange(n_rep)})
    truth = xr.DataArray(theta[None, :], dims=("quantity", "task"), coords={"quantity": ["theta"],
                                                                            "task": np.arange(n_rep)})
    return score_draws(draws_da, truth, np.random.default_rng([seed, 1]))


def test_fractional_rank_counts_draws_below_and_spreads_ties():
    rng = np.random.default_rng(0)
    r, L, u = fractional_ranks(np.arange(1000.0), 500.5, rng, n_keep=99)
    thin = np.arange(1000.0)[np.linspace(0, 999, 99).round().astype(int)]
    assert (r, L) == (float(np.sum(thin < 500.5)), 99) and r / (L + 1) <= u < (r + 1) / (L + 1)
    # a discrete quantity: the truth equal to every draw; ranks spread uniformly, u uniform
    us = np.array([fractional_ranks(np.full(300, 3.0), 3.0, rng, 49)[2] for _ in range(2000)])
    assert 0.47 < us.mean() < 0.53 and chi2_uniformity(us) > 0.01


def test_exact_posterior_passes_and_miscalibrated_ones_are_flagged():
    """The known truth: the exact conjugate posterior gives uniform ranks; a posterior shifted by half its sd,
    one 0.6x too narrow and one 1.6x too wide do not (all seeds fixed before looking)."""
    good = uniformity(_conjugate(300, seed=1)["u"].values.ravel())
    assert not good["flagged"] and good["chi2_pvalue"] > 0.01 and good["ecdf_pvalue"] > 0.01
    assert 0.85 < good["coverage_90"]["coverage"] < 0.95
    shifted = uniformity(_conjugate(300, seed=2, shift=0.5)["u"].values.ravel())
    assert shifted["flagged"] and shifted["mean_rank"] < 0.45  # truth low in a posterior shifted up
    narrow = uniformity(_conjugate(300, seed=3, sd_factor=0.6)["u"].values.ravel())
    assert narrow["flagged"] and narrow["coverage_90"]["wilson_upper"] < 0.9
    wide = uniformity(_conjugate(300, seed=4, sd_factor=1.6)["u"].values.ravel())
    assert wide["flagged"] and wide["coverage_50"]["wilson_lower"] > 0.5


def test_autocorrelated_chains_are_thinned_by_ess():
    """AR(1) chains (rho 0.97) of the exact posterior: about 15 effective draws of 800, so each rank is taken
    among that many thinned draws (not 99 correlated ones), and the ranks stay uniform."""
    s = _conjugate(200, seed=5, rho=0.97)
    assert float(s["n_rank"].max()) < N_RANK_MAX and float(s["n_rank"].min()) >= 9
    assert not uniformity(s["u"].values.ravel())["flagged"]


def test_uniformity_tests_hold_their_level_under_the_null():
    """Uniform samples: p < 0.05 about 5% of the time for both tests (binomial 99.9% range for 200 trials)."""
    rng = np.random.default_rng(11)
    p_ecdf = np.array([ecdf_uniformity(rng.uniform(size=100), seed=3, n_sim=1000) for _ in range(200)])
    p_chi2 = np.array([chi2_uniformity(rng.uniform(size=100)) for _ in range(200)])
    for p in (p_ecdf, p_chi2):
        assert 1 <= np.sum(p < 0.05) <= 22
    z, lo, hi = ecdf_band(100)
    assert np.all(lo < 0) and np.all(hi > 0) and len(z) == len(lo) == 99


def test_default_designs():
    loss = sbc_design("loss")
    assert loss.n_tasks == 2 and loss.n_checkpoints == 72 and sorted(loss.template["k"].unique()) == [1, 4, 16, 64]
    acc = sbc_design("accuracy")
    assert acc.n_tasks == 2 and acc.n_checkpoints == 20 and len(acc.template) == 2 * 20 * 64
    assert acc.extrapolate == (69e9, 20 * 69e9, 1.0)


def test_cli_bad_input_exits_2(tmp_path):
    code, _, err = run_cli("calibrate", "--from-prior", "--n-sims", "0", "--out", tmp_path)
    assert code == 2 and "--n-sims" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli("calibrate", "--from-prior", "--route", "joint", "--out", tmp_path)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.slow
def test_cli_from_prior_end_to_end(tmp_path):
    """Two prior draws on a one-task, k = 1 loss design, tiny chains: every output is written, every ranked
    quantity has its tests, and the same seed gives the same ranks."""
    import pandas as pd

    from bayes_t2.simulate import simulate_loss

    frame, _ = simulate_loss(0, n_tasks=1, budgets=np.geomspace(1e17, 1e19, 4), sizes_per_budget=4,
                             n_overtrained=2, ks=(1,))
    data = tmp_path / "d.csv"
    frame.to_csv(data, index=False)
    args = ["calibrate", str(data), "--from-prior", "--n-sims", "2", "--draws", "60", "--tune", "60",
            "--seed", "3"]
    code, out, err = run_cli(*args, "--out", tmp_path / "a")
    assert code == 0, err
    summ = json.loads((tmp_path / "a" / "sbc.json").read_text())
    assert summ["n_replicates_ranked"] == 2 and {"E", "alpha", "metric_extrapolated", "optimum_N"} <= set(summ["quantities"])
    assert all((tmp_path / "a" / f"sbc.{e}").stat().st_size > 0 for e in ("nc", "png", "pdf"))
    assert "passes" in out or "FAILS" in out
    assert run_cli(*args, "--out", tmp_path / "a")[0] == 2  # refuses to overwrite without --force
    code = run_cli(*args, "--out", tmp_path / "b")[0]
    a = xr.load_dataset(tmp_path / "a" / "sbc.nc", engine="h5netcdf")
    b = xr.load_dataset(tmp_path / "b" / "sbc.nc", engine="h5netcdf")
    assert code == 0 and np.array_equal(a["u"].values, b["u"].values, equal_nan=True)
    assert pd.notna(a["u"].sel(quantity="E").values).all()
    # a replicate whose chains disagree is sampled again, longer, and is still ranked (none is dropped)
    retried = a["retried"].values.astype(bool)
    assert summ["diagnostics"]["replicates_sampled_again_longer"] == int(retried.sum())
    assert (a["sampling_seconds"].values[retried] > 0).all()
