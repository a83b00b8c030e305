"""Atomic file writes: a crash mid-save never leaves a half-written checkpoint behind."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch


def atomic_write_file(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Call ``write(file)`` on a temp file in the same folder, fsync, then os.replace it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """torch.save, atomically (see :func:`atomic_write_file`)."""
    atomic_write_file(path, lambda f: torch.save(obj, f))


def atomic_write_dir(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """Fill a temp folder with ``write(tmp_dir)``, then swap it into place.

    The old folder (if any) is renamed aside first and removed after the swap, so at every instant
    either the old or the new complete folder exists at ``path`` (or, for a moment, ``path.old``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        write(tmp)
        old = path.with_name(path.name + ".old")
        if path.exists():
            if old.exists():
                shutil.rmtree(old)
            os.replace(path, old)
        os.replace(tmp, path)
        if old.exists():
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
