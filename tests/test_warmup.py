"""Under-training (learning-rate warm-up): the effective-tokens formula, the optimizer on the warm-up law
against the independent brute force, and a fit that recovers a known warm-up.

Truth: the formula against a numerical integral of the schedule; the optimizer against `bayes_t2.reference`,
which writes the warm-up again in its own form (`_warmup_amount`) and searches dense grids over designs; the
fit against data simulated with a known w.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd
import pytest

from bayes_t2.budget import Constraints, SplitBudget, TotalBudget
from bayes_t2.laws import LOSS_COEFFICIENTS, loss_law, warmup_tokens, warmup_tokens_nb
from bayes_t2.optimum import OUTPUTS, optimize_array
from bayes_t2.reference import _warmup_amount, objective_at, reference_optimum
from bayes_t2.routes.loss import LossRoute, WarmupLossRoute, warmup_prior
from bayes_t2.simulate import _draw_one
from test_bend import data_ranges, with_bend
from test_optimum_global import _feasible

TOL = 1e-6
ROW = {name: i for i, name in enumerate(OUTPUTS)}
CASES = [
    (SplitBudget(2.56e19, 2e9), Constraints(k_max=2)),
    (SplitBudget(1e21, 1e11), Constraints(max_tokens=4e11, k_max=8)),
    (TotalBudget(1e21, 1e10), Constraints(min_params=1e7, k_max=128)),
    (TotalBudget(2e20, 1e9), Constraints(min_params=5e7)),
]


def test_warmup_tokens_is_the_area_under_a_linear_warmup():
    """D_w = integral over the run of min(t/W, 1) dt (a fine trapezoid here), the same in numpy, numba and the
    reference; w = 0 is the plain law; continuous with its slope at D = W."""
    rng = np.random.default_rng(0)
    N = 10 ** rng.uniform(6, 10, 60)
    w = 10 ** rng.uniform(-1.5, 1.5, 60)
    D = N * 10 ** rng.uniform(-2, 2, 60)
    t = np.linspace(0.0, 1.0, 200_001)
    integral = np.array([np.trapezoid(np.minimum(t * d / (wi * n), 1.0), t) * d for d, n, wi in zip(D, N, w)])
    np.testing.assert_allclose(warmup_tokens(D, N, w), integral, rtol=1e-6)
    np.testing.assert_allclose([warmup_tokens_nb(d, n, wi) for d, n, wi in zip(D, N, w)], integral, rtol=1e-6)
    np.testing.assert_allclose(_warmup_amount(D, w * N), integral, rtol=1e-6)
    assert warmup_tokens(1e9, 1e8, 0.0) == 1e9 and warmup_tokens_nb(1e9, 1e8, 0.0) == 1e9
    W, h = 1e9, 1e3  # at the end of the warm-up: value W/2 and slope 1 from both sides
    for side in (-1, 1):
        slope = side * (warmup_tokens(W + side * h, 1e8, 10.0) - warmup_tokens(W, 1e8, 10.0)) / h
        assert slope == pytest.approx(1.0, rel=1e-5)
    assert warmup_tokens(W, 1e8, 10.0) == pytest.approx(W / 2)


@lru_cache(maxsize=None)
def _population(bent: bool, n: int = 48, seed: int = 31) -> np.ndarray:
    """Loss-law draws with w log-uniform in [0.3, 30] warm-up tokens per parameter (and, `bent`, a bend)."""
    rng = np.random.default_rng(seed)
    law = np.array([[d[c] for c in LOSS_COEFFICIENTS] for d in (_draw_one(rng) for _ in range(n))])
    law = np.column_stack([law, 10 ** rng.uniform(np.log10(0.3), np.log10(30.0), n)])
    if not bent:
        return np.ascontiguousarray(law)
    bend = rng.normal(0.0, 0.08, size=n)
    return with_bend(law, bend, data_ranges(rng, n, (3e7, 3e8), (3e9, 3e10), (3.0, 3.0, 6.0, 2.0, 1.0)))


@pytest.mark.parametrize("budget,con", CASES, ids=lambda x: repr(x)[:50])
@pytest.mark.parametrize("bent", [False, True], ids=["law", "bent"])
def test_optimizer_with_warmup_matches_brute_force(budget, con, bent):
    """The optimizer on the warm-up law (its numba objective, generic global search) is never worse than the
    reference's dense brute force scored by its own numpy formula, stays within every budget, and answers
    differently from the plain law: its optimum scores worse under the warm-up (else the test would prove
    little; the budgets are ones whose optima train on tens to hundreds of tokens per parameter)."""
    from bayes_t2.optimum import BentRoute

    thetas = _population(bent)
    route = BentRoute(WarmupLossRoute) if bent else WarmupLossRoute
    name = "loss_warmup_bent" if bent else "loss_warmup"
    out = optimize_array(thetas, [budget], con, objective=route.objective_nb,
                         theta_names=route.coefficient_names)[:, :, 0]
    ref = reference_optimum(name, thetas, budget, con)
    assert np.all(np.isfinite(ref[:, 3]))
    assert _feasible(out, budget, con).all()
    value = objective_at(name, thetas, out[ROW["N"]], out[ROW["D"]], out[ROW["k"]])
    worse = value > ref[:, 3] + TOL * np.abs(ref[:, 3])
    assert not worse.any(), [(int(i), value[i], ref[i, 3]) for i in np.where(worse)[0][:5]]
    plain = reference_optimum("loss", np.ascontiguousarray(thetas[:, :7]), budget, con)
    assert np.mean(objective_at(name, thetas, *plain[:, :3].T) > value + 1e-9) > 0.5  # the plain law's design loses
    if not bent:  # a warm-up costs more tokens the larger the model: the optimum never moves to a larger one
        assert np.all(out[ROW["N"]] <= plain[:, 0] * (1 + 1e-6))


def test_warmup_is_fitted_when_asked_or_when_runs_are_short():
    """"auto" fits w when at least three runs have fewer than 2 tokens per parameter; "on" / "off" force it."""
    spec = {"priors": {}, "warmup": {"enabled": "auto"}}
    long_runs = pd.DataFrame({"params": [1e8, 2e8, 4e8, 8e8], "tokens": [2e10, 2e10, 2e10, 2e10]})
    short = pd.DataFrame({"params": [1e8, 2e8, 4e8, 8e8], "tokens": [1e8, 3e8, 7e8, 2e10]})
    assert warmup_prior(long_runs, spec) is None
    assert warmup_prior(short, spec)["median"] == 1.0
    assert warmup_prior(long_runs, {"priors": {"warmup": {"median": 3.0}}, "warmup": {"enabled": "on"}})["median"] == 3.0
    assert warmup_prior(short, {"priors": {}, "warmup": {"enabled": "off"}}) is None


def _simulated_runs(w: float, seed: int = 3) -> pd.DataFrame:
    """IsoFLOP-like runs of one task (3 budgets, N from 40 down to 0.3 tokens per parameter) from a law with a
    warm-up of w tokens per parameter, 1% log-normal noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for C in (1e17, 4e17, 1.6e18):
        for tpp in np.geomspace(40.0, 0.3, 9):
            N = np.sqrt(C / (6 * tpp))
            D = tpp * N
            loss = loss_law(1.8, 400.0, 0.34, 410.0, 0.28, 0.0, 1.0, N, warmup_tokens(D, N, w), 1.0)
            rows.append({"task": "val", "params": N, "tokens": D, "loss": loss * np.exp(rng.normal(0, 0.01))})
    return pd.DataFrame(rows)


