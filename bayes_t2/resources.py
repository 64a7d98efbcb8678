"""Where the bundled model specifications and default data live.

In a repo checkout they are the top-level `models/` and `data/` folders; in an installed wheel they are
copied to `bayes_t2/_bundled/`. Everything that needs them goes through these two functions.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _bundled(name: str) -> Path:
    for candidate in (_PACKAGE / "_bundled" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"bayes-t2 installation is missing its '{name}' folder")


def models_dir() -> Path:
    """Folder of the shipped model specifications (`*.toml`)."""
    return _bundled("models")


def data_dir() -> Path:
    """Folder of the embedded default data set."""
    return _bundled("data")
