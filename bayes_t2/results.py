"""Result objects of the Python API that are more than one xarray Dataset: `Decision`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import xarray as xr


@dataclass(frozen=True)
class Decision:
    """One design to commit to per task (`Fit.decide`), against the baselines.

    `dataset` is what `bayes_t2.decide.decide` returns: dims (task, design) and, per draw, (chain, draw,
    task, design); `records` are the rows of decision.json (the same `decision_records` the CLI writes);
    `table` is one row per (task, design) for reading in a notebook.
    """

    dataset: xr.Dataset

    @property
    def records(self) -> list[dict[str, Any]]:
        from .decide import decision_records

        return decision_records(self.dataset)

    @property
    def table(self) -> pd.DataFrame:
        """Per (task, design): N, D, k, tokens per parameter, the metric's median and interval, P(reach the
        target), expected regret and the utility the risk attitude ranks by."""
        rows = []
        for rec in self.records:
            for design, d in rec.items():
                if not (isinstance(d, dict) and "N" in d):
                    continue
                rows.append({"task": rec["task"], "design": design, "N": d["N"], "D": d["D"], "k": d["k"],
                             "tokens_per_param": d["tokens_per_param"],
                             **{f"{rec['metric_name']}_{key}": d["metric"][key]
                                for key in ("median", "mean", "lower", "upper")},
                             **{key: d.get(key) for key in d if key not in ("N", "D", "k", "tokens_per_param",
                                                                            "metric")}})
        return pd.DataFrame(rows).set_index(["task", "design"])

    def to_json(self) -> str:
        """decision.json's text."""
        from .io import json_text

        return json_text(self.records)

    def save_json(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write decision.json atomically (refusing to replace a file unless `overwrite`)."""
        from .io import write_json

        return write_json(path, self.records, overwrite=overwrite)

    def __repr__(self) -> str:
        return f"Decision({self.dataset.attrs.get('risk', '?')}, tasks {list(map(str, self.dataset['task'].values))})"

    def _repr_html_(self) -> str:
        return self.table._repr_html_()
