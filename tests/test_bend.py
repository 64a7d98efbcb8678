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
from bayes_t2.optimum import (BEND_NAMES, OUTPUTS, BentRoute, bent_fit, bent_objective, discrepancy_z,
                              extrapolation_distances, loss_objective_nb, optimize_array)
from bayes_t2.reference import BENT_LOSS_THETA, objective_at, reference_optimum
from bayes_t2.routes.loss import extrapolation_efolds, extrapolation_efolds_nb
from bayes_t2.simulate import _draw_one

ROW = {name: i for i, name in enumerate(OUTPUTS)}
#: the loss law bent beyond the data: the generic bend (`bent_objective`) of the loss route's objective
loss_objective_bent_nb = bent_objective(loss_objective_nb, len(LOSS_COEFFICIENTS))
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


# ------------------------------------------------------------------------------ the bend with repeated data
# theta of a bent repeated-data law: the loss law, the bend (z*s, range), then U, R_D*, U_N, R_N*
# (`optimum.bend_route`: the data-constrained law evaluates the bent law at the effective design (N', D')).
U_REP = 5e9  # ~10 epochs at the T2 budget's optimum (as tests/test_repetition.py)
REPEATED_CASES = [
    (SplitBudget(2.56e19, 2e9), Constraints()),
    (SplitBudget(1e21, 1e10), Constraints(k_max=16)),
    (TotalBudget(1e21, 1e10), Constraints(min_params=1e7, k_max=128)),
]


def _own_bent_repeated(theta: np.ndarray, N: np.ndarray, D: np.ndarray, k: np.ndarray) -> np.ndarray:
    """The bent data-constrained loss law, written for this test in plain numpy (rows of theta x designs):
    D' = U + U R_D* (1 - exp(-(D/U - 1)/R_D*)) beyond U (N' likewise with U_N, R_N*), the loss law at (N', D'),
    times exp(z s x) with x the e-folds (N', D') lies outside the range in log N, log D, log 6ND, log D/N."""
    col = lambda j: theta[:, j, None]  # noqa: E731
    E, A, alpha, B, beta, G, gamma, zs = (col(j) for j in range(8))
    U, r_d, U_N, r_n = (col(j) for j in range(16, 20))

    def worth(x, unique, r_star):
        decayed = unique * (1.0 + r_star * (1.0 - np.exp(-(x / unique - 1.0) / r_star)))
        return np.where(x <= unique, x, decayed)

    Ne, De = worth(N, U_N, r_n), worth(D, U, r_d)
    loss = E + A / Ne ** alpha + B / De ** beta + G / k ** gamma
    x = np.zeros(np.broadcast(loss, Ne).shape)
    for i, value in enumerate((np.log(Ne), np.log(De), np.log(6.0 * Ne * De), np.log(De / Ne))):
        x = np.maximum(x, np.maximum(value - col(9 + 2 * i), col(8 + 2 * i) - value))
    return loss * np.exp(zs * x)


@lru_cache(maxsize=None)
def bent_repeated_population(n: int = 40, seed: int = 8) -> np.ndarray:
    """Loss-population draws with a fixed nonzero bend z*s = +-0.06 per e-fold, a data range narrow in N (as
    `bent_population`) and the repetition numbers of U = `U_REP` (R* from the published prior)."""
    from bayes_t2.laws import unique_params
    from bayes_t2.repetition import published_prior_draws

    rng = np.random.default_rng(seed)
    law = np.array([[d[c] for c in LOSS_COEFFICIENTS] for d in (_draw_one(rng) for _ in range(n))])
    bend = np.where(np.arange(n) % 2 == 0, 0.06, -0.06)
    n_hi = np.exp(rng.uniform(np.log(3e7), np.log(3e8), size=n))
    d_hi = np.exp(rng.uniform(np.log(3e8), np.log(3e9), size=n))  # near U: D' vs D decides the tokens distance
    ranges = np.column_stack([np.log(n_hi) - 3.0, np.log(n_hi), np.log(d_hi) - 3.0, np.log(d_hi),
                              np.log(6 * n_hi * d_hi) - 6.0, np.log(6 * n_hi * d_hi),
                              np.log(d_hi / n_hi) - 2.0, np.log(d_hi / n_hi) + 1.0])
    repeat = np.column_stack([np.full(n, U_REP), published_prior_draws("R_D_star", (n,), seed),
                              unique_params(law[:, 1], law[:, 2], law[:, 3], law[:, 4], U_REP),
                              published_prior_draws("R_N_star", (n,), seed + 1)])
    return np.ascontiguousarray(np.column_stack([law, bend, ranges, repeat]))


