"""Per-problem counts drawn from the accuracy law with a known truth (the ``samples`` data kind), for tests,
calibration and benchmarks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ...errors import InputError
from .config import T2_COEFFICIENTS
from .law import accuracy_shapes

#: Pythia-like design: nominal sizes 14M-12B, training tokens 2M-300B (2,097,152 tokens per step).
PYTHIA_PARAMS = (14e6, 70e6, 160e6, 410e6, 1.0e9, 1.4e9, 2.8e9, 6.9e9, 12e9)
PYTHIA_TOKENS = tuple(2_097_152.0 * s for s in (1, 32, 256, 1000, 3000, 10_000, 30_000, 100_000, 143_000))

#: Default truth: Chinchilla-like latent losses (Hoffmann et al. 2022 fit for the first task), with theta's
#: chosen so that mean success runs from ~1e-9 (14M params, 2M tokens) to ~0.3-0.5 (12B, 300B) and the Beta
#: shape a = mu nu is ~0.3-1 for large models (a heavy left tail of unsolved problems, as on GSM8K).
DEFAULT_TRUTH: dict[str, dict[str, float]] = {
    "task_a": {"theta1": 4.4, "theta2": -2.5, "theta3": 0.0, "theta4": 0.3,
               "E": 1.69, "A": 406.4, "alpha": 0.34, "B": 410.7, "beta": 0.28, "logit_floor": -16.0},
    "task_b": {"theta1": 3.5, "theta2": -2.0, "theta3": 0.5, "theta4": 0.2,
               "E": 1.80, "A": 300.0, "alpha": 0.30, "B": 500.0, "beta": 0.30, "logit_floor": -15.0},
    "task_c": {"theta1": 5.0, "theta2": -2.2, "theta3": -0.5, "theta4": 0.4,
               "E": 1.60, "A": 500.0, "alpha": 0.36, "B": 350.0, "beta": 0.26, "logit_floor": -17.0},
    "task_d": {"theta1": 3.0, "theta2": -1.8, "theta3": 1.0, "theta4": 0.1,
               "E": 1.75, "A": 350.0, "alpha": 0.32, "B": 450.0, "beta": 0.32, "logit_floor": -15.5},
}


def simulate_samples(seed: int, n_tasks: int = 2, checkpoints: Sequence[tuple[float, float]] | None = None,
                     n_problems: int = 128, n_samples: int | Sequence[int] = 256,
                     truth: Mapping[str, Any] | None = None,
                     shared_difficulty: bool = False) -> tuple[pd.DataFrame, dict]:
    """Per-problem counts (the ``samples`` kind) drawn from the accuracy law with a known truth.

    checkpoints: (params, tokens) pairs; default the Pythia-like grid `PYTHIA_PARAMS` x `PYTHIA_TOKENS`.
    n_samples: samples per problem, or a sequence to draw each (checkpoint, problem)'s count from (uniformly,
    like adaptive sampling). truth: ``{"tasks": {task: T2 coefficients}}`` or ``{task: coefficients}``;
    default the first `n_tasks` of `DEFAULT_TRUTH`. shared_difficulty: if True a problem keeps its quantile of
    the Beta law across checkpoints (hard problems stay hard, as on real benchmarks; the model assumes
    independence, so this tests robustness), else p is drawn independently per checkpoint and problem.

    Returns (frame with columns task, model, params, tokens, problem, n_samples, n_correct; truth dict
    ``{"route": "accuracy", "seed", "n_problems", "tasks": {task: {theta1..theta4, E, A, alpha, B, beta}}}``).
    """
    rng = np.random.default_rng(seed)
    if truth is None:
        if not 1 <= n_tasks <= len(DEFAULT_TRUTH):
            raise InputError(f"n_tasks must be in 1..{len(DEFAULT_TRUTH)} without an explicit truth")
        tasks = {t: dict(DEFAULT_TRUTH[t]) for t in list(DEFAULT_TRUTH)[:n_tasks]}
    else:
        raw = truth.get("tasks", truth)
        tasks = {}
        for t, c in raw.items():
            missing = [k for k in T2_COEFFICIENTS if k not in c]
            if missing:
                raise InputError(f"truth for task '{t}' is missing {', '.join(missing)}")
            tasks[str(t)] = {k: float(c[k]) for k in T2_COEFFICIENTS}
    if checkpoints is None:
        checkpoints = [(n, d) for n in PYTHIA_PARAMS for d in PYTHIA_TOKENS]
    ckpt = np.asarray(checkpoints, dtype=float).reshape(-1, 2)
    if np.any(ckpt <= 0):
        raise InputError("checkpoints need params > 0 and tokens > 0")
    if n_problems < 1:
        raise InputError("n_problems must be >= 1")
    choices = np.atleast_1d(np.asarray(n_samples, dtype=np.int64))
    if np.any(choices < 1):
        raise InputError("n_samples must be >= 1")

    rows = []
    for task, coefs in tasks.items():
        a, b = accuracy_shapes(coefs, ckpt[:, 0], ckpt[:, 1])
        u = rng.uniform(size=n_problems)  # per-problem quantile (used when shared_difficulty)
        for j, (N, D) in enumerate(ckpt):
            if shared_difficulty:
                p = stats.beta.ppf(u, a[j], b[j])
            else:
                p = rng.beta(a[j], b[j], size=n_problems)
            n = choices[rng.integers(0, choices.size, size=n_problems)] if choices.size > 1 else \
                np.full(n_problems, choices[0])
            c = rng.binomial(n, np.clip(p, 0.0, 1.0))
            rows.append(pd.DataFrame({"task": task, "model": f"N{N:.3g}-D{D:.3g}", "params": N, "tokens": D,
                                      "problem": np.arange(n_problems), "n_samples": n, "n_correct": c}))
    frame = pd.concat(rows, ignore_index=True)
    out_truth = {"route": "accuracy", "seed": int(seed), "n_problems": int(n_problems),
                 "shared_difficulty": bool(shared_difficulty), "tasks": tasks}
    return frame, out_truth
