"""The worked example notebook runs from top to bottom in a fresh kernel of this interpreter."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "worked_example.ipynb"


@pytest.mark.slow  # ~4-5 min: three fits, a report with its backtest page; the API it calls is tested in the fast suite
def test_worked_example_runs(tmp_path):
    kernels = tmp_path / "kernels" / "bayes-t2-test"
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "bayes-t2 test", "language": "python",
        # the kernel imports the same bayes_t2 as the tests (a worktree on PYTHONPATH, or the installed one)
        "env": {"PYTHONPATH": os.pathsep.join(p for p in [str(NOTEBOOK.parents[1]),
                                                            os.environ.get("PYTHONPATH", "")] if p),
                "MPLBACKEND": "module://matplotlib_inline.backend_inline"},
    }))
    km = KernelManager(kernel_name="bayes-t2-test",
                       kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")]))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, km=km, timeout=600, resources={"metadata": {"path": str(tmp_path)}}).execute()

    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    images = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code"
                 for o in c.get("outputs", []))
    assert images >= 5  # diagnostics, law, coefficients, optimum against budget, decision
