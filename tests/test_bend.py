"""The optimizer inherits the law's discrepancy beyond the data (optimum.BentRoute, `bent_fit`).

Truths from elsewhere:
* the numba e-fold distance against the numpy one (routes/loss.py's `extrapolation_efolds`);
* the bent optimizer against `bayes_t2.reference`'s brute force, which has its own numpy implementation of the
  bent objective (it imports nothing from optimum.py), on draws whose bend moves the optimum;
* with the scale 0 a fit is not bent at all (every number as before), and z = 0 gives the unbent law;
* decide and optimize bend each draw with the same z (decide's per-draw optimum metric = optimize's).
"""

from __future__ import annotations

import copy
import math
import warnings
from functools import lru_cache

import numpy as np
import pytest

from bayes_t2.budget import Constraints, SplitBudget, TotalBudget
from bayes_t2.laws import LOSS_COEFFICIENTS
from bayes_t2.optimum import (BEND_NAMES, OUTPUTS, BentRoute, bent_fit, discrepancy_z, extrapolation_distances,
                              loss_objective_bent_nb, optimize_array)
from bayes_t2.reference import BENT_LOSS_THETA, objective_at, reference_optimum
from bayes_t2.routes.loss import extrapolation_efolds, extrapolation_efolds_nb
from bayes_t2.simulate import _draw_one

ROW = {name: i for i, name in enumerate(OUTPUTS)}
TOL = 1e-6
CASES = [
    (SplitBudget(2.56e19, 2e9), Constraints()),
    (SplitBudget(1e21, 1e10), Constraints(k_max=16)),
    (TotalBudget(1e21, 1e10), Constraints(min_params=1e7, k_max=128)),
]


def test_names_agree():
    assert BENT_LOSS_THETA == LOSS_COEFFICIENTS + BEND_NAMES


def test_numba_efolds_match_numpy():
    rng = np.random.default_rng(3)
    for _ in range(200):
        lo = rng.uniform(10, 25, size=4) - np.array([0.0, 0.0, 0.0, 12.0])  # log D/N spans about -2..+13
        bounds = np.column_stack([lo, lo + rng.uniform(0, 6, size=4)])
        N, D = np.exp(rng.uniform(12, 30)), np.exp(rng.uniform(15, 33))
        theta = np.concatenate([np.zeros(8), bounds.ravel()])
        assert extrapolation_efolds_nb(theta, 8, N, D) == pytest.approx(float(extrapolation_efolds(bounds, N, D)),
                                                                        rel=1e-12, abs=1e-12)


@lru_cache(maxsize=None)
def bent_population(n: int = 40, seed: int = 5) -> np.ndarray:
    """Loss-population draws with a bend z*s of a few percent per e-fold (either sign) and a data range
    narrow in N, so the params distance, not the (constant) compute distance, decides along a budget."""
    rng = np.random.default_rng(seed)
    law = np.array([[d[c] for c in LOSS_COEFFICIENTS] for d in (_draw_one(rng) for _ in range(n))])
    bend = rng.normal(0.0, 0.08, size=n)
    return with_bend(law, bend, data_ranges(rng, n, (3e7, 3e8), (3e9, 3e10), (3.0, 3.0, 6.0, 2.0, 1.0)))


def data_ranges(rng, n: int, n_top: tuple, d_top: tuple, widths: tuple) -> np.ndarray:
    """Per draw a fitted data range, (min, max) of log N, log D, log 6ND, log D/N (rows of 8): the largest N and
    D log-uniform in n_top, d_top; the ranges reach widths[0], [1], [2] e-folds below those tops and the
    tokens per parameter from widths[3] below to widths[4] above the top's."""
    n_hi = np.exp(rng.uniform(*np.log(n_top), size=n))
    d_hi = np.exp(rng.uniform(*np.log(d_top), size=n))
    w = widths
    return np.column_stack([np.log(n_hi) - w[0], np.log(n_hi), np.log(d_hi) - w[1], np.log(d_hi),
                            np.log(6 * n_hi * d_hi) - w[2], np.log(6 * n_hi * d_hi),
                            np.log(d_hi / n_hi) - w[3], np.log(d_hi / n_hi) + w[4]])


def with_bend(law: np.ndarray, bend: np.ndarray, ranges: np.ndarray) -> np.ndarray:
    """The bent objective's theta rows: [law coefficients, z*s, range (8)]."""
    return np.ascontiguousarray(np.column_stack([law, bend, ranges]))


