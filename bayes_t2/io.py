"""Safe output: nothing half-written, no user file overwritten silently."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import InputError


def check_writable(path: str | Path, *, overwrite: bool) -> Path:
    """Fail early (before any long computation) if `path` exists and may not be replaced."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path} is a directory, expected a file path")
    if path.exists() and not overwrite:
        raise InputError(f"{path} already exists; pass --force to replace it")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:  # the folder is created on writing
        folder = folder.parent
    if not folder.is_dir():
        raise InputError(f"{path}: cannot write here, {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK):
        raise InputError(f"{path}: cannot write here, the folder {folder} is not writable")
    return path


def atomic_write(path: str | Path, write: Callable[[Path], None], *, overwrite: bool = False) -> Path:
    """Write through `write(tmp_path)` into a temporary file beside `path`, then rename it into place.

    A crash or an exception leaves the old file (or no file) behind, never a truncated one.
    """
    path = check_writable(path, overwrite=overwrite)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:  # a folder that cannot be created or written: the user's path, not a bug
        raise InputError(f"{path}: cannot write here ({err.strerror or type(err).__name__})") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the user's usual mode
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | Path, obj: Any, *, overwrite: bool = False) -> Path:
    """Atomically write `obj` as pretty JSON (NaN is written as null)."""
    text = json_text(obj)
    return atomic_write(path, lambda p: p.write_text(text), overwrite=overwrite)


def json_text(obj: Any) -> str:
    """`obj` as the pretty JSON the output files hold (numpy values as plain numbers, NaN as null)."""
    return json.dumps(_jsonable(obj), indent=2, allow_nan=False) + "\n"


def _jsonable(obj: Any) -> Any:
    import math

    import numpy as np

    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_scores_bundle(scores: Any, out_dir: str | Path, stem: str, summarize: Callable[[Any], dict],
                        plot: Callable[..., None], *, overwrite: bool = False) -> dict[str, Path]:
    """`stem`.nc (the scores), .json (`summarize(scores)`), .png and .pdf (`plot(scores, summary, png, pdf,
    overwrite=)`) in `out_dir`: every target checked before anything is written, each file written atomically,
    none over a file without `overwrite`. Calibration and SBC write their results this way."""
    out_dir = Path(out_dir)
    paths = {ext: out_dir / f"{stem}.{ext}" for ext in ("nc", "json", "png", "pdf")}
    for p in paths.values():
        check_writable(p, overwrite=overwrite)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(paths["nc"], lambda p: scores.to_netcdf(p, engine="h5netcdf"), overwrite=overwrite)
    summary = summarize(scores)
    write_json(paths["json"], summary, overwrite=overwrite)
    plot(scores, summary, paths["png"], paths["pdf"], overwrite=overwrite)
    return paths
