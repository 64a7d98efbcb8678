"""PDF output. For now one page: the headline recommendation per task against Chinchilla."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.backends.backend_pdf import PdfPages  # noqa: E402

from .io import atomic_write  # noqa: E402


def headline_figure(records: list[dict], title: str):
    """N*, tokens/param and k* per task with 90% intervals, Chinchilla's choice marked."""
    tasks = [r["task"] for r in records]
    y = range(len(tasks))
    fig, axes = plt.subplots(1, 3, figsize=(11.7, 4.8), sharey=True, layout="constrained")
    panels = [("N", "model size N* (parameters)"), ("tokens_per_param", "tokens per parameter D*/N*"),
              ("k", "samples per query k*")]
    for ax, (key, label) in zip(axes, panels):
        med = [r[key]["median"] for r in records]
        lo = [r[key]["median"] - r[key]["lower"] for r in records]
        hi = [r[key]["upper"] - r[key]["median"] for r in records]
        ax.errorbar(med, list(y), xerr=[lo, hi], fmt="o", color="C0", capsize=3, label="T2 optimum (90%)")
        chin = {"N": [r["chinchilla"]["N"] for r in records],
                "tokens_per_param": [r["chinchilla"]["D"] / r["chinchilla"]["N"] for r in records],
                "k": [r["chinchilla"]["k"] for r in records]}[key]
        ax.scatter(chin, list(y), marker="x", color="C3", zorder=3, label="Chinchilla (20 tokens/param)")
        ax.set_xlabel(label)
        ax.set_xscale("log")  # every panel spans decades
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.grid(alpha=0.3)
    axes[0].set_yticks(list(y), tasks)
    axes[0].legend(loc="best", fontsize=8)
    fig.suptitle(title)
    return fig, axes


def headline_pdf(path: str | Path, records: list[dict], title: str, *, overwrite: bool = False) -> Path:
    fig, _ = headline_figure(records, title)

    def write(p: Path) -> None:
        with PdfPages(p) as pdf:
            pdf.savefig(fig)

    try:
        return atomic_write(path, write, overwrite=overwrite)
    finally:
        plt.close(fig)
