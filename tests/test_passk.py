"""pass@k: the unbiased estimator and the Beta-law pass@k (bayes_t2.passk)."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numba
import numpy as np
import pytest
from scipy import integrate, stats
from scipy.special import betaln

from bayes_t2.passk import (
    beta_binomial_logpmf,
    beta_pass_at_k,
    beta_pass_at_k_nb,
    log1m_beta_pass_at_k,
    log1m_beta_pass_at_k_nb,
    log1m_unbiased_pass_at_k,
    neg_log_beta_pass_at_k,
    unbiased_pass_at_k,
)


# ------------------------------------------------------------------------------------------ unbiased estimator
def _brute_force_pass_at_k(n: int, c: int, k: int) -> float:
    """Fraction of the k-subsets of n samples (c of them correct) that contain a correct one."""
    outcomes = [1] * c + [0] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(outcomes[i] for i in s) for s in subsets) / len(subsets)


def test_unbiased_matches_brute_force_combinatorics():
    for n in range(1, 9):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert unbiased_pass_at_k(n, c, k) == pytest.approx(_brute_force_pass_at_k(n, c, k), abs=1e-14)


def test_unbiased_matches_exact_fractions_and_is_vectorised():
    n, c, k = np.meshgrid(np.arange(0, 30), np.arange(0, 30), np.arange(0, 30), indexing="ij")
    got = unbiased_pass_at_k(n, c, k)
    assert got.shape == n.shape
    for ni, ci, ki in zip(n.ravel(), c.ravel(), k.ravel()):
        value = got[ni, ci, ki]
        if ci > ni or ki > ni:
            assert np.isnan(value)
            continue
        exact = 1 - Fraction(math.comb(ni - ci, ki), math.comb(ni, ki))
        assert value == pytest.approx(float(exact), rel=1e-13, abs=0)


def test_unbiased_edge_cases():
    # k > n: undefined, NaN -- never 1.0, in particular not for c = 0 (a known bug in published code)
    assert np.isnan(unbiased_pass_at_k(5, 0, 6))
    assert np.isnan(unbiased_pass_at_k(128, 0, 1000))
    assert np.isnan(unbiased_pass_at_k(128, 3, 1000))
    # c = 0: exactly 0; n - c < k: exactly 1
    n = np.array([1, 10, 128, 10_000, 3_000_000])
    assert np.all(unbiased_pass_at_k(n, 0, 1) == 0.0)
    assert np.all(unbiased_pass_at_k(n, 0, n) == 0.0)
    assert unbiased_pass_at_k(10, 10, 1) == 1.0
    assert unbiased_pass_at_k(10, 3, 8) == 1.0
    assert unbiased_pass_at_k(10, 1, 10) == 1.0
    # pass@1 is the success fraction; invalid counts are NaN
    assert unbiased_pass_at_k(3_000_000, 7, 1) == pytest.approx(7 / 3_000_000, rel=1e-14)
    assert np.isnan(unbiased_pass_at_k(10, 11, 1)) and np.isnan(unbiased_pass_at_k(10, -1, 1))


def test_unbiased_large_n_matches_log1p_product():
    for n, c, k in [(100_000, 1, 10), (3_000_000, 3, 1000), (3_000_000, 1000, 100_000), (1000, 999, 1)]:
        exact = math.fsum(math.log1p(-c / (n - j)) for j in range(k))
        assert log1m_unbiased_pass_at_k(n, c, k) == pytest.approx(exact, rel=1e-12)


# --------------------------------------------------------------------------------------------- Beta pass@k
def _exact_log1m(a: float, b: float, k: int) -> float:
    """log prod_{j<k} (b+j)/(a+b+j), term by term without cancellation."""
    return math.fsum(math.log1p(-a / (a + b + j)) if a / (a + b + j) < 0.5 else math.log((b + j) / (a + b + j))
                     for j in range(k))


@pytest.mark.parametrize("a", [1e-3, 0.1, 0.5, 1.0, 3.0, 17.0, 1e3])
def test_beta_pass_at_k_matches_exact_products(a):
    for b in [1e-3, 0.2, 1.0, 5.0, 15.5, 16.0, 16.5, 100.0, 1e4, 1e6, 1e8]:
        for k in [1, 2, 3, 10, 15, 16, 17, 100, 1000, 10_000]:
            exact = _exact_log1m(a, b, k)
            assert log1m_beta_pass_at_k(a, b, k) == pytest.approx(exact, rel=1e-13)
            assert beta_pass_at_k(a, b, k) == pytest.approx(-math.expm1(exact), rel=1e-13)


def test_beta_pass_at_k_small_integer_closed_forms():
    # Beta(1, 1) = Uniform: pass@k = k/(k+1); Beta(1, b): 1 - b/(b+k)
    k = np.arange(1, 50)
    np.testing.assert_allclose(beta_pass_at_k(1.0, 1.0, k), k / (k + 1.0), rtol=1e-14)
    np.testing.assert_allclose(beta_pass_at_k(1.0, 7.0, k), k / (7.0 + k), rtol=1e-14)
    # pass@1 is the mean a/(a+b), to full precision even when b is huge (where scipy's betaln difference is not)
    for a, b in [(1e-6, 1e6), (0.3, 1e7), (2.0, 3.0)]:
        assert beta_pass_at_k(a, b, 1) == pytest.approx(a / (a + b), rel=1e-13)


def test_beta_pass_at_k_agrees_with_scipy_where_scipy_is_accurate():
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0.05, 5, 200), rng.uniform(0.1, 50, 200)
    k = rng.integers(1, 10_000, 200).astype(float)
    ref = -np.expm1(betaln(a, b + k) - betaln(a, b))
    np.testing.assert_allclose(beta_pass_at_k(a, b, k), ref, rtol=1e-10)


@pytest.mark.parametrize("a,b,k", [(0.3, 20.0, 1), (0.3, 20.0, 10), (0.3, 20.0, 1000), (2.0, 0.5, 7),
                                   (0.05, 3.0, 100), (1.5, 200.0, 30)])
def test_beta_pass_at_k_is_the_beta_mean_of_one_minus_miss(a, b, k):
    """pass@k = E[1 - (1 - p)^k] for p ~ Beta(a, b): quadrature (and a Monte Carlo cross-check)."""
    def integrand(p):
        return -math.expm1(k * math.log1p(-p)) * stats.beta.pdf(p, a, b)

    quad, _ = integrate.quad(integrand, 0, 1, points=[1e-6, 1e-3, 0.5], limit=400, epsabs=1e-13, epsrel=1e-10)
    assert beta_pass_at_k(a, b, k) == pytest.approx(quad, rel=1e-6)
    p = np.random.default_rng(1).beta(a, b, 400_000)
    mc = np.mean(-np.expm1(k * np.log1p(-p)))
    assert beta_pass_at_k(a, b, k) == pytest.approx(mc, rel=0.02, abs=1e-4)


def test_beta_pass_at_k_matches_the_exact_product_up_to_a_million():
    """Against the exact product 1 - pass@k = prod_{j<k} (b + j)/(a + b + j), summed in log space
    (-sum log1p(a/(b + j)), float64 rounding ~ k eps relative) for every integer k up to 1e6."""
    kk = np.arange(1, 1_000_001)
    k = np.unique(np.round(np.geomspace(1, 1e6, 400)))
    for a, b in [(0.05, 1e4), (0.3, 20.0), (1.0, 1.0), (5.0, 0.5), (100.0, 1e6)]:
        exact = -np.cumsum(np.log1p(a / (b + kk - 1.0)))[k.astype(int) - 1]
        l1m = log1m_beta_pass_at_k(a, b, k)
        np.testing.assert_allclose(l1m, exact, rtol=1e-9)
        np.testing.assert_allclose(beta_pass_at_k(a, b, k), -np.expm1(exact), rtol=1e-9)


@pytest.mark.parametrize("a,b", [(0.1, 30.0), (0.3, 20.0), (0.8, 5.0), (0.2, 1e3), (2.0, 1.0)])
def test_pass_at_k_power_law_exponent_is_a(a, b):
    """1 - pass@k = B(a, b+k)/B(a, b) ~ Gamma(a+b)/Gamma(b) k^-a, so -log pass@k ~ C k^-a once pass@k is near 1.

    The log-log slope of 1 - pass@k over k in 1e3..1e6 (b << k) is -a; that of -log pass@k is -a in the tail
    where 1 - pass@k is small (for small a that tail starts far beyond k = 1e6; the kernel is exact there too).
    """
    k = np.geomspace(1e3, 1e6, 30) if b < 100 else np.geomspace(1e5, 1e8, 30)
    slope_miss = np.polyfit(np.log(k), log1m_beta_pass_at_k(a, b, k), 1)[0]
    assert slope_miss == pytest.approx(-a, rel=0.01)
    # tail: from where 1 - pass@k < 0.01, over three decades
    k0 = (100.0 * math.exp(math.lgamma(a + b) - math.lgamma(b))) ** (1.0 / a)
    k = np.geomspace(max(k0, 1e3), max(k0, 1e3) * 1e3, 30)
    y = neg_log_beta_pass_at_k(a, b, k)
    assert np.all(np.isfinite(y)) and np.all(y > 0)
    slope = np.polyfit(np.log(k), np.log(y), 1)[0]
    assert slope == pytest.approx(-a, rel=0.02)


def test_neg_log_pass_at_k_slope_in_the_brief_range():
    """A fast-saturating law: over k = 1e3..1e6 itself the slope of -log pass@k is -a."""
    a, b = 0.8, 5.0
    k = np.geomspace(1e3, 1e6, 30)
    slope = np.polyfit(np.log(k), np.log(neg_log_beta_pass_at_k(a, b, k)), 1)[0]
    assert slope == pytest.approx(-a, rel=0.02)


def test_invalid_shapes_are_nan():
    assert np.isnan(beta_pass_at_k(0.0, 1.0, 3)) and np.isnan(beta_pass_at_k(1.0, -1.0, 3))
    assert np.isnan(beta_pass_at_k(1.0, 1.0, -1))
    assert beta_pass_at_k(1.0, 1.0, 0) == 0.0


def test_numba_kernels_callable_from_njit():
    @numba.njit
    def total(a, b, k):
        s = 0.0
        for i in range(a.size):
            s += log1m_beta_pass_at_k_nb(a[i], b[i], k) + beta_pass_at_k_nb(a[i], b[i], k)
        return s

    a, b = np.array([0.3, 1.0]), np.array([20.0, 2.0])
    expected = float(np.sum(log1m_beta_pass_at_k(a, b, 10.0) + beta_pass_at_k(a, b, 10.0)))
    assert total(a, b, 10.0) == pytest.approx(expected, rel=1e-14)
    # real (non-integer) k interpolates smoothly
    assert beta_pass_at_k_nb(0.3, 20.0, 10.0) < beta_pass_at_k_nb(0.3, 20.0, 10.5) < beta_pass_at_k_nb(0.3, 20.0, 11.0)


def test_beta_binomial_logpmf():
    n = 40
    c = np.arange(n + 1)
    for a, b in [(0.2, 5.0), (2.0, 2.0), (0.05, 300.0)]:
        lp = beta_binomial_logpmf(c, n, a, b)
        np.testing.assert_allclose(lp, stats.betabinom.logpmf(c, n, a, b), rtol=1e-10)
        assert math.fsum(np.exp(lp)) == pytest.approx(1.0, abs=1e-12)
        # P(c = 0 | n) = 1 - pass@n
        assert lp[0] == pytest.approx(log1m_beta_pass_at_k(a, b, n), rel=1e-10)


def test_far_tail_stays_exact_power_law():
    """Far beyond any real k (1e30) the kernel still gives log(1 - pass@k) with slope exactly -a."""
    k = np.geomspace(1.0, 1e30, 61)
    for a, b in [(0.1, 30.0), (1e-3, 1e6), (5.0, 0.01)]:
        l1m = log1m_beta_pass_at_k(a, b, k)
        assert np.all(np.isfinite(l1m)) and np.all(np.diff(l1m) < 0)
        assert np.polyfit(np.log(k[-20:]), l1m[-20:], 1)[0] == pytest.approx(-a, rel=1e-6)
