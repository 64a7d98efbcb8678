"""Decisions about the run you will train: the checkpoint scatter enters the metric at a design, with one
fresh effect per draw shared by every design (common random numbers) and a seed. Truth: the loss route's
predictive is law x exp(sigma eps), eps ~ Student-t(5) (the fit's likelihood), reconstructed here."""

from __future__ import annotations

import numpy as np
import pytest

from bayes_t2.baselines import sample_view
from bayes_t2.budget import Constraints, SplitBudget
from bayes_t2.decide import decide
from bayes_t2.predict import SharedEffects, metric_draws

from test_decide import TRUTH, draws_of, law, make_fit

BUDGET = SplitBudget(2.56e19, 2e9)


def noisy_fit(S: int = 120, sigma: float = 0.05, seed: int = 0):
    rng = np.random.default_rng(seed)
    coefs = {k: v * np.exp(0.05 * rng.standard_normal(S)) for k, v in TRUTH.items()}
    coefs["sigma"] = np.full(S, sigma)
    return make_fit(coefs)


def effects(S: int, seed: int) -> np.ndarray:
    """The per-draw effect as the loss route draws it (Student-t, 5 degrees of freedom, default spec)."""
    return np.random.default_rng(seed).standard_t(5.0, size=(S, 1))[:, 0]


def test_metric_draws_is_law_times_one_shared_effect_per_draw():
    fit = noisy_fit()
    post = sample_view(fit.posterior[["E", "A", "alpha", "B", "beta", "G", "gamma", "sigma"]].sel(task="a"))
    N = np.array([1e8, 3e8, 1e9])
    D = BUDGET.train_flops / (6 * N)
    k = np.array([10.0, 3.0, 1.0])
    x = metric_draws(fit, post, N, D, k, seed=7)
    c = draws_of(fit)
    truth = law(c, N, D, k).T * np.exp(0.05 * effects(120, 7))[:, None]
    np.testing.assert_allclose(x, truth, rtol=1e-12)
    # law=True is the law alone; another seed gives other effects; the same seed the same numbers
    np.testing.assert_allclose(metric_draws(fit, post, N, D, k, law=True), law(c, N, D, k).T, rtol=1e-12)
    assert not np.allclose(metric_draws(fit, post, N, D, k, seed=8), x)
    np.testing.assert_array_equal(metric_draws(fit, post, N, D, k, seed=7), x)


def test_shared_effects_refuse_other_shapes():
    rng = SharedEffects(0, 4, 3)
    assert rng.standard_normal((4, 3)).shape == (4, 3)
    with pytest.raises(ValueError):
        rng.standard_normal((3, 4))


def test_optimize_and_decide_include_the_scatter_by_default():
    fit = noisy_fit()
    c = draws_of(fit)
    eps = np.exp(0.05 * effects(120, 0))
    opt = fit.optimize([BUDGET]).isel(budget=0).sel(task="a")
    law_opt = fit.optimize([BUDGET], law=True).isel(budget=0).sel(task="a")
    # the per-draw optimum's metric: the law at that optimum times the draw's effect
    np.testing.assert_allclose(opt["metric"].values.reshape(-1), law_opt["metric"].values.reshape(-1) * eps,
                               rtol=1e-12)
    # the scatter widens the interval of a fixed design's metric ...
    rec = opt["recommended_metric"].values.reshape(-1)
    rec_law = law_opt["recommended_metric"].values.reshape(-1)
    assert np.ptp(np.log(rec)) > np.ptp(np.log(rec_law))
    # ... but an effect that multiplies every design alike leaves P(beats) as on the law (common random numbers)
    assert float(opt.p_beats_chinchilla) == float(law_opt.p_beats_chinchilla)
    ds = decide(fit, BUDGET, Constraints(), risk="quantile:0.1").sel(task="a")
    assert ds.attrs["scatter"] == 1
    chosen = ds.sel(design="chosen")
    x = law(c, float(chosen.N), float(chosen.D), float(chosen.k)) * eps
    np.testing.assert_allclose(chosen["metric"].values.reshape(-1), x, rtol=1e-12)
    m = int(np.ceil(0.1 * 120 - 1e-9))
    assert float(chosen.utility) == pytest.approx(np.sort(x)[::-1][m - 1], rel=1e-12)
    # regret: same draw, same effect, against the draw's own optimum
    np.testing.assert_allclose(chosen["regret"].values.reshape(-1),
                               x - law_opt["metric"].values.reshape(-1) * eps, rtol=1e-9, atol=1e-12)
