"""The accuracy route's data: per-problem counts collapsed to sufficient statistics, checked, and indexed.

A cell is a distinct (task, params, tokens, n_samples, n_correct) with an integer ``weight`` (its number of
problems); a unit is a distinct (task, checkpoint), the level at which the law (one Beta of per-problem
success) lives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ...data import collapse_counts
from ...errors import InputError
from .config import CELL_COLUMNS, accuracy_config


def collapse_samples(samples: pd.DataFrame) -> pd.DataFrame:
    """Per-problem counts -> distinct (task, params, tokens, n_samples, n_correct) cells with integer `weight`
    (`data.collapse_counts`, the same rule `EvalData.collapse_counts()` applies)."""
    missing = [c for c in CELL_COLUMNS[:-1] if c not in samples.columns]
    if missing:
        raise InputError(f"samples data lack column(s) {', '.join(missing)}")
    return collapse_counts(samples.assign(task=samples["task"].astype(str)))


def check_cells(cells: pd.DataFrame) -> pd.DataFrame:
    """Collapsed cells (a per-problem frame is collapsed first) with every value checked: one InputError
    naming the row and column of the first bad value."""
    if "weight" not in cells.columns and "problem" in cells.columns:
        cells = collapse_samples(cells)
    missing = [c for c in CELL_COLUMNS if c not in cells.columns]
    if missing:
        raise InputError(f"accuracy cells lack column(s) {', '.join(missing)} (expected {', '.join(CELL_COLUMNS)})")
    out = cells[list(CELL_COLUMNS)].copy()
    out["task"] = out["task"].astype(str)
    for col in CELL_COLUMNS[1:]:
        out[col] = pd.to_numeric(out[col], errors="coerce")
    checks = [("params", out["params"] > 0, "must be > 0"), ("tokens", out["tokens"] > 0, "must be > 0"),
              ("n_samples", out["n_samples"] >= 1, "must be >= 1"),
              ("n_correct", (out["n_correct"] >= 0) & (out["n_correct"] <= out["n_samples"]),
               "must be in [0, n_samples]"),
              ("weight", out["weight"] >= 1, "must be >= 1")]
    for col, ok, what in checks:
        ok = ok & np.isfinite(out[col])
        if not ok.all():
            row = int(np.flatnonzero(~ok.to_numpy())[0])
            raise InputError(f"{what}, got {out[col].iloc[row]!r}", source="accuracy cells", row=row, column=col)
    if len(out) == 0:
        raise InputError("no accuracy cells to fit")
    return out.reset_index(drop=True)


def reference_point(cells: pd.DataFrame, spec: Mapping[str, Any] | None = None) -> tuple[float, float]:
    """(N0, D0): the geometric means of the distinct checkpoints, unless the configuration fixes them."""
    ref = (spec or accuracy_config()).get("reference", {})
    ckpt = cells[["params", "tokens"]].drop_duplicates().to_numpy(float)
    n0 = float(ref.get("params", 0.0)) or float(np.exp(np.mean(np.log(ckpt[:, 0]))))
    d0 = float(ref.get("tokens", 0.0)) or float(np.exp(np.mean(np.log(ckpt[:, 1]))))
    return n0, d0


def unit_table(cells: pd.DataFrame, tasks: Sequence[str]) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """(units, unit index per cell, task index per unit): the distinct (task, checkpoint) pairs of the cells.
    Each unit has one Beta law of per-problem success; its cells are the distinct (n_samples, n_correct)."""
    units = cells[["task", "params", "tokens"]].drop_duplicates().sort_values(["task", "params", "tokens"])
    units = units.reset_index(drop=True)
    unit_idx = cells.merge(units.reset_index(names="unit"), on=["task", "params", "tokens"], how="left")["unit"]
    unit_task = units["task"].map({t: i for i, t in enumerate(tasks)}).to_numpy(np.int64)
    return units, unit_idx.to_numpy(np.int64), unit_task
