"""Performance and scale-out: the compiled-model cache, chunked and distributed optimisation, fit_many."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from bayes_t2 import samplers
from bayes_t2.budget import Constraints, SplitBudget, TotalBudget
from bayes_t2.cluster import dask_client, draws_per_chunk
from bayes_t2.data import from_frame
from bayes_t2.errors import InputError
from bayes_t2.fit import SamplerSettings, fit, fit_many
from bayes_t2.priors import load_spec, spec_to_json
from bayes_t2.routes.loss import LossRoute

# the session fixture's sampler settings (tests/conftest.py), without the pointwise groups
FIXTURE_SETTINGS = SamplerSettings(draws=300, tune=300, chains=2, seed=11, pointwise=False)
BUDGETS = [SplitBudget(2.56e19, 2e9), SplitBudget(1e21, 1e11), TotalBudget(1e22, 1e9)]


def _key(frame, spec=None):
    spec = spec or load_spec("loss")
    return samplers.model_key("loss", spec_to_json(spec), LossRoute.build_model(frame, spec), "nutpie")


def _perturbed(data, seed=1):
    """The same design with new loss values: same shapes, different data."""
    frame = data.frame.copy()
    frame["loss"] = frame["loss"] * np.exp(0.02 * np.random.default_rng(seed).standard_normal(len(frame)))
    return from_frame(frame, source="perturbed")


def test_model_key_depends_on_shape_and_spec_not_values(loss_truth_fit):
    data = loss_truth_fit[0]
    frame = data.frame
    assert _key(frame) == _key(_perturbed(data).frame)  # new values, same shapes: reuse
    assert _key(frame) != _key(frame.iloc[:-1])  # one row fewer
    spec = load_spec("loss")
    spec["likelihood"]["nu"] = spec["likelihood"]["nu"] + 1.0
    assert _key(frame) != _key(frame, spec)  # a prior or likelihood setting
    assert _key(frame) != _key(frame.assign(task=frame["task"].replace({"arith": "other"})))  # labels


def test_refit_of_same_shape_skips_compilation_and_uses_the_new_data(loss_truth_fit):
    data, _, first = loss_truth_fit
    again = fit(data, settings=FIXTURE_SETTINGS, progressbar=False, discrepancy=0.0)
    assert samplers.stats.last_hit and samplers.stats.last_compile_seconds == 0.0
    # the cached model gives the same draws as the fit that compiled it (same seed, same data)
    for name in first.posterior.data_vars:
        np.testing.assert_array_equal(again.posterior[name].values, first.posterior[name].values)

    new = _perturbed(data)
    other = fit(new, settings=FIXTURE_SETTINGS, progressbar=False, discrepancy=0.0)
    assert samplers.stats.last_hit
    const = other.tree["constant_data"].to_dataset()
    obs = other.tree["observed_data"].to_dataset()
    np.testing.assert_allclose(obs["log_loss"].values, np.log(new.frame["loss"].to_numpy()))
    assert float(const["scaling_L0"]) == pytest.approx(float(np.exp(np.log(new.frame["loss"]).mean())))
    assert not np.array_equal(other.posterior["E"].values, first.posterior["E"].values)


@pytest.mark.slow
def test_cache_hit_equals_fresh_compile(loss_truth_fit):
    new = _perturbed(loss_truth_fit[0], seed=2)
    cached = fit(new, settings=FIXTURE_SETTINGS, progressbar=False, discrepancy=0.0)
    assert samplers.stats.last_hit
    samplers.clear_cache()
    fresh = fit(new, settings=FIXTURE_SETTINGS, progressbar=False, discrepancy=0.0)
    assert not samplers.stats.last_hit
    xr.testing.assert_equal(cached.posterior, fresh.posterior)  # values and coords (attrs hold timings)


def test_unknown_or_missing_sampler(monkeypatch):
    with pytest.raises(InputError, match="--sampler must be one of"):
        SamplerSettings(sampler="stan")
    monkeypatch.setattr(samplers, "numpyro_available", lambda: False)
    with pytest.raises(InputError, match=r"bayes-t2\[jax\]"):
        SamplerSettings(sampler="numpyro")


def test_chunked_records_equal_one_pass(loss_truth_fit):
    result = loss_truth_fit[2]
    cons = Constraints(k_max=64)
    one = result.optimum_records(BUDGETS, cons, budgets_per_chunk=len(BUDGETS))
    chunked = result.optimum_records(BUDGETS, cons, budgets_per_chunk=1, draws_per_chunk=70, progress=True)
    assert chunked == one
    assert [r["task"] for r in one] == [t for t in result.tasks for _ in BUDGETS]


def test_distributed_optimum_equals_in_process(loss_truth_fit):
    result = loss_truth_fit[2]
    local = result.optimize(BUDGETS, Constraints(max_tokens=1e11))
    with dask_client(workers=2, processes=False) as client:
        assert len(client.nthreads()) == 2
        chunk = draws_per_chunk(client, result.posterior.sizes["draw"])
        assert chunk == 75  # 300 draws over 2 x 2 chunks
        remote = result.optimize(BUDGETS, Constraints(max_tokens=1e11), draws_per_chunk=chunk)
    assert remote["N"].chunks is None  # computed, not lazy
    xr.testing.assert_identical(remote, local)


def test_dask_client_errors():
    with dask_client() as client:
        assert client is None
    with pytest.raises(InputError, match="not both"):
        with dask_client(workers=2, scheduler="tcp://127.0.0.1:1"):
            pass
    with pytest.raises(InputError, match=r"--scheduler tcp://127\.0\.0\.1:9: cannot reach"):
        with dask_client(scheduler="tcp://127.0.0.1:9", timeout=1):
            pass
    with pytest.raises(InputError, match="--workers must be a positive"):
        with dask_client(workers=0):
            pass


def test_fit_many_on_a_cluster_matches_in_process_fits(loss_truth_fit):
    """Two same-shape fits on a 2-worker cluster (nutpie, one thread per job) equal the in-process fits."""
    data = loss_truth_fit[0]
    jobs = [(data, {"settings": FIXTURE_SETTINGS, "discrepancy": 0.0}), (_perturbed(data), {"settings": FIXTURE_SETTINGS, "discrepancy": 0.0})]
    with dask_client(workers=2, processes=False) as client:
        remote = fit_many(jobs, client)
    local = [fit(d, settings=opts["settings"], progressbar=False, discrepancy=0.0) for d, opts in jobs]
    assert [json_settings(f)["cores"] for f in remote] == [1, 1]
    for r, l in zip(remote, local):  # same draws, one thread or two (attrs hold timings)
        xr.testing.assert_equal(r.posterior, l.posterior)
    with pytest.raises(InputError, match="unknown option"):
        fit_many([(data, {"draws": 10})])


def json_settings(result):
    import json

    return json.loads(result.tree.attrs["sampler_settings"])


def test_progress_bar_is_silent_when_off(capsys):
    from bayes_t2.progress import progress

    with progress("x", 3, enabled=False) as advance:
        advance(3)
    assert capsys.readouterr() == ("", "")


def test_progress_bar_names_steps_on_stderr_only(capsys):
    """The report names the page under way (advance(0, title)) and moves on after it (advance(1))."""
    from bayes_t2.progress import progress

    with progress("report", 2, enabled=True) as advance:
        for title in ("headline", "inputs"):
            advance(0, title)
            advance(1)
    assert capsys.readouterr().out == ""


def test_cli_cluster_options_are_checked(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "bayes_t2.cli", "optimize", str(tmp_path / "missing.nc"),
                           "--train-flops", "1e20", "--inference-flops", "1e10", "--workers", "2", "--scheduler",
                           "tcp://127.0.0.1:9"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "not both" in lines[0], proc.stderr


def test_accuracy_refit_of_same_shape_hits_the_cache(accuracy_truth_fit):
    """The accuracy route keeps its counts in pm.Data: new counts with the same cells and checkpoints reuse the
    compiled model, and the fit sees the new counts (not the cached ones)."""
    data, _, first = accuracy_truth_fit
    frame = data.frame.copy()
    # swap 0 <-> 1 correct: a bijection on counts, so the distinct cells (the model's shape) stay the same
    c = frame["n_correct"].to_numpy()
    frame["n_correct"] = np.where(c == 0, 1, np.where(c == 1, 0, c))
    new = from_frame(frame, source="swapped counts")
    assert len(new.collapse_counts()) == len(data.collapse_counts())
    other = fit(new, settings=SamplerSettings(draws=100, tune=100, chains=2, seed=3, pointwise=False),
                progressbar=False)
    assert samplers.stats.last_hit and samplers.stats.last_compile_seconds == 0.0
    cells = new.collapse_counts()
    np.testing.assert_array_equal(other.tree["observed_data"]["n_correct"].values, cells["n_correct"].to_numpy())
    np.testing.assert_array_equal(other.tree["constant_data"]["weight"].values, cells["weight"].to_numpy())
    assert not np.allclose(other.posterior["logit_mu_ref"].mean().values, first.posterior["logit_mu_ref"].mean().values)
