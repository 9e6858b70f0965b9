"""Atomic file writes: a checkpoint is either the old complete file or the new complete file, never half of one."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol


class Saveable(Protocol):
    """Anything with SB3's ``save(path)``."""

    def save(self, path: str | os.PathLike) -> None: ...


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary file next to ``path``, then rename it over ``path`` in one step. An OSError
    (a full disk, no permission) names ``path``, keeps its errno and leaves the old file as it was."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, path)
    except OSError as error:
        message = f"{error.strerror or error} while writing {path}"
        raise (OSError(error.errno, message) if error.errno is not None else OSError(message)) from error
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_save(model: Saveable, path: str | os.PathLike) -> Path:
    """Save an SB3-style model to ``path`` (``.zip`` added if missing) atomically."""
    path = Path(path)
    if path.suffix != ".zip":
        path = path.with_name(path.name + ".zip")
    return atomic_write(path, model.save)
