"""Each benchmark runs at a tiny size and its answers agree (timings are not tested)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_optimizer_agrees_with_scipy(capsys):
    # the numba answers are never worse than the global scipy loop's (beyond 1e-9 relative)
    rc = load("bench_optimizer").main(["--draws", "50", "--tasks", "2", "--budgets", "4", "--scipy-problems", "300",
                                       "--repeats", "1"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert out.count("-> OK") == 2


def test_bench_scale_memory_part_agrees(capsys):
    """The chunked (dask, budgets in chunks) and all-at-once sweeps give the same records."""
    rc = load("bench_scale").main(["--tiny", "--skip-fit"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "records agree: OK" in out and "all-at-once" in out and "chunked" in out


@pytest.mark.slow
def test_bench_scale_fit_part_counts_cells(capsys):
    rc = load("bench_scale").main(["--tiny"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "cells are bounded by" in out


@pytest.mark.slow
def test_bench_sampling_samplers_agree(capsys):
    """nutpie, PyMC NUTS (and numpyro when installed) on one tiny data set: posterior means within 4 MCSE."""
    rc = load("bench_sampling").main(["--tiny"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "nutpie vs pymc" in out and "-> agree" in out


def test_bench_sampling_timeout_keeps_the_finished_attempts():
    """A sampler stopped at the time limit still reports the attempts its child finished (JSON lines on stderr,
    among the sampler's own messages)."""
    import json

    first = {"draws": 500, "sample_s": 1010.0, "min_ess": 212.0, "divergences": 0, "max_rhat": 1.02}
    stderr = "\n".join(["Sampling 2 chains for 500 tune and 500 draw iterations",
                        json.dumps({"attempt": first}),
                        "Sampling 2 chains for 1000 tune and 1000 draw iterations", "Traceback (most recent call"])
    assert load("bench_sampling").finished_attempts(stderr) == [first]
    assert load("bench_sampling").finished_attempts("no attempt yet") == []
