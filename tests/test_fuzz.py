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
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from bayes_t2.data import CANONICAL_COLUMNS, INT_COLUMNS, MAX_COUNT, read_data
from bayes_t2.errors import InputError
from conftest import run_cli

FUZZ = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# ------------------------------------------------------------------------------------------------ helpers


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
                  "--k-max", "--total-flops", "--queries", "--prob", "--unique-tokens", "--prompt-tokens",
                  "--context-flops", "--costs", "--train-budget", "--serve-budget", "--total-budget"]
#: options for which 0 is a valid value (no prompt, no attention term)
ZERO_IS_VALID = ("--prompt-tokens", "--context-flops")
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
        if (option == "--prob" and value == "") or (option in ZERO_IS_VALID and value == "0"):
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


# ------------------------------------------------------------------------------------ damaged fit files
SPLIT = ["--train-flops", "2.56e19", "--inference-flops", "2e9"]


@pytest.fixture(scope="module")
def fit_file(loss_truth_fit, tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzzfit") / "fit.nc"
    loss_truth_fit[2].save(path)
    return path


def _foreign_files(fit_file: Path, folder: Path) -> dict[str, Path]:
    """Files a user might hand to a command that reads a fit: other netCDF files, and fits with parts missing."""
    import xarray as xr

    from bayes_t2.fit import Fit

    out = {}
    plain = folder / "plain.nc"
    xr.Dataset({"x": ("t", np.arange(5.0))}).to_netcdf(plain, engine="h5netcdf")
    out["plain netCDF"] = plain
    tree = Fit.load(fit_file).tree
    for group in ("log_likelihood", "log_prior", "posterior_predictive"):  # smaller copies, same checks
        if group in tree.children:
            del tree[group]
    edits = {
        "no format attribute": lambda t: t.attrs.pop("bayes_t2_format"),
        "unknown route": lambda t: t.attrs.update(route="nonsense"),
        "spec not JSON": lambda t: t.attrs.update(model_spec="{not json"),
        "spec a JSON list": lambda t: t.attrs.update(model_spec="[1, 2]"),
        "no scaling": lambda t: t.attrs.pop("scaling"),
        "no posterior": lambda t: t.__delitem__("posterior"),
        "coefficient missing": lambda t: t.__setitem__("posterior", xr.DataTree(
            t["posterior"].to_dataset().drop_vars("alpha"))),
        "coefficient without task": lambda t: t.__setitem__("posterior", xr.DataTree(
            t["posterior"].to_dataset().assign(E=t["posterior"]["E"].isel(task=0, drop=True)))),
        "text coefficient": lambda t: t.__setitem__("posterior", xr.DataTree(
            t["posterior"].to_dataset().assign(B=t["posterior"]["B"].astype(str)))),
    }
    for name, edit in edits.items():
        copy = tree.copy(deep=True)
        edit(copy)
        path = folder / f"{name.replace(' ', '_')}.nc"
        copy.to_netcdf(path, engine="h5netcdf")
        out[name] = path
    text = folder / "text.nc"
    text.write_text("task,params\n")
    out["text file"] = text
    out["empty file"] = folder / "empty.nc"
    out["empty file"].write_bytes(b"")
    return out


FIT_COMMANDS = {
    "optimize": lambda p, tmp: ["optimize", p, *SPLIT, "--json", tmp / "o.json"],
    "predict": lambda p, tmp: ["predict", p, "--params", "4e8", "--tokens", "1e11", "--json", tmp / "o.json"],
    "decide": lambda p, tmp: ["decide", p, *SPLIT, "--json", tmp / "o.json"],
    "report": lambda p, tmp: ["report", p, *SPLIT, "--out", tmp / "o.pdf"],
}


def test_foreign_fit_files_exit_2_naming_the_file(fit_file, tmp_path):
    """Every command that reads a fit refuses each foreign file (all go through `Fit.load`; the commands take
    turns so that each meets several kinds of file)."""
    commands = list(FIT_COMMANDS)
    for i, (what, path) in enumerate(_foreign_files(fit_file, tmp_path).items()):
        for command in (commands if i == 0 else [commands[i % len(commands)]]):
            code, _, err = run_cli(*FIT_COMMANDS[command](path, tmp_path))
            assert_one_line(code, err, path.name)
            assert not list(tmp_path.glob("o.*")), (what, command)


@given(damage=st.sampled_from(["truncate", "zeros", "random"]), where=st.floats(0.0, 0.999),
       width=st.integers(1, 4096), command=st.sampled_from(["optimize", "predict"]), seed=st.integers(0, 2**16))
@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_damaged_fit_file_ends_in_result_or_one_line(fit_file, tmp_path_factory, damage, where, width, command,
                                                    seed):
    """A fit file cut short or overwritten in places: the command either still works (the damage missed
    everything it reads) or exits 2 with one line naming the file; never exit 1, never a half-written output."""
    raw = bytearray(fit_file.read_bytes())
    at = int(where * len(raw))
    if damage == "truncate":
        raw = raw[:at]
    else:
        end = min(len(raw), at + width)
        raw[at:end] = bytes(end - at) if damage == "zeros" else np.random.default_rng(seed).bytes(end - at)
    folder = tmp_path_factory.mktemp("damaged")
    path = folder / "damaged.nc"
    path.write_bytes(bytes(raw))
    code, _, err = run_cli(*FIT_COMMANDS[command](path, folder))
    if code == 0:
        assert (folder / "o.json").exists()
        return
    assert_one_line(code, err, "damaged.nc")
    assert not (folder / "o.json").exists() and not list(folder.glob(".o.json*"))


# ------------------------------------------------------------------- data that cannot identify the law
ONE_ROW = "task,params,tokens,loss\na,1e8,2e9,3.0\n"
UNIDENTIFIABLE = {
    "one checkpoint": (ONE_ROW, "one checkpoint"),
    "a single model size": ("task,params,tokens,loss\n" + "".join(f"a,1e8,{d:g},{3 - i / 10}\n" for i, d in
                                                                  enumerate([1e9, 2e9, 4e9, 8e9, 16e9, 32e9])),
                            "a single model size"),
    "a single token count": ("task,params,tokens,loss\n" + "".join(f"a,{n:g},2e9,{3 - i / 10}\n" for i, n in
                                                                   enumerate([1e7, 2e7, 4e7, 8e7, 16e7])),
                             "a single token count"),
    "four points": ("task,params,tokens,loss\na,1e7,1e9,3\na,1e7,2e9,2.9\na,2e7,1e9,2.8\na,2e7,2e9,2.7\n",
                    "4 distinct (params, tokens) points"),
    "two k": ("task,params,tokens,k,loss\n" + "".join(f"a,{n:g},{d:g},{k},{3 - k / 100}\n" for n in (1e7, 1e8, 1e9)
                                                      for d in (1e9, 1e10) for k in (1, 8)),
              "2 distinct k"),
}


class _Reached(Exception):
    pass


def _refuse_sampling(*args, **kwargs):
    raise _Reached("the sampler was reached")


@pytest.mark.parametrize("case", sorted(UNIDENTIFIABLE))
def test_fit_refuses_data_that_cannot_identify_the_law(tmp_path, monkeypatch, case):
    fit_module = importlib.import_module("bayes_t2.fit")  # the module: `bayes_t2.fit` is also the API function

    monkeypatch.setattr(fit_module, "sample", _refuse_sampling)
    text, fragment = UNIDENTIFIABLE[case]
    (tmp_path / "few.csv").write_text(text)
    code, _, err = run_cli("fit", tmp_path / "few.csv", "--out", tmp_path / "f.nc")
    assert_one_line(code, err, "few.csv", "cannot identify the law", fragment, "--allow-prior-only")
    assert not (tmp_path / "f.nc").exists()
    with pytest.raises(InputError, match="cannot identify"):  # the Python API refuses the same way
        fit_module.fit(read_data(tmp_path / "few.csv"))
    with pytest.raises(_Reached):  # ... and with the flag goes on to sample
        fit_module.fit(read_data(tmp_path / "few.csv"), allow_prior_only=True)


def test_identified_data_are_not_flagged():
    from bayes_t2.fit import identification_problems
    from bayes_t2.resources import data_dir

    for name in ("default_loss.csv", "default_samples.csv"):
        assert identification_problems(read_data(data_dir() / name)) == []


def _prior_draws(model, key, *, draws, chains, seed, **kwargs):
    """Stands in for NUTS: draws from the prior (what a prior-only fit's posterior is), shaped as a sample."""
    import pymc as pm
    import xarray as xr

    with model:
        prior = pm.sample_prior_predictive(draws=draws * chains, random_seed=seed)
    ds = prior["prior"].to_dataset().isel(chain=0, drop=True)
    ds = ds.assign_coords(draw=np.arange(draws * chains)).coarsen(draw=draws).construct(draw=("chain", "draw"))
    ds = ds.assign_coords(chain=np.arange(chains), draw=np.arange(draws))
    stats = xr.Dataset({"diverging": (("chain", "draw"), np.zeros((chains, draws), bool))},
                       coords={"chain": ds.chain, "draw": ds.draw})
    return xr.DataTree.from_dict({"posterior": ds, "sample_stats": stats})


def test_allow_prior_only_fit_says_so_in_every_output(tmp_path, monkeypatch):
    """`fit --allow-prior-only` on a one-row file: the fit never says the intervals can be trusted, and
    optimize, predict, decide and report each warn (once) that the intervals are the prior's."""
    fit_module = importlib.import_module("bayes_t2.fit")  # the module: `bayes_t2.fit` is also the API function
    from bayes_t2.budget import SplitBudget
    from bayes_t2.fit import Fit

    monkeypatch.setattr(fit_module, "sample", _prior_draws)
    (tmp_path / "one.csv").write_text(ONE_ROW)
    fit_path = tmp_path / "f.nc"
    code, out, err = run_cli("fit", tmp_path / "one.csv", "--out", fit_path, "--allow-prior-only", "--draws", "100",
                             "--chains", "2")
    assert code == 0, err
    assert "can be trusted" not in out and "prior only" in err and err.count("prior only") == 1
    result = Fit.load(fit_path)
    assert not result.diagnostics().ok
    assert any("prior only" in w for w in result.diagnostics().warnings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt = result.optimize([SplitBudget(2.56e19, 2e9)])
    assert any("prior only" in note for note in json.loads(opt.attrs["warnings"]))
    with pytest.warns(UserWarning, match="prior only"):
        result.predict(4e8, 1e11, 1)
    for command, args in FIT_COMMANDS.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            (tmp_path / command).mkdir()
            code, out, err = run_cli(*args(fit_path, tmp_path / command), keep_warnings=True)
        assert code == 0, (command, err)
        notes = {str(w.message) for w in caught if "prior only" in str(w.message)}
        assert len(notes) == 1, (command, notes)


# -------------------------------------------------------------------------------- outputs and side inputs
def test_output_path_under_a_file_exits_2(tmp_path):
    (tmp_path / "afile").write_text("x")
    for args in (["simulate", "--out", tmp_path / "afile" / "d.csv"],
                 ["fit", tmp_path / "missing.csv", "--out", tmp_path / "afile" / "f.nc"],
                 ["optimize", tmp_path / "missing.nc", *SPLIT, "--json", tmp_path / "afile" / "o.json"]):
        code, _, err = run_cli(*args)
        assert_one_line(code, err, "afile", "cannot write here")
    assert (tmp_path / "afile").read_text() == "x"


@pytest.mark.parametrize("content, fragments", [
    ("params,tokens,k\n1e8,1e9,1,5\n", ["row 1", "4 fields"]),        # pandas would shift the columns
    ("params,params,tokens\n1e8,1e8,1e9\n", ["duplicate column name 'params'"]),
    ("params;tokens\n1e8;1e9\n", ["separated by ';'"]),
    ("params,tokens\n", ["no data rows"]),
    ("params,tokens,k\n1e8,1e9,0\n", ["row 1", "'k'"]),
])
def test_predict_points_file_is_checked_like_data(tmp_path, content, fragments):
    (tmp_path / "pts.csv").write_text(content)
    code, _, err = run_cli("predict", tmp_path / "missing.nc", "--points", tmp_path / "pts.csv")
    assert_one_line(code, err, "pts.csv", *fragments)


# ------------------------------------------------------------------------------------------------ pass@k
@given(n=st.integers(1, 400), data=st.data())
@settings(max_examples=200, deadline=None, derandomize=True)
def test_unbiased_pass_at_k_matches_exact_binomials(n, data):
    """1 - C(n-c, k)/C(n, k) against exact integer arithmetic (math.comb)."""
    from bayes_t2.passk import log1m_unbiased_pass_at_k, unbiased_pass_at_k

    c = data.draw(st.integers(0, n), label="c")
    k = data.draw(st.integers(1, n), label="k")
    ratio = math.comb(n - c, k) / math.comb(n, k)  # exact integers, one rounding
    got = float(unbiased_pass_at_k(n, c, k))
    assert got == pytest.approx(1.0 - ratio, rel=1e-12, abs=1e-15)
    if ratio > 0:
        assert float(log1m_unbiased_pass_at_k(n, c, k)) == pytest.approx(math.log(ratio), rel=1e-12, abs=1e-12)


@given(a=st.integers(1, 60), b=st.integers(1, 60), k=st.integers(1, 200))
@settings(max_examples=200, deadline=None, derandomize=True)
def test_beta_pass_at_k_matches_exact_product(a, b, k):
    """For integer a, b: 1 - pass@k = B(a, b+k)/B(a, b) = prod_{i<k} (b+i)/(a+b+i), exactly in fractions."""
    from fractions import Fraction

    from bayes_t2.passk import beta_pass_at_k

    miss = Fraction(1)
    for i in range(k):
        miss *= Fraction(b + i, a + b + i)
    assert float(beta_pass_at_k(a, b, k)) == pytest.approx(float(1 - miss), rel=1e-12, abs=1e-15)


HOSTILE_FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(
    [0.0, -0.0, -1.0, 1e308, -1e308, 5e-324, float("nan"), float("inf"), -float("inf")]))


@given(n=HOSTILE_FLOATS, c=HOSTILE_FLOATS, k=HOSTILE_FLOATS)
@settings(max_examples=300, deadline=None, derandomize=True)
def test_pass_at_k_on_hostile_numbers_is_nan_or_a_probability(n, c, k):
    """No hostile input crashes the kernels or gives a number outside [0, 1]; invalid counts give NaN."""
    from bayes_t2.passk import beta_pass_at_k, unbiased_pass_at_k

    with np.errstate(all="ignore"):
        for value in (float(unbiased_pass_at_k(n, c, k)), float(beta_pass_at_k(n, c, k))):
            assert math.isnan(value) or 0.0 <= value <= 1.0, value
    if not (0 <= c <= n and 0 <= k <= n):
        assert math.isnan(float(unbiased_pass_at_k(n, c, k)))


@pytest.mark.parametrize("toml, fragment", [
    ("this is = not toml [[[\n", "not a valid TOML"),
    ("[priors.E]\nmedian = -1.0\n", "must be > 0"),
    ("[priors.A]\nlog_sd = nan\n", "must be finite"),
    ("[priors.A]\npool_sd = inf\n", "must be finite"),
    ("[likelihood]\nsigma = 0.0\n", "must be > 0"),
    ("[priors.E]\nmedian = \"abc\"\n", "must be a number"),
    ("[priors.E]\nmu = 1.0\n", "unknown setting"),
    ("[likelihood]\nfamily = \"cauchy\"\n", "likelihood.family"),
])
def test_hostile_prior_files_exit_2(tmp_path, monkeypatch, toml, fragment):
    """A prior file with junk, non-finite or non-positive scales stops `fit` before any sampling."""
    from bayes_t2.resources import data_dir

    monkeypatch.setattr(importlib.import_module("bayes_t2.fit"), "sample", _refuse_sampling)
    (tmp_path / "p.toml").write_text(toml)
    code, _, err = run_cli("fit", data_dir() / "default_loss.csv", "--out", tmp_path / "f.nc", "--priors",
                           tmp_path / "p.toml")
    assert_one_line(code, err, fragment)
    assert not (tmp_path / "f.nc").exists()