def test_a_fit_with_warmup_recovers_w_and_reads_back_as_the_warmup_law(tmp_path):
    """Runs simulated with w = 4: the fit's 90% interval of w holds it, the fit (and the file it saves) reads
    as `WarmupLossRoute`, and its predictions are the law at the effective tokens."""
    from bayes_t2.data import from_frame
    from bayes_t2.fit import Fit, SamplerSettings, fit

    data = from_frame(_simulated_runs(4.0), source="simulated warm-up")
    result = fit(data, settings=SamplerSettings(draws=300, tune=300, chains=2, seed=5, pointwise=False),
                 progressbar=False, discrepancy=0.0, priors={"warmup": {"enabled": "on"}})
    assert result.route is WarmupLossRoute
    lo, hi = np.percentile(result.posterior["warmup"].values, [5, 95])
    assert lo < 4.0 < hi and hi / lo < 4.0
    path = tmp_path / "fit.nc"
    result.save(path)
    loaded = Fit.load(path)
    assert loaded.route is WarmupLossRoute
    c = loaded.coefficients().isel(task=0)
    law = loaded.route.metric(c, 3e8, 1e9, 1.0)
    expected = loss_law(c["E"], c["A"], c["alpha"], c["B"], c["beta"], c["G"], c["gamma"], 3e8,
                        warmup_tokens(1e9, 3e8, c["warmup"]), 1.0)
    np.testing.assert_allclose(law.values, expected.values, rtol=1e-12)
    plain = fit(data, settings=SamplerSettings(draws=300, tune=300, chains=2, seed=5, pointwise=False),
                progressbar=False, discrepancy=0.0)
    assert plain.route is LossRoute and "warmup" not in plain.posterior


