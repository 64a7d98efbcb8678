"""Read and validate evaluation data (CSV or Parquet, long format) into an `EvalData`.

Formats are fixed by `shared/DESIGN.md`. Columns common to every kind: `task` (string; optional, defaults to
"default" for single-task data such as Chinchilla-style loss runs), `params` (N > 0), `tokens` (D > 0), and an
optional `model` (checkpoint name). The kind is told apart by its columns:

* **loss**    — `loss` (> 0, finite), optional `k` (integer >= 1, default 1), optional `unique_tokens` (0 < U <=
  tokens: the run repeated U unique tokens for tokens/U epochs; a blank cell means every token was fresh);
* **samples** — `problem`, `n_samples` (integer >= 1), `n_correct` (integer, 0 <= n_correct <= n_samples;
  counts at most `MAX_COUNT` = 2**53);
* **passk**   — `k` (integer >= 1), `pass_at_k` (in [0, 1]), `n_problems` (integer >= 1).

Any other column is kept untouched (after the canonical ones). Users can map their own column names onto the
canonical ones (`columns={"params": "N"}`, from the CLI's `--columns params=N`).

A file is refused as a whole when it cannot be read as a table whose columns mean one thing each: empty or
header-only, not UTF-8 text, a damaged gzip or Parquet file, a header in another dialect (`;`, tab), a repeated
column name (pandas would rename the second `loss` to `loss.1` silently), a column with values but no name, or
a row with more fields than the header (pandas would shift the columns silently). The user-facing rules are
in docs/data.md.

Every problem is reported as one `InputError` line naming the file, the row and the column. Row numbers are
1-based *data* row numbers: the header is not counted (and neither are blank lines a CSV reader skips), so
row 1 is the first line under the header. When several rows are bad, the first is reported with a count of the
others; `drop_bad_rows=True` drops them instead (with a warning) and records how many in `EvalData.dropped_rows`.
"""

from __future__ import annotations

import gzip
import hashlib
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from . import fmt
from .errors import InputError

KINDS: tuple[str, ...] = ("loss", "samples", "passk")
DEFAULT_TASK = "default"

#: Required columns per kind (beyond the common `params`, `tokens`).
REQUIRED: dict[str, tuple[str, ...]] = {
    "loss": ("loss",),
    "samples": ("problem", "n_samples", "n_correct"),
    "passk": ("k", "pass_at_k", "n_problems"),
}
#: Optional kind columns and their defaults.
OPTIONAL: dict[str, dict[str, object]] = {"loss": {"k": 1}, "samples": {}, "passk": {}}
#: Columns whose presence says which kind a file is (`k` is shared by loss and passk, `problem` is too generic).
SIGNATURE: dict[str, tuple[str, ...]] = {
    "loss": ("loss",),
    "samples": ("n_samples", "n_correct"),
    "passk": ("pass_at_k", "n_problems"),
}
COMMON_REQUIRED: tuple[str, ...] = ("params", "tokens")
LABEL_COLUMNS: tuple[str, ...] = ("task", "model", "problem")
FLOAT_COLUMNS: tuple[str, ...] = ("params", "tokens", "loss", "pass_at_k", "unique_tokens")
INT_COLUMNS: tuple[str, ...] = ("k", "n_samples", "n_correct", "n_problems")
CANONICAL_COLUMNS: tuple[str, ...] = ("task", "model", "params", "tokens", "k", "loss", "problem", "n_samples",
                                      "n_correct", "pass_at_k", "n_problems", "unique_tokens")
#: optional columns kept only when the input has them (no default is filled in): kind -> columns
OPTIONAL_IF_GIVEN: dict[str, tuple[str, ...]] = {"loss": ("unique_tokens",), "samples": (), "passk": ()}

#: Largest integer count accepted (k, n_samples, n_correct, n_problems): every integer up to 2**53 is exact in
#: float64, the type the models compute in.
MAX_COUNT = 2**53

_CSV_SUFFIXES = (".csv", ".csv.gz")
_PARQUET_SUFFIXES = (".parquet", ".pq")


