"""Shape and value checks used at the boundaries of public functions.

`check_shape(x, ("B", "L", 2), "landmarks")` checks a tensor (or array) against named and fixed
dimensions; a leading ``"..."`` admits any number of batch dimensions. Named sizes are returned so
callers can cross-check them (``sizes = check_shape(...); sizes["L"]``) and can be passed in through
``known`` to require equality across arguments.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch


def check_shape(x: Any, spec: Sequence[int | str], name: str, known: Mapping[str, int] | None = None) -> dict[str, int]:
    """Check `x.shape` against `spec`; raise ValueError naming `name` on mismatch.

    Args:
        x: a torch.Tensor or numpy array.
        spec: sizes (int), names (str) bound on first use, or a leading "..." for any batch dims.
        name: how the argument is called in the error message.
        known: names already bound elsewhere.
    Returns:
        The mapping from names to sizes, including those from `known`.
    """
    shape = tuple(x.shape)
    sizes = dict(known or {})
    dims = list(spec)
    if dims and dims[0] == "...":
        dims = dims[1:]
        if len(shape) < len(dims):
            raise ValueError(f"{name} must have shape (..., {_fmt(dims)}), got {shape}")
        shape = shape[len(shape) - len(dims) :]
    elif len(shape) != len(dims):
        raise ValueError(f"{name} must have shape ({_fmt(dims)}), got {tuple(x.shape)}")
    for dim, size in zip(dims, shape):
        expected = sizes.setdefault(dim, size) if isinstance(dim, str) else dim
        if size != expected:
            raise ValueError(
                f"{name} must have shape ({_fmt(spec)}) with {_bound(dim, expected)}, got {tuple(x.shape)}"
            )
    return sizes


def check_finite(x: Any, name: str) -> None:
    """Raise ValueError when `x` holds NaN or infinite values."""
    finite = torch.isfinite(x).all() if isinstance(x, torch.Tensor) else np.isfinite(np.asarray(x)).all()
    if not bool(finite):
        raise ValueError(f"{name} contains NaN or infinite values; remove or mask those samples")


def _fmt(dims: Sequence[int | str]) -> str:
    return ", ".join(str(d) for d in dims)


def _bound(dim: int | str, size: int) -> str:
    return f"{dim}={size}" if isinstance(dim, str) else f"size {size}"
