"""docs/cli.md, generated from the command line itself so it cannot drift from it.

    python -m bayes_t2.docs_cli > docs/cli.md

`tests/test_docs.py` fails when docs/cli.md differs from this output (regenerate it after changing a command).
"""

from __future__ import annotations

import sys
from typing import Any

import typer

HEADER = """# Command reference

Generated from the command line (`python -m bayes_t2.docs_cli > docs/cli.md`); `bayes-t2 COMMAND --help` prints
the same help. Exit codes: 0 success, 2 bad input or usage (one line on stderr naming file, row and column), 1 any
other failure. Outputs are written atomically and never replace an existing file without `--force`. The Python
API takes the same options as keywords (docs/api.md).
"""


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split()).replace("|", "\\|")


def _param_row(param: Any) -> str:
    if param.param_type_name == "argument":
        name = f"`{param.name.upper()}{'...' if param.nargs == -1 else ''}`"
        return f"| {name} | {'required' if param.required else ''} | {_one_line(param.help)} |"
    names = ", ".join(f"`{o}`" for o in [*param.opts, *param.secondary_opts])
    if param.required:
        default = "required"
    elif getattr(param, "is_flag", False) or param.default is None:
        default = ""
    else:
        default = f"`{param.default}`"
    return f"| {names} | {default} | {_one_line(param.help)} |"


def render() -> str:
    """The whole reference: per command, its usage, its help text and a table of its arguments and options."""
    from .cli import app

    group = typer.main.get_command(app)
    lines = [HEADER]
    for name, cmd in group.commands.items():
        if getattr(cmd, "hidden", False):
            continue
        params = [p for p in cmd.params if not getattr(p, "hidden", False)]
        args = " ".join(f"{p.name.upper()}{'...' if p.nargs == -1 else ''}" if p.required
                        else f"[{p.name.upper()}{'...' if p.nargs == -1 else ''}]"
                        for p in params if p.param_type_name == "argument")
        lines += [f"## `bayes-t2 {name}`", "", "```", f"bayes-t2 {name} {args} [OPTIONS]".replace("  ", " "), "```",
                  ""]
        for paragraph in (cmd.help or "").strip().split("\n\n"):
            if paragraph.strip():
                lines += [_one_line(paragraph).replace("\\|", "|"), ""]
        if params:
            lines += ["| argument / option | default | meaning |", "|---|---|---|"]
            lines += [_param_row(p) for p in params]
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