def test_sbc_draws_and_ranks_w_when_the_model_fits_it():
    """SBC from the prior of a model file with the warm-up: truths carry w and are read by the warm-up law."""
    from bayes_t2.priors import load_spec
    from bayes_t2.sbc import _model_route, prior_draws, sbc_design

    design = sbc_design("loss", n_tasks=1)
    model, prior, obs = prior_draws(design, load_spec("loss", {"warmup": {"enabled": "on"}}), 4, 0)
    assert _model_route(LossRoute, model) is WarmupLossRoute
    assert "warmup" in prior and np.all(prior["warmup"].values > 0) and np.all(np.isfinite(obs))
    plain, _, _ = prior_draws(design, load_spec("loss"), 2, 0)
    assert _model_route(LossRoute, plain) is LossRoute


def test_fit_output_names_the_learned_warmup_per_task():
    """`fmt.describe_warmup`: w's median and 90% interval per task, nothing for a fit without it."""
    import xarray as xr

    from bayes_t2.fmt import describe_warmup

    w = np.stack([np.linspace(1.0, 3.0, 101), np.full(101, 5.0)], axis=-1)[None]
    post = xr.Dataset({"warmup": (("chain", "draw", "task"), w)}, coords={"task": ["a", "b"]})
    line = describe_warmup(post)
    assert "a 2 [1.1, 2.9]" in line and "b 5 [5, 5]" in line
    assert describe_warmup(post.drop_vars("warmup")) is None
    power = post.assign(warmup_exponent=(("chain", "draw", "task"), np.zeros_like(w)))
    assert "(N / 1e+08)^0 tokens" in describe_warmup(power) and "a 2 [1.1, 2.9]" in describe_warmup(power)


# ------------------------------------------------------------------ a warm-up that grows as a power of the size
def test_power_warmup_tokens_agree_with_the_schedule_integral():
    """W = w n_ref (N/n_ref)^e: numpy, numba and the reference's own form agree with the integral of the
    schedule; e = 1 is the proportional warm-up w N, e = 0 the same W = w n_ref for every size."""
    from bayes_t2.laws import WARMUP_N_REF, warmup_power_tokens_nb
    from bayes_t2.reference import _warmup_power_objective

    rng = np.random.default_rng(4)
    N = 10 ** rng.uniform(6, 10, 40)
    w = 10 ** rng.uniform(-1, 1.5, 40)
    e = rng.uniform(-0.5, 1.5, 40)
    D = 1e8 * 10 ** rng.uniform(-1.5, 2.5, 40)
    W = w * WARMUP_N_REF * (N / WARMUP_N_REF) ** e
    t = np.linspace(0.0, 1.0, 200_001)
    integral = np.array([np.trapezoid(np.minimum(t * d / wi, 1.0), t) * d for d, wi in zip(D, W)])
    np.testing.assert_allclose(warmup_tokens(D, N, w, exponent=e), integral, rtol=1e-6)
    np.testing.assert_allclose([warmup_power_tokens_nb(*a) for a in zip(D, N, w, e)], integral, rtol=1e-6)
    identity = _warmup_power_objective(lambda theta, N, D, k: D, 0)  # the reference's D_w, read through f = D
    np.testing.assert_allclose(identity(np.column_stack([w, e]), N[:, None], D[:, None], None)[:, 0], integral,
                               rtol=1e-6)
    np.testing.assert_allclose(warmup_tokens(D, N, w, exponent=1.0), warmup_tokens(D, N, w), rtol=1e-12)
    fixed = warmup_tokens(3e9, np.array([1e7, 1e9]), 5.0, exponent=0.0)
    assert fixed[0] == fixed[1] == pytest.approx(3e9 - 5.0 * WARMUP_N_REF / 2)


@lru_cache(maxsize=None)
def _power_population(n: int = 48, seed: int = 37) -> np.ndarray:
    """Loss-law draws with w log-uniform in [0.3, 30] at n_ref and the exponent uniform in [-0.5, 1.5]."""
    rng = np.random.default_rng(seed)
    law = _population(False, n, seed)
    return np.ascontiguousarray(np.column_stack([law, rng.uniform(-0.5, 1.5, n)]))


