"""Budgets in hardware and money: a cost file and budgets written in dollars or GPU-hours, converted to the
optimizer's FLOPs here, once.

A cost file (TOML, read with `tomllib`; see models/costs/) gives, for training and for serving, the peak FLOP/s
of one accelerator, the utilisation reached (training's model-FLOPs utilisation; serving's separately for
prefill, which is compute-bound, and decode, which is memory-bound), and the price per GPU-hour or per FLOP
(serving may price prefill and decode, i.e. input and output tokens, separately):

    [train]
    peak_flops = 989e12          # FLOP/s per GPU
    utilization = 0.40
    price_per_gpu_hour = 2.0     # or price_per_flop
    [serve]
    peak_flops = 989e12
    prefill_utilization = 0.50
    decode_utilization = 0.05
    price_per_gpu_hour = 2.0     # or prefill_/decode_price_per_gpu_hour, or [prefill_/decode_]price_per_flop

From it every unit has a rate per FLOP of training, prefill and decode: dollars per FLOP = price per GPU-hour /
(3600 x peak x utilisation), GPU-hours per FLOP = 1 / (3600 x peak x utilisation). A budget given in a unit
becomes FLOPs (training, total) or "decode-FLOP equivalents" (per query) and the query's prefill and decode
FLOPs are weighted by their rates' ratios: the same query-cost function (`designs.query_terms`) with weights,
not a second formula. `Prices` (dollars per FLOP) travel with the budget so every output shows money beside
FLOPs.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .errors import InputError

__all__ = ["Costs", "Prices", "budget_fields", "load_costs", "parse_amount"]

SECONDS_PER_HOUR = 3600.0
UNITS = {"$": "dollars", "GPU-h": "GPU-hours"}


@dataclass(frozen=True)
class Prices:
    """A rate per FLOP of training, of prefill (prompt tokens) and of decode (sampled tokens): dollars per FLOP
    as a budget's `prices`, or GPU-hours per FLOP."""

    train: float
    prefill: float
    decode: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Costs:
    """A cost file, resolved: rates per FLOP in dollars (None if the file gives no price) and in GPU-hours
    (None if it gives no peak FLOP/s and utilisations)."""

    dollars: Prices | None
    gpu_hours: Prices | None
    source: str

    def rates(self, unit: str, option: str) -> Prices:
        rates = self.dollars if unit == "$" else self.gpu_hours
        if rates is None:
            need = "prices (price_per_gpu_hour or price_per_flop)" if unit == "$" else \
                "peak_flops and utilisations"
            raise InputError(f"{option} in {UNITS[unit]} needs {need} for training and serving in {self.source}")
        return rates


# ------------------------------------------------------------------------------------------------ the file
def _number(table: dict, key: str, where: str, *, at_most_one: bool = False) -> float | None:
    if key not in table:
        return None
    v = table[key]
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0
    if ok and at_most_one:
        ok = v <= 1.0
    if not ok:
        rule = "a number in (0, 1]" if at_most_one else "a positive number"
        raise InputError(f"{where}: {key} must be {rule}, got {v!r}")
    return float(v)


def _per_flop(table: dict, where: str, stage: str, util_key: str) -> tuple[float | None, float | None]:
    """(dollars per FLOP, GPU-hours per FLOP) of one stage (train, prefill, decode) of a [train]/[serve] table."""
    peak = _number(table, "peak_flops", where)
    util = _number(table, util_key, where, at_most_one=True)
    hours = 1.0 / (SECONDS_PER_HOUR * peak * util) if peak is not None and util is not None else None
    prefix = "" if stage == "train" else f"{stage}_"
    per_flop = _number(table, f"{prefix}price_per_flop", where) or _number(table, "price_per_flop", where)
    per_hour = _number(table, f"{prefix}price_per_gpu_hour", where) or _number(table, "price_per_gpu_hour", where)
    if per_flop is not None and per_hour is not None:
        raise InputError(f"{where}: give {stage}'s price per GPU-hour or per FLOP, not both")
    if per_hour is not None:
        if hours is None:
            raise InputError(f"{where}: a price per GPU-hour needs peak_flops and {util_key}")
        per_flop = per_hour * hours
    return per_flop, hours


