"""The user-facing docs stay true: docs/cli.md is the command line's own help, the README stays a short guide,
and the docs say how to use the tool, not how it was built."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bayes_t2.docs_cli import render

ROOT = Path(__file__).resolve().parents[1]
#: the guide and the reference pages (not the pages other parts of the docs own)
PAGES = ["README.md", "docs/api.md", "docs/cli.md", "docs/decisions.md", "docs/model.md", "docs/performance.md",
         "docs/validation.md"]


def test_cli_reference_is_generated_from_the_cli():
    assert (ROOT / "docs" / "cli.md").read_text() == render(), \
        "docs/cli.md is out of date: python -m bayes_t2.docs_cli > docs/cli.md"


def test_cli_reference_lists_every_command():
    from bayes_t2.cli import app

    text = render()
    for command in app.registered_commands:
        name = command.name or command.callback.__name__.replace("_", "-")
        assert f"## `bayes-t2 {name}`" in text


def test_readme_is_a_short_guide():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200
    text = "\n".join(lines)
    for needed in ("make demo", "make test", "bayes-t2 optimize", "import bayes_t2 as bt", "P(beats",
                   "tokens per sample", "docs/model.md", "docs/cli.md", "docs/api.md"):
        assert needed.lower() in text.lower(), needed


@pytest.mark.parametrize("page", PAGES)
def test_docs_carry_no_development_history(page):
    text = (ROOT / page).read_text()
    for pattern in (r"\bissue\s*#?\d", r"\bsession\s*\d", r"load average", r"\bload ~?\d", r"once failed",
                    r"\bPR\s*#?\d"):
        assert not re.search(pattern, text, flags=re.IGNORECASE), (page, pattern)


@pytest.mark.parametrize("page", PAGES)
def test_local_links_and_figures_exist(page):
    path = ROOT / page
    for target in re.findall(r"\]\(([^)#\s]+)", path.read_text()):
        if "://" in target or target.startswith("mailto:"):
            continue
        if target.split("/")[-1] in ("data.md", "decisions.md", "backtest.md") and \
                not (path.parent / target).exists():
            continue  # pages written with the parts they document
        assert (path.parent / target).exists(), (page, target)
