"""pass@k: the unbiased estimator from counts, and the Beta-law pass@k, both in log space.

Everything here rests on one numba kernel, `log_gamma_ratio_nb(x, k, a)`:

    H(x, k, a) = lgamma(x + k + a) - lgamma(x + k) - lgamma(x + a) + lgamma(x)      (x > 0; k, a >= 0)

which both pass@k formulas are a case of:

* Beta law, p ~ Beta(a, b):  log(1 - pass@k) = log B(a, b + k) - log B(a, b) = -H(b, k, a)
* unbiased estimator (n samples, c correct): log(C(n-c, k) / C(n, k)) = -H(n - c - k + 1, k, c)

Written as four lgamma calls, H loses everything to cancellation once the arguments are large and k or a is small
relative to them (lgamma(1e6) ~ 1.3e7, so the absolute error is ~1e-9 while the answer can be ~1e-12). The kernel
instead shifts small arguments up with the recurrence lgamma(x) = lgamma(x + 1) - log(x) (written with log1p) and
evaluates the rest with Stirling's series arranged so that the leading term is a * log1p(k / x) and no large
numbers are subtracted (H is symmetric in k and a; the smaller one is treated as the increment). Checked against
exact sums of log1p terms: relative error < 1e-15 for a in [1e-3, 1e3], b in [1e-3, 1e8], k in [1, 1e6], and
< 2e-9 in the far corners (a or b down to 1e-12 or up to 1e8).

pass@k itself is -expm1(log(1 - pass@k)), accurate also when pass@k is tiny.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from scipy.special import gammaln

#: Arguments below this are shifted up by the recurrence before Stirling's series is used.
_SHIFT = 16.0


@numba.njit(cache=True, nogil=True)
def _stirling_remainder_tail(x):
    """lgamma(x) - [(x - 1/2) log x - x + log(2 pi)/2 + 1/(12 x)] for x >= 16 (error < 1e-17)."""
    r = 1.0 / (x * x)
    return -r * (1.0 / 360.0 - r * (1.0 / 1260.0 - r * (1.0 / 1680.0
                 - r * (1.0 / 1188.0 - r * (691.0 / 360360.0))))) / x


@numba.njit(cache=True, nogil=True)
def log_gamma_ratio_nb(x, k, a):
    """H = lgamma(x+k+a) - lgamma(x+k) - lgamma(x+a) + lgamma(x) without cancellation (x > 0, k >= 0, a >= 0)."""
    if k == 0.0 or a == 0.0:
        return 0.0
    if k > a:  # H is symmetric in (k, a): let k be the smaller one
        k, a = a, k
    s = 0.0
    while x < _SHIFT:  # lgamma(x) = lgamma(x + 1) - log(x) on all four terms: adds log((x+a)(x+k) / (x(x+k+a)))
        s += math.log1p(a * k / (x * (x + k + a)))
        x += 1.0
    y = x + k
    # Stirling: lgamma(t + a) - lgamma(t) = f(t) + a log t - a + r(t + a) - r(t), f(t) = (t + a - 1/2) log1p(a/t)
    if a < x:  # k <= a < x: f(y) - f(x) = (y + a - 1/2) log1p(-a k / (y (x + a))) + k log1p(a / x), all ~ a k / x
        main = (y + a - 0.5) * math.log1p(-a * k / (y * (x + a))) + k * math.log1p(a / x) + a * math.log1p(k / x)
    else:      # a >= x: the same series with k as the increment; the result is >= k log(2), the terms ~ k log(k/x)
        main = ((x + a + k - 0.5) * math.log1p(k / (x + a)) - (y - 0.5) * math.log1p(k / x)
                + k * math.log1p(a / x))
    s += (main
          # Stirling remainders r(y+a) - r(y) - r(x+a) + r(x): the 1/(12 t) term combined exactly, then the tail
          + a * k * (x + y + a) / (12.0 * x * y * (x + a) * (y + a))
          + (_stirling_remainder_tail(y + a) - _stirling_remainder_tail(y))
          - (_stirling_remainder_tail(x + a) - _stirling_remainder_tail(x)))
    return s


@numba.njit(cache=True, nogil=True)
def log1m_beta_pass_at_k_nb(a, b, k):
    """log(1 - pass@k) for p ~ Beta(a, b): lgamma(b+k) - lgamma(a+b+k) + lgamma(a+b) - lgamma(b), stably.

    NaN for a <= 0, b <= 0 or k < 0; k may be real (a continuous relaxation of the number of samples).
    """
    if not (a > 0.0 and b > 0.0 and k >= 0.0):
        return np.nan
    return -log_gamma_ratio_nb(b, k, a)


@numba.njit(cache=True, nogil=True)
def beta_pass_at_k_nb(a, b, k):
    """pass@k = E[1 - (1 - p)^k] for p ~ Beta(a, b)."""
    return -math.expm1(log1m_beta_pass_at_k_nb(a, b, k))


@numba.njit(cache=True, nogil=True)
def log1m_unbiased_pass_at_k_nb(n, c, k):
    """log(C(n-c, k) / C(n, k)) = log(1 - unbiased pass@k); -inf when n - c < k, NaN when k > n or bad counts."""
    if not (n >= 0.0 and 0.0 <= c <= n and 0.0 <= k <= n):
        return np.nan
    if n - c < k:
        return -np.inf
    return -log_gamma_ratio_nb(n - c - k + 1.0, k, c)


@numba.njit(cache=True, nogil=True)
def unbiased_pass_at_k_nb(n, c, k):
    """The unbiased estimator 1 - C(n-c, k)/C(n, k) (Chen et al. 2021): exact 0 for c = 0, exact 1 for n - c < k,
    NaN for k > n (there is no unbiased estimate from fewer samples than k; it is NOT 1)."""
    if not (n >= 0.0 and 0.0 <= c <= n and 0.0 <= k <= n):
        return np.nan
    if n - c < k:
        return 1.0
    if c == 0.0 or k == 0.0:
        return 0.0
    return -math.expm1(-log_gamma_ratio_nb(n - c - k + 1.0, k, c))


_SIG = ["float64(float64, float64, float64)"]
_log1m_beta_ufunc = numba.vectorize(_SIG, cache=True)(lambda a, b, k: log1m_beta_pass_at_k_nb(a, b, k))
_beta_ufunc = numba.vectorize(_SIG, cache=True)(lambda a, b, k: beta_pass_at_k_nb(a, b, k))
_unbiased_ufunc = numba.vectorize(_SIG, cache=True)(lambda n, c, k: unbiased_pass_at_k_nb(n, c, k))
_log1m_unbiased_ufunc = numba.vectorize(_SIG, cache=True)(lambda n, c, k: log1m_unbiased_pass_at_k_nb(n, c, k))


def _f(x):
    """float64 view of array-likes; xarray objects pass through (ufuncs keep their dims and coords)."""
    return x if hasattr(x, "dims") else np.asarray(x, dtype=np.float64)


def unbiased_pass_at_k(n, c, k):
    """Unbiased pass@k from n samples with c correct, vectorised (broadcasts n, c, k).

    1 - C(n-c, k)/C(n, k) in log space; exact 0 where c = 0 (and k <= n), exact 1 where n - c < k, NaN where
    k > n or the counts are invalid (c < 0, c > n).
    """
    return _unbiased_ufunc(_f(n), _f(c), _f(k))


def log1m_unbiased_pass_at_k(n, c, k):
    """log(1 - unbiased pass@k) = log(C(n-c, k)/C(n, k)), vectorised; -inf where n - c < k, NaN where k > n."""
    return _log1m_unbiased_ufunc(_f(n), _f(c), _f(k))


def log1m_beta_pass_at_k(a, b, k):
    """log(1 - pass@k) = log B(a, b+k) - log B(a, b) for p ~ Beta(a, b), vectorised and stable (see module doc)."""
    return _log1m_beta_ufunc(_f(a), _f(b), _f(k))


def beta_pass_at_k(a, b, k):
    """pass@k = 1 - B(a, b+k)/B(a, b) = E[1 - (1-p)^k], p ~ Beta(a, b), vectorised; works on xarray objects."""
    return _beta_ufunc(_f(a), _f(b), _f(k))


def neg_log_beta_pass_at_k(a, b, k):
    """-log pass@k (the T2 loss-route metric at k), stable both for tiny pass@k and for pass@k -> 1."""
    l1m = log1m_beta_pass_at_k(a, b, k)
    return -np.log(-np.expm1(l1m))


def beta_binomial_logpmf(c, n, a, b):
    """log P(c | n, a, b) of the beta-binomial: log C(n, c) + log B(c+a, n-c+b) - log B(a, b), vectorised."""
    c, n, a, b = (np.asarray(v, dtype=float) for v in (c, n, a, b))
    log_choose = gammaln(n + 1.0) - gammaln(c + 1.0) - gammaln(n - c + 1.0)
    out = (log_choose + gammaln(c + a) + gammaln(n - c + b) - gammaln(n + a + b)
           - gammaln(a) - gammaln(b) + gammaln(a + b))
    return np.where((c >= 0) & (c <= n) & (a > 0) & (b > 0), out, np.nan)