def load_costs(path: str | Path) -> Costs:
    """Read a cost file (TOML, never evaluated) -> Costs; InputError naming the file and key on any problem."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"--costs {path}: no such cost file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"--costs {path}: cannot read the cost file ({err.__class__.__name__})") from None
    except tomllib.TOMLDecodeError as err:
        raise InputError(f"--costs {path}: not valid TOML ({' '.join(str(err).split())})") from None
    unknown = sorted(set(raw) - {"train", "serve", "meta"})
    if unknown or not isinstance(raw.get("train"), dict) or not isinstance(raw.get("serve"), dict):
        raise InputError(f"{path}: a cost file has a [train] and a [serve] table"
                         + (f"; unknown table(s) {', '.join(unknown)}" if unknown else ""))
    known = {"train": {"peak_flops", "utilization", "price_per_gpu_hour", "price_per_flop"},
             "serve": {"peak_flops", "prefill_utilization", "decode_utilization", "price_per_gpu_hour",
                       "price_per_flop", "prefill_price_per_gpu_hour", "decode_price_per_gpu_hour",
                       "prefill_price_per_flop", "decode_price_per_flop"}}
    for name, keys in known.items():
        extra = sorted(set(raw[name]) - keys)
        if extra:
            raise InputError(f"{path} [{name}]: unknown key(s) {', '.join(extra)}; known: {', '.join(sorted(keys))}")
    train = _per_flop(raw["train"], f"{path} [train]", "train", "utilization")
    prefill = _per_flop(raw["serve"], f"{path} [serve]", "prefill", "prefill_utilization")
    decode = _per_flop(raw["serve"], f"{path} [serve]", "decode", "decode_utilization")
    stages = (train, prefill, decode)
    dollars = Prices(*(s[0] for s in stages)) if all(s[0] is not None for s in stages) else None
    hours = Prices(*(s[1] for s in stages)) if all(s[1] is not None for s in stages) else None
    if dollars is None and hours is None:
        raise InputError(f"{path}: give prices or peak_flops and utilisations for training and serving")
    return Costs(dollars=dollars, gpu_hours=hours, source=str(path))


# ------------------------------------------------------------------------------------------------ amounts
_AMOUNT = re.compile(r"^\s*(?P<dollar>\$)?\s*(?P<x>[0-9.]+(?:[eE][+-]?[0-9]+)?)\s*(?P<gpuh>gpu[- ]?h(?:ours?)?)?"
                     r"\s*(?P<per>/\s*query)?\s*$", re.IGNORECASE)


def parse_amount(option: str, text: str, *, per_query: bool) -> tuple[float, str]:
    """'$2e6' -> (2e6, '$'), '1e5 GPU-h' -> (1e5, 'GPU-h'); per_query: '/query' may follow (and is implied)."""
    example = "'$0.002/query' or '1e-6 GPU-h/query'" if per_query else "'$2e6' or '1e5 GPU-h'"
    m = _AMOUNT.match(str(text))
    if m is None or bool(m["dollar"]) == bool(m["gpuh"]) or (m["per"] and not per_query):
        raise InputError(f"{option} {text!r}: write an amount in dollars or GPU-hours, e.g. {example}")
    try:
        x = float(m["x"])
    except ValueError:
        raise InputError(f"{option} {text!r}: write an amount in dollars or GPU-hours, e.g. {example}") from None
    if not (math.isfinite(x) and x > 0):
        raise InputError(f"{option} {text!r}: the amount must be a positive number")
    return x, ("$" if m["dollar"] else "GPU-h")


def _show(x: float, unit: str) -> str:
    return f"${x:.3g}" if unit == "$" else f"{x:.3g} GPU-h"


def budget_fields(costs: Costs | None, *, train_budget: str | None = None, serve_budget: str | None = None,
                  total_budget: str | None = None) -> dict[str, Any]:
    """Budget keywords (train_flops, inference_flops, total_flops, prefill_weight, decode_weight, prices,
    stated) for budgets given in dollars or GPU-hours, through the cost file's rates.

    Training: C_train = amount / rate_train. Per query: the budget becomes decode-FLOP equivalents, amount /
    rate_decode, with prefill FLOPs weighted rate_prefill / rate_decode. Total: C = amount / rate_train with the
    query's prefill and decode FLOPs weighted rate_prefill / rate_train and rate_decode / rate_train."""
    out: dict[str, Any] = {}
    stated = []
    if costs is not None and costs.dollars is not None:
        out["prices"] = costs.dollars
    given = {"--train-budget": train_budget, "--serve-budget": serve_budget, "--total-budget": total_budget}
    if any(v is not None for v in given.values()) and costs is None:
        option = next(k for k, v in given.items() if v is not None)
        raise InputError(f"{option} needs --costs FILE (accelerator FLOP/s, utilisations and prices)")
    if train_budget is not None:
        x, unit = parse_amount("--train-budget", train_budget, per_query=False)
        out["train_flops"] = x / costs.rates(unit, "--train-budget").train
        stated.append(f"train {_show(x, unit)}")
    if serve_budget is not None:
        x, unit = parse_amount("--serve-budget", serve_budget, per_query=True)
        r = costs.rates(unit, "--serve-budget")
        out["inference_flops"] = x / r.decode
        out["prefill_weight"], out["decode_weight"] = r.prefill / r.decode, 1.0
        stated.append(f"serve {_show(x, unit)}/query")
    if total_budget is not None:
        x, unit = parse_amount("--total-budget", total_budget, per_query=False)
        r = costs.rates(unit, "--total-budget")
        out["total_flops"] = x / r.train
        out["prefill_weight"], out["decode_weight"] = r.prefill / r.train, r.decode / r.train
        stated.append(f"total {_show(x, unit)}")
    if stated:
        out["stated"] = ", ".join(stated)
    return out
