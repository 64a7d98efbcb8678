"""Budgets in hardware and money (bayes_t2/costs.py): the cost file, the conversion, and designs that stay
within a money budget, checked against the brute force and against money counted here by hand."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from bayes_t2.budget import Constraints, SplitBudget, TotalBudget, chinchilla_baseline, design_at
from bayes_t2.costs import Prices, load_costs, parse_amount
from bayes_t2.errors import InputError
from bayes_t2.laws import LOSS_COEFFICIENTS
from bayes_t2.optimum import OUTPUTS, optimize_array
from bayes_t2.options import budget_and_constraints
from bayes_t2.reference import objective_at, reference_optimum
from bayes_t2.simulate import _draw_one

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "models" / "costs" / "h100_sxm.toml"
ROW = {name: i for i, name in enumerate(OUTPUTS)}

COSTS = """
[train]
peak_flops = 1e15
utilization = 0.5
price_per_gpu_hour = 3.6
[serve]
peak_flops = 1e15
prefill_utilization = 0.4
decode_utilization = 0.04
prefill_price_per_gpu_hour = 1.8
decode_price_per_gpu_hour = 3.6
"""
#: by hand: dollars per FLOP = price / (3600 s x peak x utilisation)
TRAIN, PREFILL, DECODE = 3.6 / (3600 * 1e15 * 0.5), 1.8 / (3600 * 1e15 * 0.4), 3.6 / (3600 * 1e15 * 0.04)


@pytest.fixture
def costs_file(tmp_path):
    path = tmp_path / "costs.toml"
    path.write_text(COSTS)
    return path


def test_rates_from_the_file(costs_file):
    c = load_costs(costs_file)
    assert c.dollars.train == pytest.approx(TRAIN, rel=1e-15)
    assert c.dollars.prefill == pytest.approx(PREFILL, rel=1e-15)
    assert c.dollars.decode == pytest.approx(DECODE, rel=1e-15)
    assert c.gpu_hours.decode == pytest.approx(1 / (3600 * 1e15 * 0.04), rel=1e-15)


def test_example_file_is_sourced_and_loads():
    """The shipped example: every figure has a comment with its source or says it is an assumption."""
    c = load_costs(EXAMPLE)
    assert c.dollars is not None and c.gpu_hours is not None
    lines = EXAMPLE.read_text().splitlines()
    for i, line in enumerate(lines):
        if "=" in line and not line.lstrip().startswith("#"):
            assert lines[i - 1].lstrip().startswith("#"), f"no source comment above {line!r}"


@pytest.mark.parametrize("text, per_query, want", [
    ("$2e6", False, (2e6, "$")), ("1e5 GPU-h", False, (1e5, "GPU-h")), ("$ 0.002/query", True, (0.002, "$")),
    ("3 gpu-hours", False, (3.0, "GPU-h")), ("1e-6 GPU-h/query", True, (1e-6, "GPU-h")),
])
def test_amounts(text, per_query, want):
    assert parse_amount("--x", text, per_query=per_query) == want


@pytest.mark.parametrize("text", ["2e6", "$", "$abc", "$-1", "$0", "$1e999", "2e6 $ GPU-h", "$2e6/query", ""])
def test_bad_amounts_name_the_option(text):
    with pytest.raises(InputError, match="--train-budget"):
        parse_amount("--train-budget", text, per_query=False)


@pytest.mark.parametrize("content, fragment", [
    ("[train\n", "not valid TOML"),
    ("[train]\npeak_flops = 1e15\n", "[train] and a [serve]"),
    (COSTS.replace("utilization = 0.5", "utilization = 1.5"), "(0, 1]"),
    (COSTS.replace("peak_flops = 1e15\nutilization", "peak_flops = -1\nutilization"), "peak_flops"),
    (COSTS + "\n[gpu]\n", "unknown table"),
    (COSTS.replace("[serve]", "[serve]\nbogus = 1"), "bogus"),
    ("[train]\nprice_per_gpu_hour = 2\n[serve]\nprice_per_flop = 1e-18\n", "needs peak_flops"),
    ('[train]\nutilization = "__import__(\'os\')"\npeak_flops = 1e15\n[serve]\n', "utilization"),
])
def test_bad_cost_files_are_one_line_naming_the_file(tmp_path, content, fragment):
    path = tmp_path / "c.toml"
    path.write_text(content)
    with pytest.raises(InputError) as info:
        load_costs(path)
    msg = str(info.value)
    assert str(path) in msg and fragment in msg and "\n" not in msg


def test_money_needs_a_cost_file_and_one_unit_per_budget(costs_file):
    with pytest.raises(InputError, match="needs --costs"):
        budget_and_constraints(train_budget="$1e6", inference_flops=1e12)
    with pytest.raises(InputError, match="not both"):
        budget_and_constraints(costs=costs_file, train_budget="$1e6", train_flops=1e21, inference_flops=1e12)


def test_conversion(costs_file):
    """$ -> FLOPs at the training rate; a per-query $ budget -> decode-FLOP equivalents with prefill FLOPs
    weighted by the price ratio; a total $ budget weighs the query's FLOPs against training's."""
    split, _ = budget_and_constraints(costs=costs_file, train_budget="$1e6", serve_budget="$0.01/query",
                                      tokens_per_sample=16, prompt_tokens=1000)
    assert split.train_flops == pytest.approx(1e6 / TRAIN, rel=1e-12)
    assert split.inference_flops == pytest.approx(0.01 / DECODE, rel=1e-12)
    assert split.prefill_weight == pytest.approx(PREFILL / DECODE, rel=1e-12) and split.decode_weight == 1.0
    total, _ = budget_and_constraints(costs=costs_file, total_budget="$1e7", queries=1e9)
    assert total.total_flops == pytest.approx(1e7 / TRAIN, rel=1e-12)
    assert total.decode_weight == pytest.approx(DECODE / TRAIN, rel=1e-12)
    flops_only, _ = budget_and_constraints(costs=costs_file, train_flops=1e21, inference_flops=1e12)
    assert flops_only.prefill_weight == flops_only.decode_weight == 1.0
    assert flops_only.prices == Prices(*load_costs(costs_file).dollars.as_dict().values())


def _money(N, D, k, T, P, kv):
    """Dollars by hand (F = 0): prefill 2NP at the prefill price, decode 2NkT at the decode price."""
    prefill = (1 if kv else k) * 2 * N * P
    return 6 * N * D * TRAIN, prefill * PREFILL + 2 * N * k * T * DECODE


@pytest.mark.parametrize("kv", [True, False])
def test_designs_stay_within_money_budgets_and_match_brute_force(costs_file, kv):
    rng = np.random.default_rng(3)
    thetas = np.array([[d[c] for c in LOSS_COEFFICIENTS] for d in (_draw_one(rng) for _ in range(8))])
    cases = [
        (dict(train_budget="$2e4", serve_budget="$2e-4/query"), lambda tr, q: (tr <= 2e4, q <= 2e-4)),
        (dict(total_budget="$3e4", queries=1e7), lambda tr, q: (tr + 1e7 * q <= 3e4, True)),
    ]
    for kw, within in cases:
        budget, con = budget_and_constraints(costs=costs_file, tokens_per_sample=8, prompt_tokens=300,
                                             kv_cache=kv, min_params=1e6, **kw)
        out = optimize_array(thetas, [budget], con)[:, :, 0]
        ref = reference_optimum("loss", thetas, budget, con)
        value = objective_at("loss", thetas, out[ROW["N"]], out[ROW["D"]], out[ROW["k"]])
        assert np.all(value <= ref[:, 3] + 1e-6 * np.abs(ref[:, 3]))
        designs = [tuple(out[:3, i]) for i in range(out.shape[1])]
        designs += [design_at(budget, con, 3e8, 4.0).as_tuple(), chinchilla_baseline(budget, con).as_tuple()]
        for N, D, k in designs:
            if not math.isfinite(N):
                continue
            tr, q = _money(N, D, k, 8, 300, kv)
            a, b = within(tr * (1 - 1e-9), q * (1 - 1e-9))
            assert a and b, (kw, N, D, k, tr, q)
            costs = budget.design_costs(N, D, k)
            assert costs["money_per_query"] == pytest.approx(q, rel=1e-12)
            assert costs["train_money"] == pytest.approx(tr, rel=1e-12)


@pytest.mark.parametrize("args, option", [
    (["--train-budget", "$oops", "--serve-budget", "$1e-4/query"], "--train-budget"),
    (["--train-budget", "$1e5", "--serve-budget", "1e-4"], "--serve-budget"),
    (["--total-budget", "$1e5"], "--queries"),
])
def test_cli_money_errors_exit_2_on_one_line(costs_file, tmp_path, args, option):
    from conftest import run_cli
    from test_fuzz import assert_one_line

    code, _, err = run_cli("optimize", tmp_path / "missing.nc", "--costs", costs_file, *args)
    assert_one_line(code, err, option)
