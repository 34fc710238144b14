"""Atomic writes: every file is written under a temporary name in its folder, then renamed into place.

A reader therefore sees either the old file or the complete new one, never a half-written file,
and a run killed mid-write leaves at most a hidden ``.<name>.tmp`` behind. A failed write (disk
full, permissions) removes the temporary file and raises a `UserError` naming the folder.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from common.errors import UserError


def temporary_path(path: Path) -> Path:
    """The name a file is written under before it is renamed to `path` (same folder, hidden, same suffix)."""
    return path.with_name(f".{path.stem}.tmp{path.suffix}")


def describe_os_error(error: OSError) -> str:
    """A short reason for a failed write ("No space left on device"), also for h5py's long messages."""
    if error.errno:
        return os.strerror(error.errno)
    match = re.search(r"error message = '([^']+)'", str(error))
    return match.group(1) if match else " ".join(str(error).split())[:200]


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield the temporary path to write; on success rename it over `path`, on any error remove it.

    The folder of `path` is created. ``with atomic_path(out) as tmp: image.save(tmp)``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        yield tmp
        tmp.replace(path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise UserError(
            f"could not write {path} ({describe_os_error(error)}); free disk space in {path.parent} "
            "or write somewhere else"
        ) from error
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_npz_atomic(path: str | Path, compressed: bool = True, **arrays: np.ndarray) -> Path:
    """Named arrays as ``.npz`` (compressed unless told otherwise), written atomically and synced to disk."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        (np.savez_compressed if compressed else np.savez)(handle, **arrays)
        handle.flush()
        os.fsync(handle.fileno())
    return Path(path)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """`text` into `path`, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def save_png_atomic(figure, path: str | Path, dpi: int = 80) -> Path:
    """A matplotlib `figure` as PNG, atomically."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=dpi)
    return Path(path)
