"""The command line as a user meets it: exit codes, one-line errors, files written or left alone."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

CLI = [sys.executable, "-m", "bayes_t2.cli"]


def run(*args, cwd):
    return subprocess.run([*CLI, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=600)


def assert_one_line_error(proc, *fragments, code=2):
    assert proc.returncode == code, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for frag in fragments:
        assert frag in lines[0], lines[0]


@pytest.fixture(scope="module")
def fit_file(loss_truth_fit, tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "fit.nc"
    loss_truth_fit[2].save(path)
    return path


def test_simulate_writes_data_and_truth_and_refuses_overwrite(tmp_path):
    proc = run("simulate", "--out", "d.csv", "--seed", "3", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    truth = json.loads((tmp_path / "d.truth.json").read_text())
    assert truth["route"] == "loss" and len(truth["tasks"]) == 8
    assert {"E", "A", "alpha", "B", "beta", "G", "gamma"} <= set(next(iter(truth["tasks"].values())))
    before = (tmp_path / "d.csv").read_text()
    assert_one_line_error(run("simulate", "--out", "d.csv", "--seed", "4", cwd=tmp_path), "already exists")
    assert (tmp_path / "d.csv").read_text() == before


@pytest.mark.parametrize("content, fragments", [
    ("task,params,tokens\na,1e8,1e9\n", ["bad.csv", "loss"]),
    ("task,params,tokens,loss\na,1e8,1e9,nan\n", ["bad.csv", "row 1", "loss"]),
    ("task,params,tokens,loss\na,-1e8,1e9,2\n", ["bad.csv", "row 1", "params"]),
    ("task,params,tokens,loss,k\na,1e8,1e9,2,0\n", ["bad.csv", "row 1", "'k'"]),
    ("", ["bad.csv"]),
])
def test_fit_bad_data(tmp_path, content, fragments):
    (tmp_path / "bad.csv").write_text(content)
    assert_one_line_error(run("fit", "bad.csv", "--out", "f.nc", cwd=tmp_path), *fragments)
    assert not (tmp_path / "f.nc").exists()


def test_fit_unknown_file_type(tmp_path):
    (tmp_path / "data.xlsx").write_text("x")
    assert_one_line_error(run("fit", "data.xlsx", "--out", "f.nc", cwd=tmp_path), "data.xlsx")


def test_optimize_table_and_json(fit_file, tmp_path):
    proc = run("optimize", fit_file, "--train-flops", "2.56e19", "--inference-flops", "2e9", "--json", "o.json",
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Chinchilla" in proc.stdout
    records = json.loads((tmp_path / "o.json").read_text())
    assert {r["task"] for r in records} == {"arith", "code", "logic"}
    assert all(r["budget"]["kind"] == "split" for r in records)
    total = run("optimize", fit_file, "--total-flops", "1e21", "--queries", "1e9", "--k-max", "16", cwd=tmp_path)
    assert total.returncode == 0, total.stderr


def test_optimize_bad_input(fit_file, tmp_path):
    assert_one_line_error(run("optimize", fit_file, cwd=tmp_path), "budget")
    assert_one_line_error(run("optimize", fit_file, "--train-flops", "-1", "--inference-flops", "2e9",
                              cwd=tmp_path), "--train-flops")
    (tmp_path / "junk.nc").write_text("junk")
    assert_one_line_error(run("optimize", "junk.nc", "--train-flops", "1e19", "--inference-flops", "1e9",
                              cwd=tmp_path), "junk.nc", "not a bayes-t2 fit")


def test_predict(fit_file, tmp_path):
    proc = run("predict", fit_file, "--params", "4e8", "--tokens", "1e11", "--k", "8", "--json", "p.json",
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    records = json.loads((tmp_path / "p.json").read_text())
    assert len(records) == 3 and all(r["lower"] <= r["median"] <= r["upper"] for r in records)
    (tmp_path / "pts.csv").write_text("params,tokens,k\n1e8,2e9,1\n1e8,2e9,-2\n")
    assert_one_line_error(run("predict", fit_file, "--points", "pts.csv", cwd=tmp_path), "pts.csv", "row 2", "k")
