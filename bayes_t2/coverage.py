"""How sure is a coverage measured on clustered points?

A backtest's coverage is the share of held-out points inside their intervals. The points of one held-out
checkpoint (its tasks and k values) share that checkpoint's effect, so they hit or miss together: 292 points
from 25 checkpoints carry somewhere between 25 and 292 draws' worth of evidence, and where in that range depends
on how strongly they cluster, which the data must tell.

`coverage_interval` answers with a beta-binomial model of the hits per checkpoint,

    hits_c ~ BetaBinomial(points_c, rate * phi, (1 - rate) * phi),   phi = 1 / rho - 1,

the posterior of `rate` (the share of checkpoints like these that a model's intervals would cover) under a
Jeffreys prior on the rate and a uniform prior on the within-checkpoint correlation `rho`, integrated on a
grid (deterministic: no seed). With one point per checkpoint it is the Jeffreys binomial interval.

Why not a bootstrap over checkpoints: when every checkpoint hits, every resample hits, and the percentile
interval is [100%, 100%]; on simulated clustered hits with a known rate such bootstrap intervals held the
rate in 43-91% of data sets at a nominal 90%, this one in 77-96% (benchmarks/coverage_intervals.py,
docs/backtest.md; the test suite repeats one of those scenarios).
"""

from __future__ import annotations

import numpy as np
from scipy.special import betaln

#: grid of the coverage rate: 1000 cells on (0, 1), their edges and midpoints
_EDGES = np.linspace(0.0, 1.0, 1001)
_RATE = 0.5 * (_EDGES[1:] + _EDGES[:-1])
#: grid of the within-checkpoint correlation rho (midpoints of 50 cells on (0, 1))
_RHO = (np.arange(50) + 0.5) / 50


def coverage_interval(covered: np.ndarray, cluster: np.ndarray, prob: float = 0.9) -> list[float]:
    """Equal-tailed `prob` posterior interval of the coverage rate behind 0/1 `covered` flags whose points are
    grouped by `cluster` (one label, or one row of labels, per point: points of a checkpoint share it)."""
    return coverage_intervals(covered, cluster, (prob,))[0]


def coverage_intervals(covered: np.ndarray, cluster: np.ndarray, probs: tuple[float, ...]) -> list[list[float]]:
    """`coverage_interval` at several levels from one posterior (the grid is evaluated once)."""
    covered = np.asarray(covered, float).ravel()
    if covered.size == 0:
        return [[float("nan"), float("nan")] for _ in probs]
    _, index = np.unique(np.asarray(cluster), return_inverse=True, axis=0)
    index = index.ravel()
    hits = np.bincount(index, weights=covered)
    sizes = np.bincount(index).astype(float)
    # checkpoints with the same (hits, size) contribute the same term: evaluate each pair once
    pairs, count = np.unique(np.column_stack([hits, sizes]), axis=0, return_counts=True)
    hits, sizes = pairs[:, 0], pairs[:, 1]
    phi = 1.0 / _RHO - 1.0
    a = _RATE[:, None, None] * phi[None, :, None]
    b = (1.0 - _RATE)[:, None, None] * phi[None, :, None]
    # beta-binomial log likelihood up to the binomial coefficients (constant in rate and rho)
    loglik = ((betaln(hits + a, sizes - hits + b) - betaln(a, b)) * count).sum(axis=-1)
    loglik -= loglik.max()
    # uniform prior on rho; the Jeffreys (arcsine) prior's exact mass in each rate cell, finite at the ends
    weight = np.exp(loglik).sum(axis=1) * np.diff(2.0 / np.pi * np.arcsin(np.sqrt(_EDGES)))
    cdf = np.append(0.0, np.cumsum(weight) / weight.sum())
    intervals = []
    for prob in probs:
        tail = (1.0 - prob) / 2.0
        lo, hi = np.interp([tail, 1.0 - tail], cdf, _EDGES)
        intervals.append([float(lo), float(hi)])
    return intervals
