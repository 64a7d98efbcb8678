"""Shared fixtures: one small real fit per test session (compiled once, fixed seed); `run_cli`, the command
line in-process (test modules import it: ``from conftest import run_cli``)."""

from __future__ import annotations

import io
import warnings
from contextlib import redirect_stderr, redirect_stdout

import numpy as np
import pytest

from bayes_t2.data import from_frame
from bayes_t2.fit import SamplerSettings, fit
from bayes_t2.routes.accuracy import PYTHIA_PARAMS, PYTHIA_TOKENS, simulate_samples
from bayes_t2.simulate import simulate_loss

#: 5 sizes x 5 token counts of the Pythia-like grid (14M-12B params, 2M-300B tokens)
SMALL_GRID = [(n, d) for n in PYTHIA_PARAMS[::2] for d in PYTHIA_TOKENS[::2]]


def run_cli(*args, keep_warnings: bool = False) -> tuple[int, str, str]:
    """Run `bayes-t2 ARGS` in-process: (exit code, stdout, stderr). Python warnings are dropped unless
    `keep_warnings` (then the caller's warning filters and recorders see them)."""
    from bayes_t2.cli import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err), warnings.catch_warnings():
        if not keep_warnings:
            warnings.simplefilter("ignore")
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="session")
def loss_truth_fit():
    """3 tasks simulated with a known truth, fitted with nutpie (2 chains x 300 tune x 300 draws)."""
    frame, truth = simulate_loss(seed=7, n_tasks=3, budgets=np.geomspace(1.25e16, 2.56e19, 6),
                                 sizes_per_budget=5, n_overtrained=3, ks=(1, 4, 16, 64))
    data = from_frame(frame, source="simulated")
    # the law alone (no discrepancy beyond the data): tests compare it with the truth's formula
    result = fit(data, settings=SamplerSettings(draws=300, tune=300, chains=2, seed=11), progressbar=False,
                 discrepancy=0.0)
    return data, truth, result


@pytest.fixture(scope="session")
def accuracy_truth_fit():
    """2 tasks x 25 Pythia-like checkpoints x 64 problems x 256 samples from a known Beta law, fitted through
    the public API (accuracy route, nutpie 2 chains x 300 tune x 300 draws)."""
    frame, truth = simulate_samples(11, n_tasks=2, checkpoints=SMALL_GRID, n_problems=64, n_samples=256)
    data = from_frame(frame, source="simulated samples")
    result = fit(data, settings=SamplerSettings(draws=300, tune=300, chains=2, seed=20260), progressbar=False)
    return data, truth, result
