"""The scaling-law formulas, each written once.

`loss_law` is plain arithmetic, so the same function serves numpy arrays, pytensor tensors (inside the PyMC
model) and, through `loss_law_nb`, numba kernels (inside the optimizer). Names follow `shared/DESIGN.md`:
L(N, D, k) = E + A/N^alpha + B/D^beta + G/k^gamma. A k-free (Chinchilla) law is the case G = 0.
"""

from __future__ import annotations

import numba
import numpy as np

LOSS_COEFFICIENTS: tuple[str, ...] = ("E", "A", "alpha", "B", "beta", "G", "gamma")
CHINCHILLA_TOKENS_PER_PARAM = 20.0


def loss_law(E, A, alpha, B, beta, G, gamma, N, D, k):
    """Task loss at k samples: irreducible + model-size + data + sampling terms."""
    return E + A * N ** (-alpha) + B * D ** (-beta) + G * k ** (-gamma)


loss_law_nb = numba.njit(cache=True, nogil=True)(loss_law)


def chinchilla_optimal_params(A, alpha, B, beta, train_flops):
    """Closed-form compute-optimal N for C = 6ND: N_opt = G (C/6)^(beta/(alpha+beta)), G = (alpha A/(beta B))^(1/(alpha+beta))."""
    g = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
    return g * (np.asarray(train_flops) / 6.0) ** (beta / (alpha + beta))


chinchilla_optimal_params_nb = numba.njit(cache=True, nogil=True)(chinchilla_optimal_params)
