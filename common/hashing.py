"""Digests that name cached files: one for configurations, one for arrays."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np


def config_digest(config: Any, length: int | None = None) -> str:
    """SHA-256 hex digest of a JSON-able config (keys sorted, other objects by `str`), cut to `length` digits."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()
    return digest[:length] if length is not None else digest


def array_digest(*arrays: np.ndarray, length: int | None = None) -> str:
    """SHA-256 hex digest over the bytes of the C-contiguous `arrays`, in order, cut to `length` digits."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:length] if length is not None else digest.hexdigest()
