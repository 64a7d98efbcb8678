"""Reading and validating evaluation data (bayes_t2.data)."""

from __future__ import annotations

import gzip
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bayes_t2.data import EvalData, from_frame, parse_column_map, read_data, validate_tasks
from bayes_t2.errors import InputError

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

LOSS_CSV = """task,model,params,tokens,k,loss
a,m1,1e7,2e8,1,3.1
a,m1,1e7,2e8,4,2.9
b,m2,1e8,2e9,1,2.5
b,m2,1e8,2e9,4,2.2
"""
SAMPLES_CSV = """task,model,params,tokens,problem,n_samples,n_correct
gsm,m1,1e7,2e8,p1,10,3
gsm,m1,1e7,2e8,p2,10,0
gsm,m2,1e8,2e9,p1,10,10
gsm,m2,1e8,2e9,p2,10,3
"""
PASSK_CSV = """task,params,tokens,k,pass_at_k,n_problems
mbpp,1e7,2e8,1,0.1,500
mbpp,1e7,2e8,8,0.3,500
mbpp,1e8,2e9,1,0.2,500
"""


def write(tmp_path: Path, text: str, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def set_cell(text: str, row: int, column: str, value: str) -> str:
    """Replace the value of `column` in 1-based data row `row` of a CSV text."""
    lines = text.strip("\n").split("\n")
    header = lines[0].split(",")
    cells = lines[row].split(",")
    cells[header.index(column)] = value
    lines[row] = ",".join(cells)
    return "\n".join(lines) + "\n"


def assert_names(err: InputError, path: Path, row: int | None, column: str | None, *fragments: str) -> None:
    msg = str(err)
    assert "\n" not in msg
    assert path.name in msg, msg
    if row is not None:
        assert f"row {row}" in msg, msg
    if column is not None:
        assert f"column '{column}'" in msg, msg
    for fragment in fragments:
        assert fragment in msg, msg


# ------------------------------------------------------------------------------------------------ bad values
BAD_VALUES = [
    # (base csv, row, column, value, expected reason fragment)
    (LOSS_CSV, 2, "params", "-1", "must be > 0"),
    (LOSS_CSV, 3, "params", "0", "must be > 0"),
    (LOSS_CSV, 1, "tokens", "0", "must be > 0"),
    (LOSS_CSV, 4, "tokens", "-2e9", "must be > 0"),
    (LOSS_CSV, 2, "loss", "0", "must be > 0"),
    (LOSS_CSV, 2, "loss", "-0.5", "must be > 0"),
    (LOSS_CSV, 3, "loss", "inf", "must be finite"),
    (LOSS_CSV, 3, "loss", "", "missing value"),
    (LOSS_CSV, 3, "loss", "NaN", "missing value"),
    (LOSS_CSV, 1, "params", "abc", "not a number: 'abc'"),
    (LOSS_CSV, 4, "tokens", "1e9x", "not a number"),
    (LOSS_CSV, 2, "k", "0", "must be >= 1"),
    (LOSS_CSV, 2, "k", "1.5", "must be an integer"),
    (LOSS_CSV, 2, "task", "", "missing value"),
    (SAMPLES_CSV, 3, "n_samples", "0", "must be >= 1"),
    (SAMPLES_CSV, 2, "n_samples", "2.5", "must be an integer"),
    (SAMPLES_CSV, 1, "n_correct", "-1", "must be >= 0"),
    (SAMPLES_CSV, 4, "n_correct", "11", "n_correct (11) > n_samples (10)"),
    (SAMPLES_CSV, 4, "n_correct", "2.5", "must be an integer"),
    (SAMPLES_CSV, 2, "n_correct", "", "missing value"),
    (SAMPLES_CSV, 2, "problem", "", "missing value"),
    (SAMPLES_CSV, 1, "params", "-3", "must be > 0"),
    (PASSK_CSV, 2, "pass_at_k", "1.5", "must be in [0, 1]"),
    (PASSK_CSV, 1, "pass_at_k", "-0.1", "must be in [0, 1]"),
    (PASSK_CSV, 3, "n_problems", "0", "must be >= 1"),
    (PASSK_CSV, 3, "n_problems", "3.5", "must be an integer"),
    (PASSK_CSV, 1, "k", "0", "must be >= 1"),
    (PASSK_CSV, 1, "k", "two", "not a number"),
]


@pytest.mark.parametrize("base, row, column, value, reason", BAD_VALUES)
def test_bad_value_names_file_row_column(tmp_path, base, row, column, value, reason):
    path = write(tmp_path, set_cell(base, row, column, value), "bad_values.csv")
    with pytest.raises(InputError) as info:
        read_data(path)
    assert_names(info.value, path, row, column, reason, "--drop-bad-rows")
    assert (info.value.source, info.value.row, info.value.column) == (str(path), row, column)


@pytest.mark.parametrize("base, row, column, value, reason", BAD_VALUES[:6] + BAD_VALUES[14:18] + BAD_VALUES[22:24])
def test_bad_value_in_parquet(tmp_path, base, row, column, value, reason):
    csv = write(tmp_path, base)
    frame = pd.read_csv(csv, dtype={"task": str, "problem": str})
    frame[column] = frame[column].astype(float)
    frame.loc[row - 1, column] = float(value)
    path = tmp_path / "bad.parquet"
    frame.to_parquet(path, index=False)
    with pytest.raises(InputError) as info:
        read_data(path)
    assert_names(info.value, path, row, column, reason)


def test_several_bad_rows_first_reported_with_count(tmp_path):
    text = set_cell(set_cell(set_cell(LOSS_CSV, 2, "loss", "-1"), 3, "params", "x"), 4, "k", "0")
    path = write(tmp_path, text)
    with pytest.raises(InputError) as info:
        read_data(path)
    assert_names(info.value, path, 2, "loss", "must be > 0", "and 2 more bad rows", "--drop-bad-rows")


def test_first_failing_column_of_first_bad_row(tmp_path):
    text = set_cell(set_cell(LOSS_CSV, 2, "loss", "-1"), 2, "params", "0")
    with pytest.raises(InputError) as info:
        read_data(write(tmp_path, text))
    assert_names(info.value, tmp_path / "data.csv", 2, "params", "must be > 0", "skip it")
    assert "more bad rows" not in str(info.value)  # one bad row, two problems in it


def test_bad_rows_counted_across_files(tmp_path):
    a = write(tmp_path, set_cell(LOSS_CSV, 3, "loss", "0"), "a.csv")
    b = write(tmp_path, set_cell(set_cell(LOSS_CSV, 1, "loss", "0"), 2, "tokens", "-1"), "b.csv")
    with pytest.raises(InputError) as info:
        read_data([a, b])
    assert_names(info.value, a, 3, "loss", "and 2 more bad rows in 2 files")


def test_drop_bad_rows(tmp_path):
    text = set_cell(set_cell(LOSS_CSV, 2, "loss", "-1"), 4, "params", "nan")
    path = write(tmp_path, text)
    with pytest.warns(UserWarning, match="dropped 2 bad row"):
        data = read_data(path, drop_bad_rows=True)
    assert data.dropped_rows == 2
    assert len(data) == 2
    assert data.frame["loss"].tolist() == [3.1, 2.5]
    assert list(data.frame.index) == [0, 1]


def test_drop_bad_rows_all_bad(tmp_path):
    path = write(tmp_path, "task,params,tokens,loss\na,-1,1e9,2\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(InputError, match="no valid rows"):
            read_data(path, drop_bad_rows=True)


def test_clean_data_has_no_dropped_rows(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = read_data(write(tmp_path, LOSS_CSV), drop_bad_rows=True)
    assert data.dropped_rows == 0


# ---------------------------------------------------------------------------------------- structural errors
@pytest.mark.parametrize("text, fragment", [
    ("", "empty file"),
    ("   \n\n", "empty file"),
    ("task,params,tokens,loss\n", "no data rows"),
])
def test_empty_files(tmp_path, text, fragment):
    path = write(tmp_path, text, "empty.csv")
    with pytest.raises(InputError) as info:
        read_data(path)
    assert_names(info.value, path, None, None, fragment)


def test_empty_parquet(tmp_path):
    path = tmp_path / "empty.parquet"
    pd.DataFrame({"task": pd.Series([], dtype=str), "params": [], "tokens": [], "loss": []}).to_parquet(path)
    with pytest.raises(InputError) as info:
        read_data(path)
    assert_names(info.value, path, None, None, "no data rows")


@pytest.mark.parametrize("content, fragments", [
    # a samples file without tokens and n_correct: the missing columns of the kind it looks like
    ("task,params,problem,n_samples\ng,1e7,p,3\n",
     ("missing required columns", "'tokens'", "'n_correct'", "samples", "found: task, params, problem, n_samples")),
    # no kind's columns at all: what each kind would need
    ("task,params,tokens,accuracy\ng,1e7,1e9,0.3\n",
     ("cannot tell the data kind", "'loss'", "'pass_at_k'", "'n_correct'", "found: task, params, tokens, accuracy")),
])
def test_missing_columns_are_listed(tmp_path, content, fragments):
    path = write(tmp_path, content, "cols.csv")
    with pytest.raises(InputError) as info:
        read_data(path)
    assert_names(info.value, path, None, None, *fragments)


def test_unknown_file_type(tmp_path):
    path = write(tmp_path, LOSS_CSV, "data.txt")
    with pytest.raises(InputError) as info:
        read_data(path)
    assert_names(info.value, path, None, None, "unknown file type")


def test_file_not_found(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_data(tmp_path / "nope.csv")


def test_no_files():
    with pytest.raises(InputError, match="no data files"):
        read_data([])


@pytest.mark.parametrize("name, content, fragment", [
    ("binary.csv", bytes(range(256)) * 8, "binary"),
    ("notparquet.parquet", LOSS_CSV.encode(), "Parquet"),
    ("random.pq", np.random.default_rng(0).bytes(4096), "Parquet"),
    ("notgzip.csv.gz", LOSS_CSV.encode(), "gzip"),
    ("latin1.csv", "task,params,tokens,loss\ncaf\xe9,1e7,1e9,2\n".encode("latin-1"), "UTF-8"),
    ("quote.csv", b'task,params,tokens,loss\n"a,1e7,1e9,2\n', "cannot parse"),
])
def test_corrupt_files(tmp_path, name, content, fragment):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError) as info:
        read_data(path)
    assert_names(info.value, path, None, None, fragment)


def test_files_of_different_kinds(tmp_path):
    a, b = write(tmp_path, LOSS_CSV, "a.csv"), write(tmp_path, SAMPLES_CSV, "b.csv")
    with pytest.raises(InputError) as info:
        read_data([a, b])
    assert_names(info.value, b, None, None, "samples", "loss", "same kind")


# ---------------------------------------------------------------------------------------------- kinds, dtypes
@pytest.mark.parametrize("text, kind, columns", [
    (LOSS_CSV, "loss", ["task", "model", "params", "tokens", "k", "loss"]),
    (SAMPLES_CSV, "samples", ["task", "model", "params", "tokens", "problem", "n_samples", "n_correct"]),
    (PASSK_CSV, "passk", ["task", "params", "tokens", "k", "pass_at_k", "n_problems"]),
])
def test_kind_detection_and_dtypes(tmp_path, text, kind, columns):
    data = read_data(write(tmp_path, text))
    assert data.kind == kind
    assert list(data.frame.columns) == columns
    dtypes = data.frame.dtypes
    for col in columns:
        if col in ("task", "model", "problem"):
            assert pd.api.types.is_string_dtype(dtypes[col]), col
        elif col in ("params", "tokens", "loss", "pass_at_k"):
            assert dtypes[col] == np.float64, col
        else:
            assert dtypes[col] == np.int64, col


def test_ambiguous_kind_and_forced_kind(tmp_path):
    text = "task,params,tokens,k,loss,pass_at_k,n_problems\na,1e7,1e9,1,2.0,0.3,100\n"
    path = write(tmp_path, text)
    with pytest.raises(InputError, match="ambiguous"):
        read_data(path)
    data = read_data(path, kind="loss")
    assert data.kind == "loss"
    assert "pass_at_k" in data.frame.columns  # kept as an extra column
    with pytest.raises(InputError, match="unknown data kind"):
        read_data(path, kind="nonsense")


def test_defaults_task_and_k_and_extras_kept(tmp_path):
    path = write(tmp_path, "params,tokens,loss,flops,note\n1e7,1e9,2.5,6e16,x\n1e8,1e9,2.1,6e17,y\n")
    data = read_data(path)
    assert data.frame["task"].tolist() == ["default", "default"]
    assert data.frame["k"].tolist() == [1, 1]
    assert data.frame["flops"].tolist() == [6e16, 6e17]
    assert data.frame["note"].tolist() == ["x", "y"]
    assert list(data.frame.columns[:5]) == ["task", "params", "tokens", "k", "loss"]
    assert data.tasks == ("default",)


def test_problem_ids_keep_their_text(tmp_path):
    text = SAMPLES_CSV.replace(",p1,", ",007,").replace(",p2,", ",8,")
    data = read_data(write(tmp_path, text))
    assert set(data.frame["problem"]) == {"007", "8"}


# ----------------------------------------------------------------------------------------------- round trips
def test_csv_parquet_gzip_round_trip(tmp_path):
    data = read_data(write(tmp_path, SAMPLES_CSV))
    data.frame.to_parquet(tmp_path / "d.parquet", index=False)
    data.frame.to_parquet(tmp_path / "d.pq", index=False)
    with gzip.open(tmp_path / "d.csv.gz", "wt") as fh:
        fh.write(SAMPLES_CSV)
    for name in ("d.parquet", "d.pq", "d.csv.gz"):
        other = read_data(tmp_path / name)
        pd.testing.assert_frame_equal(other.frame, data.frame)
        assert other.sha256 == data.sha256


def test_several_files_concatenated(tmp_path):
    lines = LOSS_CSV.strip().split("\n")
    a = write(tmp_path, "\n".join(lines[:3]) + "\n", "a.csv")
    b = write(tmp_path, "\n".join([lines[0]] + lines[3:]) + "\n", "b.csv")
    data = read_data([a, b])
    whole = read_data(write(tmp_path, LOSS_CSV, "whole.csv"))
    assert data.sources == (str(a), str(b))
    pd.testing.assert_frame_equal(data.frame, whole.frame)
    assert read_data([b, a]).sha256 == whole.sha256 == data.sha256


def test_sha256_stable_and_content_sensitive(tmp_path):
    a = read_data(write(tmp_path, LOSS_CSV, "one.csv"))
    shuffled = "\n".join([LOSS_CSV.split("\n")[0]] + LOSS_CSV.strip().split("\n")[1:][::-1]) + "\n"
    b = read_data(write(tmp_path, shuffled, "two.csv"))
    c = read_data(write(tmp_path, set_cell(LOSS_CSV, 1, "loss", "3.1000001"), "three.csv"))
    assert len(a.sha256) == 64
    assert a.sha256 == b.sha256 != c.sha256
    # extra columns and model names are not part of the fitted content
    d = read_data(write(tmp_path, LOSS_CSV.replace("m1", "other"), "four.csv"))
    assert d.sha256 == a.sha256


# ------------------------------------------------------------------------------------------------ column maps
def test_parse_column_map():
    assert parse_column_map("params=N, tokens = D") == {"params": "N", "tokens": "D"}
    assert parse_column_map("") == {}
    assert parse_column_map(None) == {}


@pytest.mark.parametrize("text, fragment", [
    ("params", "not of the form"),
    ("params=N=M", "not of the form"),
    ("params=", "empty name"),
    ("=N", "empty name"),
    ("params=N,,tokens=D", "empty entry"),
    ("size=N", "unknown column name 'size'"),
    ("params=N,params=M", "mapped twice"),
    ("params=N,tokens=N", "mapped twice"),
])
def test_parse_column_map_errors(text, fragment):
    with pytest.raises(InputError, match="--columns") as info:
        parse_column_map(text)
    assert fragment in str(info.value)


def test_column_mapping(tmp_path):
    text = LOSS_CSV.replace("task,model,params,tokens,k,loss", "benchmark,model,N,D,k,nll")
    path = write(tmp_path, text)
    data = read_data(path, columns=parse_column_map("params=N,tokens=D,loss=nll,task=benchmark"))
    assert data.kind == "loss"
    pd.testing.assert_frame_equal(data.frame, read_data(write(tmp_path, LOSS_CSV, "orig.csv")).frame)


def test_column_mapping_errors_name_file(tmp_path):
    path = write(tmp_path, LOSS_CSV)
    with pytest.raises(InputError) as info:
        read_data(path, columns={"params": "N"})
    assert_names(info.value, path, None, None, "'N'", "not found")
    with pytest.raises(InputError) as info:
        read_data(path, columns={"params": "tokens"})
    assert_names(info.value, path, None, None, "'tokens' is mapped to 'params'", "already has")


def test_bad_value_in_mapped_column_reports_canonical_name(tmp_path):
    text = set_cell(LOSS_CSV.replace("params", "N"), 2, "N", "-5")
    path = write(tmp_path, text)
    with pytest.raises(InputError) as info:
        read_data(path, columns={"params": "N"})
    assert_names(info.value, path, 2, "params", "must be > 0")


# ----------------------------------------------------------------------------------- derived views / helpers
def test_tasks_and_checkpoints(tmp_path):
    data = read_data(write(tmp_path, LOSS_CSV))
    assert data.tasks == ("a", "b")
    ck = data.checkpoints
    assert list(ck.columns) == ["checkpoint", "params", "tokens", "n_tasks"]
    assert ck["checkpoint"].tolist() == [0, 1]
    assert ck["params"].tolist() == [1e7, 1e8]
    assert data.checkpoint_index().tolist() == [0, 0, 1, 1]


def test_collapse_counts_small(tmp_path):
    text = SAMPLES_CSV + "gsm,m2,1e8,2e9,p3,10,3\n"
    data = read_data(write(tmp_path, text))
    cells = data.collapse_counts()
    assert list(cells.columns) == ["task", "params", "tokens", "n_samples", "n_correct", "weight"]
    assert cells["weight"].sum() == len(data)
    assert cells.loc[(cells["params"] == 1e8) & (cells["n_correct"] == 3), "weight"].item() == 2
    assert not cells.drop(columns="weight").duplicated().any()


def test_collapse_counts_million_rows_fast():
    n = 1_000_000
    rng = np.random.default_rng(1)
    n_samples = rng.choice([10, 100, 1000], n)
    frame = pd.DataFrame({
        "task": pd.Series(rng.choice(["a", "b"], n), dtype="str"),
        "params": rng.choice([1e7, 1e8, 1e9], n).astype(float),
        "tokens": rng.choice([1e9, 1e10, 1e11], n).astype(float),
        "problem": pd.Series(np.arange(n).astype(str), dtype="str"),
        "n_samples": n_samples.astype(np.int64),
        "n_correct": rng.binomial(n_samples, 0.1).astype(np.int64),
    })
    data = EvalData(kind="samples", frame=frame)
    start = time.perf_counter()
    cells = data.collapse_counts()
    assert time.perf_counter() - start < 5.0
    assert cells["weight"].sum() == n
    assert not cells.drop(columns="weight").duplicated().any()
    assert len(cells) < n / 10


def test_collapse_counts_needs_samples(tmp_path):
    with pytest.raises(InputError, match="samples"):
        read_data(write(tmp_path, LOSS_CSV)).collapse_counts()


def test_from_frame_validates_like_a_file():
    frame = pd.read_csv(pd.io.common.StringIO(LOSS_CSV))
    assert from_frame(frame).kind == "loss"
    frame.loc[2, "loss"] = -1.0
    with pytest.raises(InputError) as info:
        from_frame(frame, source="sim")
    assert str(info.value).startswith("sim, row 3, column 'loss': must be > 0")


def test_validate_tasks(tmp_path):
    data = read_data(write(tmp_path, LOSS_CSV))
    validate_tasks(data, ["a", "b", "c"])
    validate_tasks(["a"], data.tasks)
    with pytest.raises(InputError) as info:
        validate_tasks(data, ["a"])
    msg = str(info.value)
    assert "unknown task 'b'" in msg and "the fit knows: a" in msg and "data.csv" in msg
    with pytest.raises(InputError, match="unknown tasks 'x', 'y'"):
        validate_tasks(pd.DataFrame({"task": ["x", "y", "a"]}), ["a"])


def test_row_numbers_exclude_header(tmp_path):
    # the 1st line under the header is row 1
    path = write(tmp_path, set_cell(LOSS_CSV, 1, "tokens", "-1"))
    with pytest.raises(InputError) as info:
        read_data(path)
    assert info.value is not None
    assert ", row 1, column 'tokens'" in str(info.value)


# -------------------------------------------------------------------------------------------------- real data
def _shared(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} not available")
    return path


def test_real_pythia_samples():
    data = read_data(_shared("pythia_gsm8k_samples.csv"))
    assert data.kind == "samples"
    assert len(data) == 10273
    assert data.tasks == ("gsm8k",)
    assert len(data.checkpoints) == 81
    assert (data.frame["n_correct"] <= data.frame["n_samples"]).all()
    cells = data.collapse_counts()
    assert cells["weight"].sum() == len(data)


def test_real_porian_losses():
    data = read_data(_shared("porian_isoflop_losses.csv"))
    assert data.kind == "loss"
    assert len(data) == 1745
    assert len(data.tasks) == 15
    assert (data.frame["k"] == 1).all()
    assert "flops" in data.frame.columns  # extra column kept untouched
    assert data.frame["flops"].min() == pytest.approx(1.25e16)


def test_real_gadre_losses():
    data = read_data(_shared("gadre_overtraining_losses.csv"))
    assert data.kind == "loss"
    assert len(data.tasks) == 8
    assert {"train_data", "tokens_per_param", "model"} <= set(data.frame.columns)


def test_real_gadre_accuracy_is_not_a_known_kind():
    path = _shared("gadre_overtraining_accuracy.csv")
    with pytest.raises(InputError) as info:
        read_data(path)
    assert_names(info.value, path, None, None, "cannot tell the data kind", "'pass_at_k'", "'n_problems'",
                 "accuracy")


def test_real_files_together_must_share_kind():
    a, b = _shared("porian_isoflop_losses.csv"), _shared("pythia_gsm8k_samples.csv")
    with pytest.raises(InputError, match="same kind"):
        read_data([a, b])


@pytest.mark.parametrize("content, row, fragment", [
    (b"task,params,tokens,loss\na,1e7,1e9,2\na,1e7,1e9,2,5,6\n", 2, "6 fields, but the header has 4"),
    # every row one field too many: pandas would take column 1 as the index and shift the others silently
    (b"params,tokens,loss\na,1e7,1e9,2\nb,1e7,1e9,3\n", 1, "4 fields, but the header has 3"),
    (b"task,params,tokens,loss\na,1,000,000,1e9,2\n", 1, "thousands separator"),
])
def test_too_many_fields_names_the_row(tmp_path, content, row, fragment):
    path = tmp_path / "ragged.csv"
    path.write_bytes(content)
    with pytest.raises(InputError) as info:
        read_data(path)
    assert_names(info.value, path, row, None, fragment)


@pytest.mark.parametrize("header, column", [
    ("task,params,tokens,loss,loss", "loss"),
    ("task,params, params,tokens,loss", "params"),   # the same name once spaces are trimmed
])
def test_duplicate_column_names_are_an_error(tmp_path, header, column):
    """pandas renames a repeated `loss` to `loss.1` silently; the reader refuses the file instead."""
    path = tmp_path / "dupe.csv"
    path.write_text(header + "\n" + ",".join(["a"] + ["2"] * (header.count(","))) + "\n")
    with pytest.raises(InputError) as info:
        read_data(path)
    assert_names(info.value, path, None, column, "duplicate column name")


def test_duplicate_column_after_mapping(tmp_path):
    path = tmp_path / "map.csv"
    path.write_text("task,N,params,tokens,loss\na,1e8,1e8,1e9,2\n")
    with pytest.raises(InputError) as info:
        read_data(path, columns={"params": "N"})
    assert "already has a 'params' column" in str(info.value) and str(path) in str(info.value)


def test_other_separators_are_named(tmp_path):
    path = tmp_path / "semi.csv"
    path.write_text("task;params;tokens;loss\na;1e8;1e9;2,5\n")
    with pytest.raises(InputError) as info:
        read_data(path)
    assert_names(info.value, path, None, None, "separated by ';'")


def test_counts_beyond_exact_integers_are_rejected(tmp_path):
    path = tmp_path / "big.csv"
    path.write_text("task,params,tokens,problem,n_samples,n_correct\na,1e8,1e9,p,1e30,1\n")
    with pytest.raises(InputError) as info:
        read_data(path)
    assert_names(info.value, path, 1, "n_samples", "too large")


def test_trailing_empty_column_is_dropped_but_unnamed_values_are_not(tmp_path):
    path = tmp_path / "trail.csv"
    path.write_text("task,params,tokens,loss,\na,1e8,1e9,2,\n")
    assert list(read_data(path).frame.columns) == ["task", "params", "tokens", "k", "loss"]
    path.write_text("task,,tokens,loss\na,1e8,1e9,2\n")
    with pytest.raises(InputError) as info:
        read_data(path)
    assert_names(info.value, path, None, None, "column 2 has values but no name")


def test_a_note_when_tasks_look_like_separate_runs_sharing_a_grid():
    """Tasks on overlapping grids of (params, tokens), no `model` names: the rows of one (params, tokens) would
    be taken for one trained model, so the data say so; named runs, checkpoints seen by every task (one set of
    models on several benchmarks) or one task: no note."""
    grid = [(n, d) for n in (1e7, 2e7, 4e7, 8e7) for d in (1e9, 2e9, 4e9)]
    rows = [{"task": t, "params": n, "tokens": d, "loss": 3.0}
            for t, part in (("config-a", grid[:8]), ("config-b", grid[4:]), ("config-c", grid[2:10]))
            for n, d in part]
    frame = pd.DataFrame(rows)
    note = from_frame(frame).unnamed_shared_runs_note()
    assert note is not None and "`model` column" in note and "in every task" in note
    named = frame.assign(model=frame["task"] + frame["params"].astype(str) + frame["tokens"].astype(str))
    assert from_frame(named).unnamed_shared_runs_note() is None
    benchmarks = pd.DataFrame([{"task": t, "params": n, "tokens": d, "loss": 3.0} for t in ("a", "b") for n, d in grid])
    assert from_frame(benchmarks).unnamed_shared_runs_note() is None
    assert from_frame(frame[frame["task"] == "config-a"]).unnamed_shared_runs_note() is None