# --------------------------------------------------------------------------------------------------- EvalData
@dataclass(frozen=True, eq=False)
class EvalData:
    """Validated evaluation data of one kind.

    `frame` holds the canonical columns first, with canonical dtypes (`task`, `model`, `problem`: str;
    `params`, `tokens`, `loss`, `pass_at_k`: float64; `k`, `n_samples`, `n_correct`, `n_problems`: int64),
    then any extra columns of the input, untouched. `model` is present only if the input had it.
    """

    kind: str
    frame: pd.DataFrame
    sources: tuple[str, ...] = ()
    dropped_rows: int = 0

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def columns(self) -> tuple[str, ...]:
        """The canonical columns of this kind, in frame order (task, [model], params, tokens, ...)."""
        return tuple(c for c in self.frame.columns if c in CANONICAL_COLUMNS)

    @cached_property
    def tasks(self) -> tuple[str, ...]:
        """Sorted distinct task names."""
        return tuple(sorted(self.frame["task"].unique().tolist()))

    @cached_property
    def checkpoints(self) -> pd.DataFrame:
        """Distinct trained models as (params, tokens) pairs, shared across tasks.

        Columns `checkpoint` (a stable id: the position in (params, tokens) order, so the same data give the same
        ids whatever the row or file order), `params`, `tokens`, `n_tasks`.
        """
        grouped = self.frame.groupby(["params", "tokens"], sort=True)["task"].nunique().rename("n_tasks")
        out = grouped.reset_index()
        out.insert(0, "checkpoint", np.arange(len(out), dtype=np.int64))
        return out

    def unnamed_shared_runs_note(self) -> str | None:
        """A warning when rows of different tasks are taken for one trained model only because they share a
        (params, tokens): the data name no runs (`model`), several tasks share checkpoints, yet fewer than
        half the checkpoints are seen by every task -- the look of tasks that are separate training runs on
        overlapping grids (one task per training configuration), not of one set of models evaluated on several
        benchmarks. None otherwise."""
        if len(self.tasks) < 2 or ("model" in self.frame and self.frame["model"].fillna("").ne("").any()):
            return None
        per_checkpoint = self.checkpoints["n_tasks"]
        shared = int((per_checkpoint > 1).sum())
        everywhere = float((per_checkpoint == len(self.tasks)).mean())
        if shared == 0 or everywhere >= 0.5:
            return None
        return (f"{shared} of {len(per_checkpoint)} (params, tokens) checkpoints appear in several tasks but only "
                f"{everywhere:.0%} in every task: rows of one (params, tokens) in different tasks are taken for "
                "one trained model and share its checkpoint effect. If your tasks are separate training runs "
                "(one task per training configuration), name each run in a `model` column (docs/data.md).")

    def checkpoint_index(self) -> np.ndarray:
        """Per row of `frame`, the id of its checkpoint in `checkpoints`."""
        keys = pd.MultiIndex.from_frame(self.checkpoints[["params", "tokens"]])
        return keys.get_indexer(pd.MultiIndex.from_frame(self.frame[["params", "tokens"]])).astype(np.int64)

    @cached_property
    def sha256(self) -> str:
        """Hash of the canonical content the fit sees (kind + canonical columns except `model`).

        Independent of file names, row order and extra columns; stable across runs and machines.
        """
        cols = [c for c in self.columns if c != "model"]
        frame = self.frame[cols].sort_values(cols, kind="stable").reset_index(drop=True)
        h = hashlib.sha256()
        h.update(f"bayes-t2 data v1|{self.kind}|{len(frame)}|{','.join(cols)}|".encode())
        for col in cols:
            values = frame[col]
            h.update(f"{col}:".encode())
            if col in LABEL_COLUMNS:
                h.update(np.ascontiguousarray(values.str.len().to_numpy(), dtype="<i8").tobytes())
                h.update("".join(values.tolist()).encode("utf-8", "surrogatepass"))
            elif col in INT_COLUMNS:
                h.update(np.ascontiguousarray(values.to_numpy(), dtype="<i8").tobytes())
            else:
                h.update(np.ascontiguousarray(values.to_numpy(), dtype="<f8").tobytes())
        return h.hexdigest()

    def collapse_counts(self) -> pd.DataFrame:
        """Samples kind: distinct (task, params, tokens, n_samples, n_correct) cells with their `weight`.

        `weight` is the number of problems in the cell; the cells are sufficient statistics for a
        beta-binomial likelihood (the log-likelihood is the weighted sum over cells). Sorted, index 0..n-1.
        """
        if self.kind != "samples":
            raise InputError(f"per-problem counts are needed (samples data: problem, n_samples, n_correct), "
                             f"but the data are of kind '{self.kind}'", source=_join_sources(self.sources))
        return collapse_counts(self.frame)