@pytest.mark.parametrize("budget,con", CASES)
def test_bent_optimizer_matches_brute_force(budget, con):
    thetas = bent_population()
    out = optimize_array(thetas, [budget], con, objective=loss_objective_bent_nb,
                         theta_names=BENT_LOSS_THETA)[:, :, 0]
    ref = reference_optimum("loss_bent", thetas, budget, con)
    assert np.all(np.isfinite(ref[:, 3]))
    value = objective_at("loss_bent", thetas, out[ROW["N"]], out[ROW["D"]], out[ROW["k"]])
    worse = value > ref[:, 3] + TOL * np.abs(ref[:, 3])
    assert not worse.any(), f"draws {np.where(worse)[0]} worse than the brute force"
    # the check can fail: the unbent optimum scored on the bent objective loses on many of these draws
    plain = optimize_array(np.ascontiguousarray(thetas[:, :7]), [budget], con)[:, :, 0]
    plain_value = objective_at("loss_bent", thetas, plain[ROW["N"]], plain[ROW["D"]], plain[ROW["k"]])
    assert (plain_value > ref[:, 3] * (1 + 1e-4)).sum() >= 2


def test_zero_bend_is_the_law():
    thetas = bent_population().copy()
    thetas[:, 7] = 0.0
    rng = np.random.default_rng(1)
    for row in thetas[:10]:
        N, D, k = np.exp(rng.uniform(15, 25)), np.exp(rng.uniform(18, 28)), float(rng.integers(1, 50))
        law = row[0] + row[1] * N ** -row[2] + row[3] * D ** -row[4] + row[5] * k ** -row[6]
        assert loss_objective_bent_nb(row, N, D, k) == pytest.approx(law, rel=1e-14)


def test_z_is_seeded():
    assert np.array_equal(discrepancy_z(3, 2, 5), discrepancy_z(3, 2, 5))
    assert not np.array_equal(discrepancy_z(3, 2, 5), discrepancy_z(4, 2, 5))


def test_extrapolation_distances_by_hand():
    lr = np.log([[1e8, 1e9], [1e9, 1e11], [1e18, 1e20]])
    d = extrapolation_distances(lr, 1e10, 1e12)  # 6ND = 6e22
    assert d["params"] == pytest.approx(1.0)
    assert d["tokens"] == pytest.approx(1.0)
    assert d["compute"] == pytest.approx(math.log10(6e22 / 1e20))
    assert d["efolds"] == pytest.approx(math.log(6e22 / 1e20))
    assert extrapolation_distances(lr, 3e8, 1e10)["efolds"] == 0.0


def _with_scale(fit, scale: float):
    out = copy.copy(fit)
    out.spec = {**fit.spec, "discrepancy": {"scale": scale}}
    return out


def test_scale_zero_is_not_bent(loss_truth_fit):
    _, _, result = loss_truth_fit
    plain = _with_scale(result, 0.0)
    assert bent_fit(plain, seed=0) is plain
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt = plain.optimize(train_flops=1e22, inference_flops=1e12)
    assert "N_no_discrepancy" not in opt and opt.attrs["discrepancy_scale"] == 0.0
    assert opt.attrs["method"] == "exact"


def test_bent_optimize_and_decide_share_z(loss_truth_fit):
    from bayes_t2.decide import decide

    _, _, result = loss_truth_fit
    bent = _with_scale(result, 0.05)
    budget = SplitBudget(1e22, 1e12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt = bent.optimize([budget], seed=4)
        ds = decide(bent, budget, seed=4)
    view = bent_fit(bent, seed=4)
    assert isinstance(view.route, BentRoute) and bent_fit(view, seed=4) is view
    assert np.allclose(view.posterior["discrepancy_bend"].values, 0.05 * discrepancy_z(4, *opt["N"].shape[:2]))
    # z = 0 view: the metric of the per-draw optimum is the law's (plus checkpoint effect), narrower
    m, m0 = opt["metric"].isel(budget=0), opt["metric_no_discrepancy"].isel(budget=0)
    width = lambda x: float(x.quantile(0.95) - x.quantile(0.05))  # noqa: E731
    assert width(m) > width(m0)
    # decide's per-draw optimum metric is optimize's (same bend, same checkpoint effect per draw)
    own = ds["optimal_metric"].transpose(*m.dims)
    assert np.allclose(own.values, m.values, rtol=1e-9, equal_nan=True)
    assert float(ds["negative_regret_share"].max()) == 0.0


def test_width_share_definition():
    from bayes_t2.summary import interval_width, width_share

    assert width_share(2.0, 0.5) == pytest.approx(0.75)
    assert width_share(0.0, 0.0) == 0.0 and math.isnan(width_share(0.0, 1.0))
    assert width_share(1.0, 2.0) == pytest.approx(-1.0)  # narrowed by the bend: said, not clipped
    assert interval_width({"lower": 1e9, "upper": 1e10}, log=True) == pytest.approx(math.log(10))
    assert interval_width({"lower": 5e9, "upper": 5e9 * (1 + 1e-15)}, log=True) == 0.0  # rounding
    assert interval_width({"lower": 1.5, "upper": 1.75}, log=False) == pytest.approx(0.25)
