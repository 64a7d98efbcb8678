"""The accuracy route: T2 "approach 2", a Beta law of per-problem success whose mean and concentration move
with a latent Chinchilla loss, fitted to per-problem sample counts with a beta-binomial likelihood.

One job per module (the maths is in `model`'s docstring and docs/model.md):

* `config`     -- names, fixed bounds, models/accuracy.toml + overrides
* `cells`      -- per-problem counts -> checked sufficient statistics (cells, units, reference point)
* `kernels`    -- the elementwise formulas (chance floor, shape bounds, Beta shapes), once per backend
* `model`      -- the hierarchical PyMC model
* `law`        -- the law from coefficients: shapes and pass@k per draw, the optimizer's objective, normalisation
* `simulation` -- counts drawn from the law with a known truth
* `route`      -- `AccuracyRoute`, the route interface
"""

from .cells import check_cells, collapse_samples, reference_point, unit_table
from .config import (CELL_COLUMNS, LOG_NU_BOUNDS, LOGIT_MU_BOUNDS, NO_FLOOR, SAMPLED, T2_COEFFICIENTS,
                     accuracy_config, deviation_nu, theta_names)
from .law import (accuracy_pass_at_k, accuracy_shapes, neg_pass_at_k_bent_nb, neg_pass_at_k_nb, pack_theta,
                  standardize_coefficients)
from .model import build_accuracy_model, chance_floor, counts_likelihood, pooled
from .route import AccuracyRoute
from .simulation import DEFAULT_TRUTH, PYTHIA_PARAMS, PYTHIA_TOKENS, simulate_samples

__all__ = [
    "AccuracyRoute",
    "CELL_COLUMNS",
    "DEFAULT_TRUTH",
    "LOGIT_MU_BOUNDS",
    "LOG_NU_BOUNDS",
    "NO_FLOOR",
    "PYTHIA_PARAMS",
    "PYTHIA_TOKENS",
    "SAMPLED",
    "T2_COEFFICIENTS",
    "accuracy_config",
    "accuracy_pass_at_k",
    "accuracy_shapes",
    "build_accuracy_model",
    "chance_floor",
    "check_cells",
    "collapse_samples",
    "counts_likelihood",
    "deviation_nu",
    "neg_pass_at_k_bent_nb",
    "neg_pass_at_k_nb",
    "pack_theta",
    "pooled",
    "reference_point",
    "simulate_samples",
    "standardize_coefficients",
    "theta_names",
    "unit_table",
]
