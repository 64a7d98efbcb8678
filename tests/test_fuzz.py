"""Inputs that cannot hurt it: random malformed data files, hostile numbers and damaged fit files.

Every case must end in the result or in exit 2 with ONE line on stderr naming the file (and the row and column
where they apply): never a traceback, never exit 1 for a user's mistake, never a half-written output file.
The command line runs in-process (`bayes_t2.cli.main(argv)`), and no test here samples a posterior: the fit
commands stop at the sampler (monkeypatched), the fit-reading commands use the session's fixture fit.

The expected row and column come from the generator (which cell it damaged), not from the reader under test.
"""

from __future__ import annotations

import gzip
import importlib
import io
import json
import math
import warnings
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from bayes_t2.cli import main
from bayes_t2.data import CANONICAL_COLUMNS, INT_COLUMNS, MAX_COUNT, read_data
from bayes_t2.errors import InputError

FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# ------------------------------------------------------------------------------------------------ helpers


def run_cli(*args) -> tuple[int, str, str]:
    """Run `bayes-t2 ARGS` in-process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    return code, out.getvalue(), err.getvalue()


def assert_one_line(code: int, stderr: str, *fragments: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2, (code, stderr)
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    for frag in fragments:
        assert frag in lines[0], (frag, lines[0])
    return lines[0]


# --------------------------------------------------------------------------------- budgets and options
BUDGET_OPTIONS = ["--train-flops", "--inference-flops", "--tokens-per-sample", "--max-tokens", "--max-params",
                  "--k-max", "--total-flops", "--queries", "--prob"]
HOSTILE = ["nan", "inf", "-inf", "-1", "0", "1e400", "1e19x", "abc", ""]


@pytest.mark.parametrize("command", ["optimize", "decide", "report", "sensitivity"])
@pytest.mark.parametrize("option", BUDGET_OPTIONS)
def test_hostile_budget_numbers_exit_2_naming_the_option(tmp_path, command, option):
    """Every budget and constraint option refuses nan, inf, negatives, zero, overflow and junk before any fit
    is read (the fit path does not even exist)."""
    total = option in ("--total-flops", "--queries")
    base = {"--total-flops": "1e21", "--queries": "1e9"} if total else {"--train-flops": "1e19",
                                                                         "--inference-flops": "1e9"}
    for value in HOSTILE:
        if option == "--prob" and value == "":
            continue
        args = [command, tmp_path / "missing.nc"]
        for key, val in base.items():
            if key != option:
                args += [key, val]
        args += [option, value]
        if command == "report":
            args += ["--out", tmp_path / "r.pdf"]
        code, _, err = run_cli(*args)
        line = assert_one_line(code, err, option)
        assert "not found" not in line, line
        assert not (tmp_path / "r.pdf").exists()


@pytest.mark.parametrize("args, fragment", [
    (["optimize", "x.nc", "--train-flops", "abc", "--inference-flops", "1e9"], "--train-flops"),
    (["optimize"], "Missing argument"),
    (["optimize", "x.nc", "--bogus", "1"], "--bogus"),
    (["no-such-command"], "no-such-command"),
    (["fit", "x.csv"], "--out"),
    (["fit", "x.csv", "--out", "f.nc", "--draws", "ten"], "--draws"),
])
def test_usage_errors_exit_2_on_one_line(tmp_path, monkeypatch, args, fragment):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(*args)
    assert_one_line(code, err, fragment)


def test_no_arguments_shows_help_and_exits_2(tmp_path):
    code, out, err = run_cli()
    assert code == 2 and "Usage" in out and "Traceback" not in err


# --------------------------------------------------------------------------------------- data files
VALID_ROWS = {
    "loss": {"task": ["a", "a", "b", "b"], "model": ["m1", "m2", "m1", "m2"], "params": ["1e7", "1e8", "1e7", "1e8"],
             "tokens": ["2e8", "2e9", "2e8", "2e9"], "k": ["1", "4", "1", "4"], "loss": ["3.1", "2.9", "2.5", "2.2"]},
    "samples": {"task": ["g"] * 4, "params": ["1e7", "1e7", "1e8", "1e8"], "tokens": ["2e8", "2e8", "2e9", "2e9"],
                "problem": ["p1", "p2", "p1", "p2"], "n_samples": ["10", "10", "10", "10"],
                "n_correct": ["3", "0", "10", "4"]},
    "passk": {"task": ["m"] * 4, "params": ["1e7", "1e7", "1e8", "1e8"], "tokens": ["2e8", "2e8", "2e9", "2e9"],
              "k": ["1", "8", "1", "8"], "pass_at_k": ["0.1", "0.3", "0.2", "0.5"],
              "n_problems": ["500"] * 4},
}
#: (value, columns it is always invalid in) -- the oracle of the targeted tests
BAD_VALUES = {
    "": "any", "nan": "any", "inf": "any", "-inf": "any", "1e400": "any", "abc": "any", "1e19x": "any",
    "0x10": "any", "True": "any", "-1": "any", "1,000": "any", "\u22121": "any", "NA": "any",
    "0": ("params", "tokens", "loss", "k", "n_samples", "n_problems"),
    "1.5": ("k", "n_samples", "n_correct", "n_problems", "pass_at_k"),
    "1e30": ("k", "n_samples", "n_correct", "n_problems", "pass_at_k"),
}
NUMERIC = {"params", "tokens", "loss", "k", "n_samples", "n_correct", "pass_at_k", "n_problems"}


def to_csv_text(columns: dict[str, list[str]]) -> str:
    names = list(columns)
    rows = zip(*columns.values())
    return "\n".join([",".join(names)] + [",".join(_quote(v) for v in row) for row in rows]) + "\n"


def _quote(value: str) -> str:
    return f'"{value}"' if ("," in value or '"' in value) else value


@given(kind=st.sampled_from(sorted(VALID_ROWS)), data=st.data())
@FUZZ
def test_one_bad_cell_is_named_by_row_and_column(tmp_path_factory, kind, data):
    """A valid file with one cell replaced by a value that is invalid there: the error names exactly that
    file, data row and column (in CSV, gzipped CSV and Parquet)."""
    columns = {k: list(v) for k, v in VALID_ROWS[kind].items()}
    col = data.draw(st.sampled_from(sorted(NUMERIC & set(columns))), label="column")
    value = data.draw(st.sampled_from([v for v, where in BAD_VALUES.items() if where == "any" or col in where]),
                      label="value")
    row = data.draw(st.integers(1, 4), label="row")
    if col == "n_correct" and value == "1e30":
        value = "11"  # > n_samples: still this cell's fault
    columns[col][row - 1] = value
    fmt = data.draw(st.sampled_from(["csv", "csv.gz", "parquet"]), label="format")
    path = tmp_path_factory.mktemp("cell") / f"data.{fmt}"
    text = to_csv_text(columns)
    if fmt == "csv":
        path.write_text(text)
    elif fmt == "csv.gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        pd.DataFrame(columns).to_parquet(path)  # every column as text, as a spreadsheet export may do
    with pytest.raises(InputError) as info:
        read_data(path)
    err = info.value
    assert "\n" not in str(err) and path.name in str(err)
    assert (err.row, err.column) == (row, col), str(err)


MUTATIONS = ("drop_column", "duplicate_column", "rename_space", "bad_cell", "semicolon", "tab", "bom",
             "extra_field", "truncate", "header_only", "empty", "crlf", "blank_lines", "quote", "latin1", "nul")


def _mutate(columns: dict[str, list[str]], mutations: list[str], draw) -> bytes:
    columns = {k: list(v) for k, v in columns.items()}
    names = list(columns)
    for m in mutations:
        if m == "drop_column" and len(columns) > 1:
            columns.pop(draw(st.sampled_from(sorted(columns))))
        elif m == "bad_cell":
            col = draw(st.sampled_from(sorted(columns)))
            row = draw(st.integers(0, len(next(iter(columns.values()))) - 1))
            columns[col][row] = draw(st.sampled_from(sorted(BAD_VALUES) + ["x" * 300, "1" * 40]))
    names = list(columns)
    header = list(names)
    rows = [list(r) for r in zip(*columns.values())]
    for m in mutations:
        if m == "duplicate_column":
            i = draw(st.integers(0, len(header) - 1))
            header.append(header[i])
            for r in rows:
                r.append(r[i])
        elif m == "rename_space":
            i = draw(st.integers(0, len(header) - 1))
            header[i] = f" {header[i]} "
        elif m == "extra_field" and rows:
            rows[draw(st.integers(0, len(rows) - 1))].append("7")
    sep = ";" if "semicolon" in mutations else ("\t" if "tab" in mutations else ",")
    nl = "\r\n" if "crlf" in mutations else "\n"
    lines = [sep.join(header)] + [sep.join(_quote(v) if sep == "," else v for v in r) for r in rows]
    if "blank_lines" in mutations:
        lines.insert(2, "")
    if "header_only" in mutations:
        lines = lines[:1]
    if "quote" in mutations:
        lines.append('"unclosed,1,2')
    text = nl.join(lines) + nl
    if "empty" in mutations:
        text = draw(st.sampled_from(["", "\n", "  \n\n"]))
    if "bom" in mutations:
        text = "\ufeff" + text
    raw = text.encode("latin-1", "replace") if "latin1" in mutations else text.encode("utf-8", "surrogatepass")
    if "latin1" in mutations:
        raw = raw.replace(b"a", b"\xe9", 1)
    if "nul" in mutations:
        raw = raw[:5] + b"\x00" + raw[5:]
    if "truncate" in mutations and raw:
        raw = raw[:draw(st.integers(0, len(raw) - 1))]
    return raw


def check_read_outcome(path: Path, n_rows_max: int, header_names: set[str]) -> object:
    """read_data either returns data that obey every documented rule, or raises one InputError naming the
    file (and a row/column that exist). Any other exception fails the test."""
    try:
        data = read_data(path)
    except InputError as err:
        msg = str(err)
        assert "\n" not in msg and path.name in msg, msg
        if err.row is not None:
            assert 1 <= err.row <= n_rows_max, msg
        if err.column is not None:
            assert err.column.strip() in header_names | set(CANONICAL_COLUMNS), msg
        return err
    f = data.frame
    assert len(f) >= 1
    assert not any(c.endswith(".1") and c[:-2] in f.columns for c in f.columns)  # no silent renames
    for col in ("params", "tokens", "loss"):
        if col in f:
            assert all(math.isfinite(v) and v > 0 for v in f[col].tolist()), col
    for col in INT_COLUMNS:
        if col in f:
            assert f[col].dtype == np.int64 and all(1 <= v <= MAX_COUNT for v in f[col].tolist()
                                                    if col != "n_correct"), col
    if data.kind == "samples":
        assert all(0 <= c <= n for c, n in zip(f["n_correct"].tolist(), f["n_samples"].tolist()))
    if "pass_at_k" in f:
        assert all(0 <= v <= 1 for v in f["pass_at_k"].tolist())
    assert all(isinstance(t, str) and t.strip() == t and t for t in f["task"].tolist())
    return data


@given(kind=st.sampled_from(sorted(VALID_ROWS)), mutations=st.lists(st.sampled_from(MUTATIONS), max_size=3,
                                                                   unique=True),
       gz=st.booleans(), data=st.data())
@FUZZ
def test_malformed_csv_reads_or_fails_in_one_line(tmp_path_factory, kind, mutations, gz, data):
    raw = _mutate(VALID_ROWS[kind], mutations, data.draw)
    path = tmp_path_factory.mktemp("csv") / ("data.csv.gz" if gz else "data.csv")
    if gz:
        packed = gzip.compress(raw)
        if data.draw(st.booleans(), label="truncate gzip"):
            packed = packed[:data.draw(st.integers(0, max(0, len(packed) - 1)), label="gzip bytes")]
        path.write_bytes(packed)
    else:
        path.write_bytes(raw)
    outcome = check_read_outcome(path, n_rows_max=8, header_names=set(VALID_ROWS[kind]) | {""})
    if "duplicate_column" in mutations and not isinstance(outcome, InputError):
        pytest.fail("a file with a repeated column name was read")


@given(kind=st.sampled_from(sorted(VALID_ROWS)), mutations=st.lists(st.sampled_from(
    ("drop_column", "bad_cell", "duplicate_column", "garbage", "truncate", "no_rows", "numeric_types")),
    max_size=3, unique=True), data=st.data())
@FUZZ
def test_malformed_parquet_reads_or_fails_in_one_line(tmp_path_factory, kind, mutations, data):
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {k: list(v) for k, v in VALID_ROWS[kind].items()}
    if "drop_column" in mutations:
        columns.pop(data.draw(st.sampled_from(sorted(columns))))
    if "bad_cell" in mutations:
        col = data.draw(st.sampled_from(sorted(columns)))
        columns[col][data.draw(st.integers(0, 3))] = data.draw(st.sampled_from(sorted(BAD_VALUES)))
    arrays, names = [], []
    for name, values in columns.items():
        if "numeric_types" in mutations and name in NUMERIC:
            floats = pd.to_numeric(pd.Series(values), errors="coerce")
            arrays.append(pa.array(floats.to_numpy(float)))
        else:
            arrays.append(pa.array(values))
        names.append(name)
    if "duplicate_column" in mutations:
        i = data.draw(st.integers(0, len(names) - 1))
        arrays.append(arrays[i])
        names.append(names[i])
    table = pa.Table.from_arrays(arrays, names=names)
    if "no_rows" in mutations:
        table = table.slice(0, 0)
    path = tmp_path_factory.mktemp("pq") / "data.parquet"
    pq.write_table(table, path)
    raw = path.read_bytes()
    if "truncate" in mutations:
        path.write_bytes(raw[:data.draw(st.integers(0, len(raw) - 1))])
    if "garbage" in mutations:
        path.write_bytes(np.random.default_rng(data.draw(st.integers(0, 2**32 - 1))).bytes(len(raw)))
    outcome = check_read_outcome(path, n_rows_max=4, header_names=set(names))
    if "duplicate_column" in mutations and not ({"truncate", "garbage", "no_rows"} & set(mutations)):
        assert isinstance(outcome, InputError) and "duplicate column" in str(outcome), outcome


@given(kind=st.sampled_from(sorted(VALID_ROWS)), mutations=st.lists(st.sampled_from(MUTATIONS), min_size=1,
                                                                   max_size=2, unique=True), data=st.data())
@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_fit_command_on_malformed_data(tmp_path_factory, monkeypatch, kind, mutations, data):
    """`bayes-t2 fit` on a malformed file: exit 2 with one line naming the file, and no fit file; a file that
    passes every check reaches the sampler (stubbed here) and still leaves no half-written output."""
    fit_module = importlib.import_module("bayes_t2.fit")  # the module; `bayes_t2.fit` is the API function

    class Reached(Exception):
        pass

    def stop(*args, **kwargs):
        raise Reached

    monkeypatch.setattr(fit_module, "sample", stop)
    folder = tmp_path_factory.mktemp("fitcli")
    path = folder / "data.csv"
    path.write_bytes(_mutate(VALID_ROWS[kind], mutations, data.draw))
    out = folder / "fit.nc"
    code, _, err = run_cli("fit", path, "--out", out)
    assert not out.exists() and not list(folder.glob(".fit.nc.*"))
    if code == 1:
        assert "Reached" in err and len(err.strip().splitlines()) == 1, err
        return
    assert_one_line(code, err, "data.csv")
