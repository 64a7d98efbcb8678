"""A progress bar for long loops (rich, on stderr), or nothing: off unless the caller says the session is
interactive (the CLI passes `sys.stderr.isatty() and not CI`), so tests and logs never see it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def progress(description: str, total: float, enabled: bool) -> Iterator[Callable[..., None]]:
    """Yield advance(n=1, label=None): moves the bar by n of `total` and, given a label, names the step under way
    beside the description (a no-op when not enabled). The bar disappears when done."""
    if not enabled:
        yield lambda n=1, label=None: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)

        def advance(n: float = 1, label: str | None = None) -> None:
            bar.advance(task, n)
            if label is not None:
                bar.update(task, description=f"{description}: {label}")

        yield advance