@pytest.mark.parametrize("budget,con", CASES, ids=lambda x: repr(x)[:50])
def test_optimizer_with_power_warmup_matches_brute_force(budget, con):
    """As for the proportional warm-up: the optimizer on the power warm-up law is never worse than the
    reference's brute force, scored by the reference's own formula, and stays within every budget."""
    from bayes_t2.routes.loss import WarmupPowerLossRoute

    thetas = _power_population()
    route = WarmupPowerLossRoute
    out = optimize_array(thetas, [budget], con, objective=route.objective_nb,
                         theta_names=route.coefficient_names)[:, :, 0]
    ref = reference_optimum(route.law_name, thetas, budget, con)
    assert np.all(np.isfinite(ref[:, 3]))
    assert _feasible(out, budget, con).all()
    value = objective_at(route.law_name, thetas, out[ROW["N"]], out[ROW["D"]], out[ROW["k"]])
    worse = value > ref[:, 3] + TOL * np.abs(ref[:, 3])
    assert not worse.any(), [(int(i), value[i], ref[i, 3]) for i in np.where(worse)[0][:5]]
    proportional = objective_at("loss_warmup", thetas[:, :8], out[ROW["N"]], out[ROW["D"]], out[ROW["k"]])
    assert np.mean(np.abs(proportional - value) > 1e-9) > 0.5  # the exponent changes the objective


def test_a_fit_with_exponent_0_recovers_a_fixed_length_warmup(tmp_path):
    """Runs simulated with a warm-up of the same 4e8 tokens for every size: with `exponent = 0` the fit's 90%
    interval of w (W = w n_ref) holds 4, the fit (and the file it saves) reads back as `WarmupPowerLossRoute`,
    and its predictions are the law after that warm-up; the proportional law (exponent 1) fits the same runs
    worse (a larger noise sd). A setting that is not a number is refused."""
    from bayes_t2.data import from_frame
    from bayes_t2.errors import InputError
    from bayes_t2.fit import Fit, SamplerSettings, fit
    from bayes_t2.routes.loss import WarmupPowerLossRoute

    rng = np.random.default_rng(8)
    rows = []
    for C in (1e17, 4e17, 1.6e18, 6.4e18):
        for tpp in np.geomspace(60.0, 1.0, 8):
            N = np.sqrt(C / (6 * tpp))
            D = tpp * N
            loss = loss_law(1.8, 400.0, 0.34, 410.0, 0.28, 0.0, 1.0, N,
                            warmup_tokens(D, N, 4.0, exponent=0.0), 1.0)
            rows.append({"task": "val", "params": N, "tokens": D, "loss": loss * np.exp(rng.normal(0, 0.01))})
    data = from_frame(pd.DataFrame(rows), source="simulated fixed warm-up")
    settings = SamplerSettings(draws=300, tune=300, chains=2, seed=5, pointwise=False)
    result = fit(data, settings=settings, progressbar=False, discrepancy=0.0,
                 priors={"warmup": {"enabled": "on", "exponent": 0}})
    assert result.route is WarmupPowerLossRoute
    lo, hi = np.percentile(result.posterior["warmup"].values, [5, 95])
    assert lo < 4.0 < hi and hi / lo < 4.0, (lo, hi)
    path = tmp_path / "fit.nc"
    result.save(path)
    loaded = Fit.load(path)
    assert loaded.route is WarmupPowerLossRoute
    c = loaded.coefficients().isel(task=0)
    expected = loss_law(c["E"], c["A"], c["alpha"], c["B"], c["beta"], c["G"], c["gamma"], 3e8,
                        warmup_tokens(1e9, 3e8, c["warmup"], exponent=0.0), 1.0)
    np.testing.assert_allclose(loaded.route.metric(c, 3e8, 1e9, 1.0).values, expected.values, rtol=1e-12)
    proportional = fit(data, settings=settings, progressbar=False, discrepancy=0.0,
                       priors={"warmup": {"enabled": "on"}})
    assert float(proportional.posterior["sigma"].median()) > 1.1 * float(result.posterior["sigma"].median())
    with pytest.raises(InputError, match="warmup.exponent"):
        warmup_prior(data.frame, {"priors": {}, "warmup": {"enabled": "on", "exponent": "learn"}})