def collapse_counts(frame: pd.DataFrame) -> pd.DataFrame:
    """Per-problem counts -> distinct (task, params, tokens, n_samples, n_correct) cells, sorted, with their
    integer `weight` (number of problems), index 0..n-1: the sufficient statistics of a beta-binomial."""
    keys = ["task", "params", "tokens", "n_samples", "n_correct"]
    out = frame.groupby(keys, sort=True, observed=True).size().rename("weight").reset_index()
    out["weight"] = out["weight"].astype(np.int64)
    return out


# ------------------------------------------------------------------------------------------------ public API
def parse_column_map(text: str | None) -> dict[str, str]:
    """Parse `--columns` text "canonical=user,canonical=user" into {canonical: user}.

    Canonical names must be known (task, model, params, tokens, loss, k, problem, n_samples, n_correct,
    pass_at_k, n_problems); each may appear once and no user column may be mapped twice.
    """
    if text is None or not text.strip():
        return {}
    out: dict[str, str] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            raise InputError(f"--columns '{text}': empty entry; expected canonical=column pairs separated by commas")
        if item.count("=") != 1:
            raise InputError(f"--columns '{text}': entry '{item}' is not of the form canonical=column")
        canonical, user = (s.strip() for s in item.split("="))
        if not canonical or not user:
            raise InputError(f"--columns '{text}': entry '{item}' has an empty name")
        _check_column_map_pair(canonical, user, out, where=f"--columns '{text}'")
        out[canonical] = user
    return out


def read_data(paths: str | Path | Sequence[str | Path], columns: Mapping[str, str] | None = None,
              kind: str | None = None, drop_bad_rows: bool = False) -> EvalData:
    """Read one or several CSV (`.csv`, `.csv.gz`) or Parquet (`.parquet`, `.pq`) files into one `EvalData`.

    `columns` maps canonical names to the user's column names; `kind` forces a kind (loss, samples, passk)
    instead of detecting it from the columns. All files must be of the same kind. Bad rows raise an
    `InputError` (file, row, column, reason; plus how many more are bad) unless `drop_bad_rows` is set.
    """
    if kind is not None and kind not in KINDS:
        raise InputError(f"unknown data kind '{kind}'; choose one of {', '.join(KINDS)}")
    parts = _read_parts(paths, columns, kind)
    return _combine(parts, drop_bad_rows=drop_bad_rows)


def read_datasets(paths: str | Path | Sequence[str | Path], columns: Mapping[str, str] | None = None,
                  drop_bad_rows: bool = False) -> dict[str, EvalData]:
    """Read files of possibly different kinds: one `EvalData` per kind (e.g. loss files and samples files for
    a joint fit). Each file is validated as in `read_data`; files of one kind are combined."""
    parts = _read_parts(paths, columns, None)
    by_kind: dict[str, list[_Part]] = {}
    for part in parts:
        by_kind.setdefault(part.kind, []).append(part)
    return {kind: _combine(group, drop_bad_rows=drop_bad_rows) for kind, group in by_kind.items()}