def _bent_repeated_route():
    from bayes_t2.optimum import bend_route
    from bayes_t2.repetition import RepeatedRoute
    from bayes_t2.routes.loss import LossRoute

    return bend_route(RepeatedRoute(LossRoute))


def test_bent_repeated_objective_is_the_law_bent_at_the_effective_design():
    """The kernel, the reference's own numpy ("loss_bent+repeated") and this file's numpy agree at random
    designs; the route nests the repetition outside the bend."""
    from bayes_t2.repetition import REPEAT_NAMES, RepeatedRoute

    route = _bent_repeated_route()
    assert isinstance(route, RepeatedRoute) and isinstance(route.base, BentRoute)
    assert route.coefficient_names == LOSS_COEFFICIENTS + BEND_NAMES + REPEAT_NAMES
    thetas = bent_repeated_population()
    rng = np.random.default_rng(2)
    N, D = np.exp(rng.uniform(16, 24, len(thetas))), np.exp(rng.uniform(19, 27, len(thetas)))
    k = rng.integers(1, 64, len(thetas)).astype(float)
    own = _own_bent_repeated(thetas, N[:, None], D[:, None], k[:, None])[:, 0]
    kernel = np.array([route.objective_nb(t, n, d, kk) for t, n, d, kk in zip(thetas, N, D, k)])
    np.testing.assert_allclose(kernel, own, rtol=1e-12)
    np.testing.assert_allclose(objective_at("loss_bent+repeated", thetas, N, D, k), own, rtol=1e-12)
    assert np.mean(D > U_REP) > 0.5 and not np.allclose(own, objective_at("loss_bent", thetas[:, :16], N, D, k))


@pytest.mark.parametrize("budget,con", REPEATED_CASES, ids=lambda x: repr(x)[:50])
def test_bent_repeated_optimizer_matches_brute_force(budget, con):
    """With U set and a bend, the optimizer is never worse than the dense brute force (the reference's grids
    and polish) over this file's own numpy objective, and both the bend and where its distance is measured
    matter: the unbent optimum, and the optimum bent at the actual (N, D) instead of (N', D'), lose on it."""
    from bayes_t2.reference import reference_optimum_of
    from bayes_t2.repetition import RepeatedRoute, repeated_objective
    from bayes_t2.routes.loss import LossRoute

    thetas = bent_repeated_population()
    route = _bent_repeated_route()
    out = optimize_array(thetas, [budget], con, objective=route.objective_nb,
                         theta_names=route.coefficient_names)[:, :, 0]
    ref = reference_optimum_of(_own_bent_repeated, thetas, budget, con)
    assert np.all(np.isfinite(ref[:, 3]))

    def score(o):
        return _own_bent_repeated(thetas, o[ROW["N"]][:, None], o[ROW["D"]][:, None], o[ROW["k"]][:, None])[:, 0]

    worse = score(out) > ref[:, 3] + TOL * np.abs(ref[:, 3])
    assert not worse.any(), [(int(i), score(out)[i], ref[i, 3]) for i in np.where(worse)[0][:5]]
    assert np.mean(out[ROW["D"]] > U_REP) > 0.2  # the optima repeat data
    # the check can fail: the unbent repeated optimum ...
    plain = RepeatedRoute(LossRoute)
    unbent = optimize_array(np.ascontiguousarray(np.delete(thetas, np.s_[7:16], axis=1)), [budget], con,
                            objective=plain.objective_nb, theta_names=plain.coefficient_names)[:, :, 0]
    assert (score(unbent) > ref[:, 3] * (1 + 1e-4)).sum() >= 2
    # ... and the law bent at the actual design (the generic bend around the repeated objective) lose on it
    actual = bent_objective(repeated_objective(loss_objective_nb, 7), 11)
    reordered = np.ascontiguousarray(np.concatenate([thetas[:, :7], thetas[:, 16:], thetas[:, 7:16]], axis=1))
    at_actual = optimize_array(reordered, [budget], con, objective=actual,
                               theta_names=LOSS_COEFFICIENTS + ("u",) * 4 + BEND_NAMES)[:, :, 0]
    assert (score(at_actual) > ref[:, 3] * (1 + 1e-4)).sum() >= 2


