"""The sampling stage's dataset: latents, detected landmarks and metadata in one HDF5 file.

Layout (N samples, L landmarks; see docs/ARCHITECTURE.md):
- ``seeds`` int64 (N,), ``z`` float32 (N, z_dim), ``w`` float32 (N, w_dim), ``ws`` (N, num_ws, w_dim) optional;
- ``landmarks`` float32 (N, L, 2) normalised by image width/height, zeros where no face was found;
- ``found`` bool (N,), ``score`` float32 (N,);
- group ``truth/`` (optional; generators that know their ground truth);
- attribute ``metadata``: JSON (generator, detector, num_landmarks, image size, versions, config).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from nrsfm.errors import UserError

REQUIRED_KEYS = ("seeds", "z", "w", "landmarks", "found", "score")


@dataclass
class Samples:
    """Arrays of a dataset held in memory; shapes as in the module docstring."""

    seeds: np.ndarray
    z: np.ndarray
    w: np.ndarray
    landmarks: np.ndarray
    found: np.ndarray
    score: np.ndarray
    metadata: dict[str, Any]
    ws: np.ndarray | None = None
    truth: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.seeds)


def read_samples(path: str | Path) -> Samples:
    """Load a whole dataset; raise UserError naming the fix when it is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"dataset {path} not found; create it with `python -m nrsfm.sample`")
    try:
        with h5py.File(path, "r") as f:
            missing = [key for key in REQUIRED_KEYS if key not in f]
            if missing:
                raise UserError(f"dataset {path} lacks {', '.join(missing)}; re-create it with `python -m nrsfm.sample`")
            arrays = {key: f[key][()] for key in REQUIRED_KEYS}
            ws = f["ws"][()] if "ws" in f else None
            truth = {key: f["truth"][key][()] for key in f["truth"]} if "truth" in f else {}
            metadata = json.loads(f.attrs["metadata"])
    except (OSError, KeyError, json.JSONDecodeError) as error:
        raise UserError(f"{path} is not a readable sampling dataset ({error}); re-create it with `python -m nrsfm.sample`") from error
    arrays["found"] = arrays["found"].astype(bool)
    return Samples(**arrays, metadata=metadata, ws=ws, truth=truth)
