"""The design-space rules (bayes_t2/designs.py): written once, and the brute-force reference stays apart."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pytest

from bayes_t2 import designs

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            names.add(node.module or "")
            names.update(f"{node.module or ''}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_reference_does_not_use_the_rules_it_checks():
    """The brute force writes the design space on its own: no import of designs, optimum or decide."""
    used = _imports(ROOT / "bayes_t2" / "reference.py")
    for mod in ("designs", "optimum", "decide"):
        assert not any(mod in name.split(".") for name in used), (mod, used)


@pytest.mark.parametrize("mod", ["optimum", "decide", "budget"])
def test_solvers_take_the_rules_from_designs(mod):
    assert any("designs" in name for name in _imports(ROOT / "bayes_t2" / f"{mod}.py"))


def test_paper_terms_reduce_to_2NkT():
    """Without prompt, attention term or prices a query costs 2NkT, bit for bit as the T2 paper writes it."""
    rng = np.random.default_rng(1)
    for _ in range(200):
        T, N, k = rng.uniform(0.5, 50), 10 ** rng.uniform(6, 12), float(rng.integers(1, 10_000))
        t, n0, p, q0 = designs.query_terms(T, 0.0, 0.0, True, 1.0, 1.0)
        assert (t, n0, p, q0) == (T, 0.0, 0.0, 0.0)
        assert designs.query_cost(t, n0, p, q0, N, k) == 2.0 * N * k * T
        c = 1e13 / (2.0 * T)
        assert designs.split_k(c, n0, p, q0, N, math.inf) == max(1.0, math.floor(c / N))
        assert designs.split_segment_end(c, n0, p, q0, k) == c / k