@pytest.mark.parametrize("budget,con", REPEATED_CASES[::2], ids=lambda x: repr(x)[:50])
def test_bent_repeated_with_zero_bend_is_the_repeated_optimum_bit_for_bit(budget, con):
    """z*s = 0 on every draw: the bent repeated optimizer returns the repeated optimum to the last bit."""
    from bayes_t2.repetition import RepeatedRoute
    from bayes_t2.routes.loss import LossRoute

    thetas = bent_repeated_population().copy()
    thetas[:, 7] = 0.0
    route, plain = _bent_repeated_route(), RepeatedRoute(LossRoute)
    out = optimize_array(thetas, [budget], con, objective=route.objective_nb, theta_names=route.coefficient_names)
    ref = optimize_array(np.ascontiguousarray(np.delete(thetas, np.s_[7:16], axis=1)), [budget], con,
                         objective=plain.objective_nb, theta_names=plain.coefficient_names)
    assert np.array_equal(out, ref, equal_nan=True)


def test_repeated_optimize_and_decide_carry_the_bend(loss_truth_fit):
    """Fit.optimize with unique_tokens and a discrepancy: the optimum is bent with the plain optimum's z, its
    z = 0 twin (`_no_discrepancy`) is the unbent repeated optimum bit for bit (scale 0: the whole result is),
    distances are measured at the effective design, the shares are stated, and decide sees the same bend."""
    from bayes_t2.decide import decide
    from bayes_t2.repetition import REPEAT_NAMES, effective_design, is_repeated, optimum_vs_unique_tokens, repeated_fit
    from bayes_t2.summary import extrapolation_lines, optimum_records

    _, _, result = loss_truth_fit
    budget, U = SplitBudget(1e22, 1e12), 1e10
    con = Constraints(unique_tokens=U)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt = _with_scale(result, 0.05).optimize([budget], con, seed=4)
        flat = _with_scale(result, 0.0).optimize([budget], con, seed=4)
        ds = decide(_with_scale(result, 0.05), budget, con, seed=4)
    for name in ("N", "D", "k", "tokens_per_param", "metric"):
        assert np.array_equal(opt[f"{name}_no_discrepancy"].values, flat[name].values, equal_nan=True), name
    assert "N_no_discrepancy" not in flat and "discrepancy_note" not in opt.attrs
    assert float(opt["epochs"].median()) > 1.0
    m, m0 = opt["metric"].isel(budget=0), opt["metric_no_discrepancy"].isel(budget=0)
    width = lambda x: float(x.quantile(0.95) - x.quantile(0.05))  # noqa: E731
    assert width(m) > width(m0)
    # the same z per draw as without repeated data
    bent = _with_scale(result, 0.05)
    view, rview = bent_fit(bent, seed=4), bent_fit(repeated_fit(bent, U, 4), seed=4)
    assert is_repeated(rview) and np.array_equal(rview.posterior["discrepancy_bend"].values,
                                                 view.posterior["discrepancy_bend"].values)
    assert repeated_fit(view, U, 4).route.base is bent.route  # a repeated view of a bent view starts unbent
    # distances at the effective design (N', D'), not at (N, D)
    lr = result.posterior["data_log_range"].isel(chain=0, draw=0).transpose("range_axis", "range_end").values
    Ne, De = effective_design(rview.posterior[list(REPEAT_NAMES)], opt["N"], opt["D"])
    np.testing.assert_allclose(opt["extrapolation_efolds"].values,
                               extrapolation_distances(lr, Ne, De)["efolds"].transpose(*opt["N"].dims).values)
    assert float(opt["extrapolation_efolds"].median()) > 0.5
    rec = optimum_records(opt, "loss", True, 0.9)[0]
    assert rec["extrapolation"]["design"] == "effective" and rec["discrepancy"]["scale"] == 0.05
    assert rec["discrepancy"]["share"]["metric"] > 0 and "without" in rec["discrepancy"]
    assert "effective design" in extrapolation_lines([rec])[0]
    # decide's per-draw optimum metric is optimize's (same bend, same checkpoint effect per draw)
    own = ds["optimal_metric"].transpose(*m.dims)
    assert np.allclose(own.values, m.values, rtol=1e-9, equal_nan=True)
    assert float(ds["negative_regret_share"].max()) == 0.0
    # the report's optimum-against-U page bends its sweep the same way
    swept, _ = optimum_vs_unique_tokens(bent, budget, Constraints(), [U], seed=4)
    n_star = opt["N"].isel(budget=0)
    assert np.array_equal(swept["N"].sel(unique_tokens=U).transpose(*n_star.dims).values, n_star.values)
    assert not np.array_equal(n_star.values, flat["N"].isel(budget=0).values)
