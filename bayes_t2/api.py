"""The Python API's entry points -- the command line's twin (``import bayes_t2 as bt``).

``bt.read_data`` -> ``bt.fit`` -> a `Fit`, whose methods (optimize, summary, predict, decide, report, save)
take the budget as the CLI's option names (``train_flops=``, ``inference_flops=``, ...) and call the functions
the CLI calls; ``bt.load`` reads a saved fit. docs/api.md walks through it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .data import EvalData, from_frame, read_datasets
from .errors import InputError
from .fit import Fit, SamplerSettings, fit as _fit

DataSource = str | Path | pd.DataFrame | EvalData | Sequence[str | Path]


def read_data(source: DataSource, *, columns: Mapping[str, str] | None = None, kind: str | None = None,
              drop_bad_rows: bool = False) -> EvalData | dict[str, EvalData]:
    """Evaluation data, validated as ``bayes-t2 fit`` validates it: a CSV/Parquet path, several paths, or a
    pandas DataFrame. `columns` maps the canonical names to yours (``{"params": "N", "tokens": "D"}``);
    `kind` forces loss | samples | passk instead of detecting it from the columns.

    Returns one `EvalData`; files of two kinds (loss and per-problem samples) give ``{kind: EvalData}``,
    which `fit` fits jointly. Bad rows raise `InputError` naming file, row and column.
    """
    if isinstance(source, EvalData):
        return source
    if isinstance(source, pd.DataFrame):
        return from_frame(source, columns=columns, kind=kind, drop_bad_rows=drop_bad_rows)
    if kind is not None:
        from .data import read_data as read_one_kind

        return read_one_kind(source, columns=columns, kind=kind, drop_bad_rows=drop_bad_rows)
    parts = read_datasets(source, columns=columns, drop_bad_rows=drop_bad_rows)
    return next(iter(parts.values())) if len(parts) == 1 else parts


def fit(data: DataSource | Mapping[str, EvalData], *, route: str | None = None,
        priors: str | Path | dict | None = None, draws: int = 1000, tune: int = 1000, chains: int = 4,
        seed: int = 0, sampler: str = "nutpie", target_accept: float = 0.9, pointwise: bool = True,
        progressbar: bool = False, allow_prior_only: bool = False, discrepancy: str | float | None = None) -> Fit:
    """Fit the hierarchical T2 law (as ``bayes-t2 fit``): the route is chosen from the data's columns (loss
    -> loss route, per-problem counts -> accuracy route, both -> a joint fit) unless `route` is given.

    `data`: anything `read_data` takes, or what it returned. `priors`: a TOML path or dict overriding
    models/<route>.toml. The sampler settings are the CLI's options of the same names; `pointwise=False`
    skips the log-likelihood/prior/predictive groups (smaller files, no LOO). Data that cannot identify the
    law raise `InputError` unless `allow_prior_only` (as ``--allow-prior-only``; docs/data.md).
    `discrepancy` (as ``--discrepancy``): "learn" (the law's error beyond the data, from two backtests inside
    them; the loss model file's default, the accuracy model file's is 0), a number >= 0, or None for the model
    file's setting.
    """
    if not isinstance(data, (EvalData, Mapping)):
        data = read_data(data)
    settings = SamplerSettings(draws=draws, tune=tune, chains=chains, seed=seed, sampler=sampler,
                               target_accept=target_accept, pointwise=pointwise)
    return _fit(data, route=route, priors=priors, settings=settings, progressbar=progressbar,
                allow_prior_only=allow_prior_only, discrepancy=discrepancy)


def example_data(route: str = "loss") -> Path:
    """The embedded example data set (what ``bayes-t2 demo`` fits): ``loss`` (loss curves at several k) or
    ``accuracy`` (per-problem counts). Both were simulated from a known truth, stored beside the CSV as
    ``<name>.truth.json``."""
    from .demo import DEMO_DATA
    from .resources import data_dir

    if route not in DEMO_DATA:
        raise InputError(f"example data exist for routes {', '.join(DEMO_DATA)}, not '{route}'")
    return data_dir() / DEMO_DATA[route][0]


def load(path: str | Path) -> Fit:
    """A fit saved by `Fit.save` or ``bayes-t2 fit --out`` (with any derived results saved beside it in
    `Fit.results`). A file that is not a bayes-t2 fit raises `InputError`."""
    return Fit.load(path)


__all__ = ["InputError", "example_data", "fit", "load", "read_data"]
