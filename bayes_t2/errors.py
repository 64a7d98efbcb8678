"""Errors a user can fix. The CLI prints their message on one line and exits 2."""

from __future__ import annotations


class InputError(ValueError):
    """Bad input: a file, row, column or option the user has to fix.

    The message must be a single line that names where the problem is
    (file, row number, column) and what it is, so it reads well without a traceback.
    """

    def __init__(self, message: str, *, source: str | None = None, row: int | None = None,
                 column: str | None = None) -> None:
        where = [p for p in (source, f"row {row}" if row is not None else None,
                             f"column '{column}'" if column else None) if p]
        text = (": ".join([", ".join(where), message]) if where else message)
        super().__init__(" ".join(text.split()))
        self.source, self.row, self.column = source, row, column
