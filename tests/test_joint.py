"""Loss data and per-problem counts for the same tasks, fitted jointly with one shared loss law."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from bayes_t2.data import from_frame
from bayes_t2.errors import InputError
from bayes_t2.fit import SamplerSettings, fit
from bayes_t2.laws import loss_law
from bayes_t2.routes.accuracy import AccuracyRoute, simulate_samples, theta_names

from conftest import SMALL_GRID


def _joint_data(seed: int, n_tasks: int = 2):
    """Counts from the accuracy law and losses (k = 1, 1% log-normal noise) from its own latent loss law."""
    samples, truth = simulate_samples(seed, n_tasks=n_tasks, checkpoints=SMALL_GRID, n_problems=48, n_samples=256)
    rng = np.random.default_rng(seed + 1)
    rows = []
    for task, c in truth["tasks"].items():
        for N, D in SMALL_GRID:
            L = loss_law(c["E"], c["A"], c["alpha"], c["B"], c["beta"], 0.0, 1.0, N, D, 1.0)
            rows.append({"task": task, "params": N, "tokens": D, "loss": L * np.exp(0.01 * rng.standard_normal())})
    return pd.DataFrame(rows), samples, truth


@pytest.fixture(scope="module")
def joint_fit():
    loss, samples, truth = _joint_data(3)
    data = {"loss": from_frame(loss, source="loss"), "samples": from_frame(samples, source="samples")}
    return truth, fit(data, settings=SamplerSettings(draws=250, tune=250, chains=2, seed=5), progressbar=False)


@pytest.mark.slow  # the joint fit takes minutes; test_cli_reads_mixed_kinds keeps the joint route in the fast suite
def test_joint_fit_identifies_theta_in_the_papers_units(joint_fit):
    """The standalone route pins E = 0 and a unit slope; with losses beside the counts, theta1..theta4 and
    E, A, alpha, B, beta are recovered as simulated."""
    truth, result = joint_fit
    assert result.route is AccuracyRoute and "shared_loss_law" in result.spec
    d = result.diagnostics()
    assert d.max_rhat < 1.05 and d.divergences <= 5, d
    hits = []
    for task, c in truth["tasks"].items():
        for name in theta_names:
            lo, hi = np.quantile(result.posterior[name].sel(task=task), [0.05, 0.95])
            hits.append(lo <= c[name] <= hi)
    assert np.mean(hits) >= 0.75, f"90% intervals hold {np.mean(hits):.0%} of the true coefficients"
    # E is identified here (in the standalone route it is pinned to 0)
    e = result.posterior["E"].sel(task="task_a")
    assert float(e.std()) > 0 and abs(float(e.median()) - truth["tasks"]["task_a"]["E"]) < 0.1


@pytest.mark.slow
def test_joint_fit_optimizes_pass_at_k(joint_fit):
    from bayes_t2.budget import SplitBudget

    _, result = joint_fit
    opt = result.optimize([SplitBudget(2.56e19, 2e9)])
    assert bool(((opt["metric"] >= 0) & (opt["metric"] <= 1)).all())
    assert bool((opt["metric"] >= opt["chinchilla_metric"] - 1e-12).all())


def test_joint_needs_loss_data_for_every_counted_task():
    loss, samples, _ = _joint_data(4)
    data = {"loss": from_frame(loss[loss["task"] == "task_a"], source="loss"),
            "samples": from_frame(samples, source="samples")}
    with pytest.raises(InputError, match="task_b"):
        fit(data, settings=SamplerSettings(draws=10, tune=10, chains=1))
    with pytest.raises(InputError, match="jointly"):
        fit({"loss": data["loss"], "samples": data["samples"]}, route="loss")


def test_cli_reads_mixed_kinds(tmp_path):
    loss, samples, _ = _joint_data(5)
    loss[loss["task"] == "task_a"].to_csv(tmp_path / "loss.csv", index=False)
    samples.to_csv(tmp_path / "samples.csv", index=False)
    proc = subprocess.run([sys.executable, "-m", "bayes_t2.cli", "fit", "loss.csv", "samples.csv", "--out", "f.nc"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and "task_b" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "f.nc").exists()