def _read_parts(paths: str | Path | Sequence[str | Path], columns: Mapping[str, str] | None,
                kind: str | None) -> list[_Part]:
    """Each file read and validated on its own (kind detected unless forced)."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    paths = list(paths)
    if not paths:
        raise InputError("no data files given")
    column_map = _check_column_map(columns)
    labels = set(LABEL_COLUMNS) | {user for canonical, user in column_map.items() if canonical in LABEL_COLUMNS}
    return [_prepare(_read_file(Path(p), str(p), labels), str(p), column_map, kind) for p in paths]


def read_table(path: str | Path) -> pd.DataFrame:
    """One CSV or Parquet file as a raw DataFrame, with the reader's file checks (readable, not empty, one
    name per column, no row longer than the header, comma-separated) but no column rules: for side inputs
    such as `predict --points`."""
    return _read_file(Path(path), str(path), set())


def from_frame(frame: pd.DataFrame, *, source: str = "<data frame>", columns: Mapping[str, str] | None = None,
               kind: str | None = None, drop_bad_rows: bool = False) -> EvalData:
    """Validate an in-memory DataFrame (e.g. a simulation) exactly as `read_data` validates a file."""
    if kind is not None and kind not in KINDS:
        raise InputError(f"unknown data kind '{kind}'; choose one of {', '.join(KINDS)}")
    if len(frame.columns) == 0 or len(frame) == 0:
        raise InputError("no data rows", source=source)
    frame = frame.reset_index(drop=True)
    return _combine([_prepare(frame, source, _check_column_map(columns), kind)], drop_bad_rows=drop_bad_rows)


def validate_tasks(data: EvalData | pd.DataFrame | Iterable[str], known_tasks: Iterable[str]) -> None:
    """Raise `InputError` if `data` (EvalData, a frame with a `task` column, or task names) has tasks not in
    `known_tasks` (e.g. predicting for a task the fit does not know)."""
    source = None
    if isinstance(data, EvalData):
        source, tasks = _join_sources(data.sources), data.tasks
    elif isinstance(data, pd.DataFrame):
        if "task" not in data.columns:
            raise InputError("missing column 'task'")
        tasks = tuple(sorted(data["task"].astype(str).unique().tolist()))
    else:
        tasks = tuple(sorted({str(t) for t in ([data] if isinstance(data, str) else data)}))
    known = sorted({str(t) for t in known_tasks})
    unknown = [t for t in tasks if t not in set(known)]
    if unknown:
        listed = ", ".join(f"'{t}'" for t in unknown[:10]) + (f" (and {len(unknown) - 10} more)"
                                                               if len(unknown) > 10 else "")
        raise InputError(f"unknown task{'s' if len(unknown) > 1 else ''} {listed}; the fit knows: "
                         f"{', '.join(known[:20])}{' ...' if len(known) > 20 else ''}", source=source,
                         column="task")


# ------------------------------------------------------------------------------------------------- internals
@dataclass
class _Part:
    source: str
    kind: str
    frame: pd.DataFrame        # canonical + extra columns, all rows
    bad: np.ndarray            # bool per row
    first_error: InputError | None   # the first bad row's problem (source, row, column set)
    first_reason: str = ""           # ... and its reason alone


def _join_sources(sources: Sequence[str]) -> str | None:
    return ", ".join(sources) if sources else None


def _check_column_map_pair(canonical: str, user: str, seen: Mapping[str, str], where: str) -> None:
    if canonical not in CANONICAL_COLUMNS:
        raise InputError(f"{where}: unknown column name '{canonical}'; canonical names are "
                         f"{', '.join(CANONICAL_COLUMNS)}")
    if canonical in seen:
        raise InputError(f"{where}: '{canonical}' is mapped twice")
    if user in seen.values():
        raise InputError(f"{where}: column '{user}' is mapped twice")


def _check_column_map(columns: Mapping[str, str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for canonical, user in (columns or {}).items():
        _check_column_map_pair(str(canonical), str(user), out, where="column mapping")
        out[str(canonical)] = str(user)
    return out


def _file_type(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(_CSV_SUFFIXES):
        return "csv"
    if name.endswith(_PARQUET_SUFFIXES):
        return "parquet"
    raise InputError(f"unknown file type '{''.join(path.suffixes) or path.name}'; expected .csv, .csv.gz, "
                     f".parquet or .pq", source=str(path))


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    if len(text) > 200:
        text = text[:197] + "..."
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _read_file(path: Path, source: str, label_names: set[str]) -> pd.DataFrame:
    kind = _file_type(path)
    if not path.exists():
        raise InputError("file not found", source=source)
    if path.is_dir():
        raise InputError("is a directory, expected a data file", source=source)
    if kind == "csv":
        frame, header = _read_csv(path, source, label_names)
    else:
        import pyarrow.parquet as pq

        try:
            parquet = pq.ParquetFile(path)
            _check_header(parquet.schema_arrow.names, source)  # before pyarrow/pandas trip over a repeat
            frame = parquet.read().to_pandas()
        except InputError:
            raise
        except Exception as err:  # noqa: BLE001 - never a raw pyarrow traceback
            raise InputError(f"cannot read as a Parquet file ({_one_line(err)})", source=source) from None
        header = [str(c) for c in frame.columns]
    _check_header(header, source)
    frame.columns = [str(c).strip() for c in header]
    if len(frame) == 0:
        raise InputError(f"no data rows (header only: {', '.join(frame.columns)})", source=source)
    return frame.reset_index(drop=True)


def _read_csv(path: Path, source: str, label_names: set[str]) -> tuple[pd.DataFrame, list[str]]:
    """The CSV as a frame plus its header exactly as written (pandas renames a repeated name `x` to `x.1`
    silently, so duplicates are judged on the raw header).

    A row with more fields than the header is an error naming that row: pandas would otherwise either stop
    with a tokenizer message or, when every row has one field too many, silently take the first column as
    the index and shift every other column by one.
    """
    gz = path.name.lower().endswith(".gz")
    compression = "gzip" if gz else None
    try:
        with (gzip.open(path, "rb") if gz else open(path, "rb")) as fh:
            head = fh.read(65536)
    except Exception as err:  # noqa: BLE001 - any failure to open is the user's file problem
        raise InputError(f"cannot read {'gzip-compressed ' if gz else ''}CSV file ({_one_line(err)})",
                         source=source) from None
    if not head.strip():
        raise InputError("empty file (no header and no rows)", source=source)
    if b"\x00" in head:
        raise InputError("not a text CSV file (binary content)", source=source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            header_frame = pd.read_csv(path, header=None, nrows=1, dtype=str, compression=compression,
                                       keep_default_na=False, skipinitialspace=True)
            header = [str(c).strip() for c in header_frame.iloc[0].tolist()]
            frame = pd.read_csv(path, dtype={c: str for c in label_names}, compression=compression,
                                skipinitialspace=True, index_col=False)
    except pd.errors.EmptyDataError:
        raise InputError("empty file (no header and no rows)", source=source) from None
    except UnicodeDecodeError:
        raise InputError("cannot decode the file as UTF-8 text; is it really a CSV file?", source=source) from None
    except (pd.errors.ParserError, pd.errors.ParserWarning) as err:
        _raise_field_count(path, gz, source)
        raise InputError(f"cannot parse as CSV ({_one_line(err)})", source=source) from None
    except (EOFError, OSError, gzip.BadGzipFile) as err:
        what = "gzip-compressed CSV file is damaged or truncated" if gz else "cannot read the CSV file"
        raise InputError(f"{what} ({_one_line(err)})", source=source) from None
    except Exception as err:  # noqa: BLE001 - never a raw pandas traceback
        raise InputError(f"cannot parse as CSV ({_one_line(err)})", source=source) from None
    if len(header) != len(frame.columns):  # cannot happen after the checks above; never shift columns silently
        raise InputError(f"the header has {len(header)} names but pandas read {len(frame.columns)} columns",
                         source=source)
    _check_separator(header, source)
    unnamed = [i for i, name in enumerate(header) if not name]
    if unnamed:  # trailing empty columns (a comma at the end of every line) carry nothing: drop them
        filled = [i for i in unnamed if frame.iloc[:, i].notna().any()]
        if filled:
            raise InputError(f"column {filled[0] + 1} has values but no name in the header", source=source)
        keep = [i for i in range(len(header)) if header[i]]
        frame, header = frame.iloc[:, keep], [header[i] for i in keep]
    return frame, header


def _check_separator(header: Sequence[str], source: str) -> None:
    """A one-column header holding ';', tab or '|' is a file in another CSV dialect: say so."""
    if len(header) == 1 and any(sep in header[0] for sep in (";", "\t", "|")):
        sep = next(s for s in (";", "\t", "|") if s in header[0])
        raise InputError(f"the header is one column, {_short(header[0])!r}: the file seems to be separated by "
                         f"{sep!r}; bayes-t2 reads comma-separated files (use a '.' decimal point and no "
                         f"thousands separators)", source=source)


def _raise_field_count(path: Path, gz: bool, source: str) -> None:
    """Find the first row whose field count differs from the header's and raise an InputError naming it.

    Rows are counted as the reader counts them: data rows after the header, blank lines skipped."""
    import csv
    import io

    try:
        with (gzip.open(path, "rb") if gz else open(path, "rb")) as raw:
            text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
            rows = (r for r in csv.reader(text, skipinitialspace=True) if r and any(f.strip() for f in r))
            header = next(rows, None)
            if header is None:
                return
            _check_separator([f.strip() for f in header], source)
            for i, row in enumerate(rows, start=1):
                if len(row) > len(header):
                    raise InputError(f"{len(row)} fields, but the header has {len(header)} names (a comma inside "
                                     f"an unquoted value, such as a thousands separator or a decimal comma?)",
                                     source=source, row=i)
    except InputError:
        raise
    except Exception:  # noqa: BLE001 - fall back to the parser's own message
        return


def _check_header(header: Sequence[str], source: str) -> None:
    """Column names must be distinct (after trimming spaces): a repeated name would be renamed or shadowed."""
    names = [str(c).strip() for c in header]
    seen: set[str] = set()
    dupes = [c for c in names if c in seen or seen.add(c)]
    if dupes:
        listed = ", ".join(f"'{c}'" for c in dict.fromkeys(dupes))
        raise InputError(f"duplicate column name{'s' if len(set(dupes)) > 1 else ''} {listed}; every column "
                         f"needs its own name", source=source, column=dupes[0])


def _detect_kind(columns: Sequence[str], source: str) -> str:
    present = set(columns)
    matches = [k for k in KINDS if any(c in present for c in SIGNATURE[k])]
    if len(matches) == 1:
        return matches[0]
    found = ", ".join(columns)
    if not matches:
        needs = "; ".join(f"{k} needs {', '.join(repr(c) for c in REQUIRED[k])}" for k in KINDS)
        missing_common = [c for c in COMMON_REQUIRED if c not in present]
        common = (f"; also missing {', '.join(repr(c) for c in missing_common)}" if missing_common else "")
        raise InputError(f"cannot tell the data kind, missing columns: {needs}{common} (found: {found}); "
                         f"rename or map your columns with --columns canonical=yours", source=source)
    raise InputError(f"ambiguous data kind: columns fit {' and '.join(matches)} (found: {found}); "
                     f"choose one with the kind option", source=source)


def _prepare(raw: pd.DataFrame, source: str, column_map: Mapping[str, str], kind: str | None) -> _Part:
    frame = raw
    # 1. user names -> canonical names
    if column_map:
        rename = {}
        for canonical, user in column_map.items():
            if canonical == user:
                continue
            if user not in frame.columns:
                raise InputError(f"column '{user}' (mapped to '{canonical}') not found "
                                 f"(found: {', '.join(frame.columns)})", source=source)
            if canonical in frame.columns:
                raise InputError(f"column '{user}' is mapped to '{canonical}', but the file already has a "
                                 f"'{canonical}' column", source=source)
            rename[user] = canonical
        frame = frame.rename(columns=rename)
    _check_header(list(frame.columns), source)
    # 2. kind and required columns
    kind = kind or _detect_kind(list(frame.columns), source)
    required = COMMON_REQUIRED + REQUIRED[kind]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise InputError(f"missing required column{'s' if len(missing) > 1 else ''} "
                         f"{', '.join(repr(c) for c in missing)} for {kind} data "
                         f"(found: {', '.join(frame.columns)})", source=source)
    # 3. canonical columns in canonical order, then extras untouched
    n = len(frame)
    canon: dict[str, pd.Series] = {}
    checks: list[tuple[str, np.ndarray, object]] = []  # (column, bad mask, reason(row) -> str)
    order = ["task"] + (["model"] if "model" in frame.columns else []) + list(COMMON_REQUIRED)
    order += [c for c in CANONICAL_COLUMNS if c in REQUIRED[kind] or c in OPTIONAL[kind]]
    order += [c for c in OPTIONAL_IF_GIVEN[kind] if c in frame.columns]
    for col in order:
        if col not in frame.columns:
            default = DEFAULT_TASK if col == "task" else OPTIONAL[kind][col]
            canon[col] = pd.Series(np.full(n, default), dtype="str" if col == "task" else None)
            continue
        raw_col = frame[col]
        if col == "unique_tokens":  # a blank cell: every token was fresh, U = tokens (D' = D)
            blank = raw_col.isna() | (raw_col.astype("str").str.strip() == "")
            raw_col = raw_col.astype(object).where(~blank, frame["tokens"].astype(object))
        if col in LABEL_COLUMNS:
            values, bad = _labels(raw_col)
            if col != "model":  # the optional checkpoint name may be blank
                checks.append((col, bad, lambda i: "missing value"))
            canon[col] = values
        else:
            canon[col] = _numeric(col, raw_col, checks)
    if kind == "samples":
        ns, nc = canon["n_samples"].to_numpy(), canon["n_correct"].to_numpy()
        with np.errstate(invalid="ignore"):
            over = np.isfinite(ns) & np.isfinite(nc) & (nc > ns) & (ns >= 1) & (nc >= 0)
        checks.append(("n_correct", over, lambda i, nc=nc, ns=ns:
                       f"n_correct ({fmt.value(nc[i])}) > n_samples ({fmt.value(ns[i])})"))
    if "unique_tokens" in canon:
        u, d = canon["unique_tokens"].to_numpy(), canon["tokens"].to_numpy()
        with np.errstate(invalid="ignore"):
            over = np.isfinite(u) & np.isfinite(d) & (u > d) & (u > 0) & (d > 0)
        checks.append(("unique_tokens", over, lambda i, u=u, d=d:
                       f"unique_tokens ({fmt.value(u[i])}) > tokens ({fmt.value(d[i])}): a run cannot see more "
                       f"unique tokens than it trained on"))
    bad = np.zeros(n, dtype=bool)
    for _, mask, _ in checks:
        bad |= mask
    first_error, first_reason = None, ""
    if bad.any():
        row = int(np.argmax(bad))
        # report the first failing check of the first bad row, in column order
        col_rank = {c: i for i, c in enumerate(order)}
        failing = sorted(((col_rank[c], j) for j, (c, m, _) in enumerate(checks) if m[row]))
        col, _, reason = checks[failing[0][1]]
        first_reason = reason(row)
        first_error = InputError(first_reason, source=source, row=row + 1, column=col)
    out = pd.DataFrame(canon)
    for col in frame.columns:
        if col not in out.columns:
            out[col] = frame[col].to_numpy()
    return _Part(source=source, kind=kind, frame=out, bad=bad, first_error=first_error,
                 first_reason=first_reason)


def _labels(raw: pd.Series) -> tuple[pd.Series, np.ndarray]:
    values = raw.astype("str")
    missing = values.isna().to_numpy() | (values.str.strip() == "").fillna(True).to_numpy(dtype=bool)
    return values.str.strip(), missing


_RULES = {
    "params": ("> 0", lambda v: v > 0),
    "tokens": ("> 0", lambda v: v > 0),
    "loss": ("> 0", lambda v: v > 0),
    "pass_at_k": ("in [0, 1]", lambda v: (v >= 0) & (v <= 1)),
    "k": (">= 1", lambda v: v >= 1),
    "n_samples": (">= 1", lambda v: v >= 1),
    "n_correct": (">= 0", lambda v: v >= 0),
    "n_problems": (">= 1", lambda v: v >= 1),
    "unique_tokens": ("> 0", lambda v: v > 0),
}


def _numeric(col: str, raw: pd.Series, checks: list) -> pd.Series:
    """Coerce one numeric column; append its (mask, reason) checks; return it in its canonical dtype."""
    missing = raw.isna().to_numpy()
    if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
        values = raw.to_numpy(dtype=float, na_value=np.nan)
    else:  # text (or mixed / boolean) column: coerce, remembering what was not a number
        stripped = raw.astype("str").str.strip()
        missing = missing | (stripped == "").fillna(True).to_numpy(dtype=bool)
        values = pd.to_numeric(stripped.where(~missing), errors="coerce").to_numpy(dtype=float)
        if pd.api.types.is_bool_dtype(raw):
            values = np.full(len(raw), np.nan)
    not_number = ~missing & np.isnan(values)
    raw_values = raw.to_numpy()
    checks.append((col, missing, lambda i: "missing value"))
    checks.append((col, not_number, lambda i: f"not a number: {_short(raw_values[i])!r}"))
    finite = np.isfinite(values)
    nonfinite = ~np.isnan(values) & ~finite
    checks.append((col, nonfinite, lambda i: f"must be finite, got {values[i]}"))
    rule, ok = _RULES[col]
    with np.errstate(invalid="ignore"):
        out_of_range = finite & ~ok(values)
    checks.append((col, out_of_range, lambda i: f"must be {rule}, got {fmt.value(values[i])}"))
    if col in INT_COLUMNS:
        with np.errstate(invalid="ignore"):
            frac = finite & ~out_of_range & (values != np.floor(values))
        checks.append((col, frac, lambda i: f"must be an integer, got {fmt.value(values[i])}"))
        # beyond 2**53 a float no longer holds every integer, and beyond 2**63 int64 wraps around
        huge = finite & ~out_of_range & (np.abs(np.where(finite, values, 0)) > MAX_COUNT)
        checks.append((col, huge, lambda i: f"too large, got {fmt.value(values[i])} (at most {MAX_COUNT:.0f})"))
        ints = np.where(finite & ~huge, values, 0).round().astype(np.int64)
        return pd.Series(ints, dtype=np.int64)
    return pd.Series(values, dtype=np.float64)


def _short(value: object) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _combine(parts: list[_Part], *, drop_bad_rows: bool) -> EvalData:
    kind = parts[0].kind
    for part in parts[1:]:
        if part.kind != kind:
            raise InputError(f"has {part.kind} data, but {parts[0].source} has {kind} data; all files must be "
                             f"of the same kind", source=part.source)
    n_bad = int(sum(p.bad.sum() for p in parts))
    if n_bad and not drop_bad_rows:
        part = next(p for p in parts if p.first_error is not None)
        first = part.first_error
        n_files = sum(1 for p in parts if p.bad.any())
        where = f" in {n_files} files" if n_files > 1 else ""
        hint = (f" (and {n_bad - 1} more bad row{'s' if n_bad > 2 else ''}{where}; pass --drop-bad-rows to skip "
                f"them)" if n_bad > 1 else " (pass --drop-bad-rows to skip it)")
        raise InputError(part.first_reason + hint, source=first.source, row=first.row, column=first.column)
    frames = []
    for part in parts:
        if part.bad.any():
            warnings.warn(f"{part.source}: dropped {int(part.bad.sum())} bad row(s) of {len(part.bad)}; first: "
                          f"{part.first_error}", UserWarning, stacklevel=3)
        frames.append(part.frame.loc[~part.bad])
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].reset_index(drop=True)
    sources = tuple(p.source for p in parts)
    if len(frame) == 0:
        raise InputError("no valid rows left after dropping bad rows", source=_join_sources(sources))
    # restore canonical dtypes (concat with missing optional columns can upcast)
    for col in frame.columns:
        if col in LABEL_COLUMNS:
            frame[col] = frame[col].astype("str")
        elif col in FLOAT_COLUMNS:
            frame[col] = frame[col].astype(np.float64)
        elif col in INT_COLUMNS:
            frame[col] = frame[col].astype(np.int64)
    return EvalData(kind=kind, frame=frame, sources=sources, dropped_rows=n_bad)
