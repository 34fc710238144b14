"""Edit requests: which entries of q an edit changes, and to what.

q is (B, 8 + K) = (k11, k12, k22, pitch, yaw, roll, alpha.0 .. alpha.{K-1}, tx, ty) as in
`nrsfm.model.AttributeLayout`; angles in q are radians.

Names an edit may use:
- one entry: ``k11``, ``k12``, ``k22``, ``pitch``, ``yaw``, ``roll``, ``alpha.<k>``, ``tx``, ``ty``,
  or ``q.<i>`` for entry i of q by index;
- ``scale``: k11 and k22 together (same value, or same delta);
- a group name (below): every entry of the group, e.g. ``{"rotation": 0, "expression": 0}`` is
  frontal with the mean expression.
Units: ``pitch``, ``yaw`` and ``roll`` (also inside groups) are given in degrees; every other entry in
the units of q.

Absolute or relative (the sign of a value never changes its meaning, because Hydra turns
``yaw=+20`` into the int 20):
- ``{"yaw": 20}`` (CLI ``yaw=20``) is absolute: the edited face has yaw 20 degrees.
- ``{"delta": {"yaw": 20}}`` or ``{"delta.yaw": 20}`` (CLI ``delta.yaw=20``) is relative: the face
  turns by 20 degrees from its own q0. Nested mappings are flattened with dots, so Hydra's
  ``alpha.3=1.5`` (a mapping ``{"alpha": {"3": 1.5}}``) means ``alpha.3``.

Groups name several entries at once (for transfer parts and for `free`): ``camera``
(k11, k12, k22), ``rotation`` (pitch, yaw, roll), ``expression`` or ``alpha`` (all alpha),
``translation`` (tx, ty), ``pose`` (rotation and translation), ``all``.

Expression presets (`editing.presets`, models of the 68 iBUG landmarks): ``smile``, ``mouth_open`` and
``brows_raised`` name directions in alpha space derived from the model's geometry, valued in standard
deviations along the direction over reference faces (0: their mean; see `editing.presets`). ``{"smile": 1}`` puts each face's
coordinate along the smile direction at 1, ``{"delta.smile": 0.5}`` raises it by 0.5. They are applied
after every other change, by the smallest change of the alphas that meets all of them, so
``{"expression": 0, "smile": 2}`` is the mean expression moved to smile 2. They set every alpha.

Every entry an edit does not set is held at q0, except those named in `free`, which the editor may
change as it likes (they are not constrained).

Range: a target outside the training distribution of the NRSfM model, mean +- `num_std` standard
deviations of q (`model.q_mean`, `model.q_std`; 3 by default), is clamped into that range with a
warning; with ``strict=True`` it raises ValueError instead.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from common.shapes import check_finite, check_shape
from editing.presets import (
    PRESET_NAMES,
    ExpressionDirection,
    derive_expression_directions,
    expression_coordinates,
    move_along_directions,
)
from nrsfm.model import AttributeLayout, NRSfMModel

RELATIVE_PREFIX = "delta."


@dataclass
class EditTarget:
    """What an editor must reach.

    Attributes:
        q: (B, 8 + K) target attribute vectors; equal to q0 outside `mask`.
        mask: (8 + K,) bool, the entries the edit sets.
        constrained: (8 + K,) bool, the entries the editor pulls to `q` (set or held at q0); entries
            outside it are free.
    """

    q: torch.Tensor
    mask: torch.Tensor
    constrained: torch.Tensor


def group_indices(layout: AttributeLayout) -> dict[str, list[int]]:
    """Named groups of entries of q: camera, rotation, expression, alpha, translation, pose, all."""

    def span(part: slice) -> list[int]:
        return list(range(part.start, part.stop))

    rotation, translation = span(layout.rotation), span(layout.translation)
    return {
        "camera": span(layout.camera),
        "rotation": rotation,
        "expression": span(layout.alpha),
        "alpha": span(layout.alpha),
        "translation": translation,
        "pose": rotation + translation,
        "all": list(range(layout.dim)),
    }


def entry_indices(layout: AttributeLayout) -> dict[str, list[int]]:
    """Names an edit may set, each with the entries of q it sets (``scale`` sets k11 and k22)."""
    entries = {name: [index] for index, name in enumerate(layout.names())}
    entries.update({f"q.{index}": [index] for index in range(layout.dim)})
    entries["scale"] = [0, 2]
    return entries


def attribute_indices(names: Iterable[str], layout: AttributeLayout) -> list[int]:
    """Sorted entries of q named by `names` (entry names or group names).

    Raises:
        ValueError: an unknown name; the message lists the valid ones.
    """
    known = {**entry_indices(layout), **group_indices(layout)}
    indices: set[int] = set()
    for name in names:
        if name not in known:
            raise ValueError(f"unknown attribute {name!r}; valid names: {_valid_names(layout)}")
        indices.update(known[name])
    return sorted(indices)


def flatten_changes(changes: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Nested mapping -> flat ``{"delta.yaw": 20.0, "alpha.3": 1.5}``; None values are dropped."""
    flat: dict[str, float] = {}
    for key, value in changes.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_changes(value, f"{name}."))
        elif value is not None:
            try:
                flat[name] = float(value)
            except (TypeError, ValueError) as error:
                raise ValueError(f"edit {name}={value!r} is not a number; give a number such as {name}=10") from error
    return flat


def edit_target(
    q0: torch.Tensor,
    changes: Mapping[str, Any],
    model: NRSfMModel,
    *,
    free: Iterable[str] = (),
    strict: bool = False,
    num_std: float = 3.0,
    directions: Mapping[str, ExpressionDirection] | None = None,
) -> EditTarget:
    """Target q for an edit request (see the module docstring for names, units and modes).

    Args:
        q0: (B, 8 + K) attributes of the faces to edit.
        changes: e.g. ``{"yaw": 0, "delta": {"pitch": -10}, "alpha.3": 1.5}``.
        model: the NRSfM model (layout and q statistics).
        free: names or groups the editor may change without constraint.
        strict: refuse out-of-range targets instead of clamping them.
        num_std: half-width of the allowed range in standard deviations of q.
        directions: the expression directions for preset names; default derived from `model`
            (`editing.presets.derive_expression_directions`).
    Returns:
        EditTarget with q (B, 8 + K) and masks (8 + K,).
    """
    layout = model.layout
    check_shape(q0, ("B", layout.dim), "q0")
    check_finite(q0, "q0")
    entries = {**entry_indices(layout), **group_indices(layout)}
    in_degrees = _mask(list(range(layout.rotation.start, layout.rotation.stop)), layout)
    target = q0.detach().clone()
    mask = torch.zeros(layout.dim, dtype=torch.bool)
    along: dict[str, tuple[bool, float]] = {}
    for name, value in flatten_changes(changes).items():
        relative = name.startswith(RELATIVE_PREFIX)
        base = name[len(RELATIVE_PREFIX) :] if relative else name
        if base in PRESET_NAMES:
            if not math.isfinite(value):
                raise ValueError(f"edit {name}={value} is not finite; give a finite number")
            if base in along:
                raise ValueError(f"edit {name} names the {base} direction a second time; give it once")
            along[base] = (relative, value)
            continue
        if base not in entries:
            raise ValueError(
                f"unknown attribute {base!r} in edit {name}; valid names: {_valid_names(layout)} "
                f"(prefix {RELATIVE_PREFIX!r} for a relative edit)"
            )
        if not math.isfinite(value):
            raise ValueError(f"edit {name}={value} is not finite; give a finite number")
        indices = entries[base]
        if mask[indices].any():
            raise ValueError(f"edit {name} sets an entry of q that another edit already sets; give each attribute once")
        mask[indices] = True
        amount = torch.where(in_degrees[indices], math.radians(value), value).to(q0)
        target[:, indices] = (q0[:, indices] + amount) if relative else amount.expand(q0.shape[0], -1)
    if along:
        target = _move_along(q0, target, along, model, directions)
        mask[layout.alpha] = True
    free_mask = _mask(attribute_indices(free, layout), layout)
    if (free_mask & mask).any():
        raise ValueError("an attribute is both set by the edit and listed in free; remove it from free")
    target = clamp_to_range(target, mask, model, strict=strict, num_std=num_std)
    return EditTarget(target, mask, ~free_mask)


def _move_along(
    q0: torch.Tensor,
    target: torch.Tensor,
    along: Mapping[str, tuple[bool, float]],
    model: NRSfMModel,
    directions: Mapping[str, ExpressionDirection] | None,
) -> torch.Tensor:
    """`target` (B, 8 + K) with its alphas moved (least change) to the requested coordinates along the
    named expression directions; relative requests count from q0's coordinates."""
    directions = derive_expression_directions(model) if directions is None else directions
    chosen = {name: directions[name] for name in along}
    coordinates0 = expression_coordinates(q0.double(), model, chosen)
    goal = torch.stack(
        [
            coordinates0[:, i] + value if relative else torch.full_like(coordinates0[:, i], value)
            for i, (relative, value) in enumerate(along.values())
        ],
        -1,
    )
    return move_along_directions(target, goal, model, chosen)


def transfer_target(
    q_source: torch.Tensor,
    q_destination: torch.Tensor,
    parts: Iterable[str],
    model: NRSfMModel,
    *,
    free: Iterable[str] = (),
    strict: bool = False,
    num_std: float = 3.0,
) -> EditTarget:
    """Target for attribute transfer: `q_destination` with the entries named by `parts` taken from `q_source`.

    Args:
        q_source: (B, 8 + K) or (1, 8 + K) attributes of the face(s) that give the parts.
        q_destination: (B, 8 + K) attributes of the faces to edit.
        parts: names or groups, e.g. ``["rotation", "expression"]``.
    Returns:
        EditTarget with q (B, 8 + K) and masks (8 + K,).
    """
    layout = model.layout
    sizes = check_shape(q_destination, ("B", layout.dim), "q_destination")
    check_shape(q_source, ("S", layout.dim), "q_source")
    if q_source.shape[0] not in (1, sizes["B"]):
        raise ValueError(f"q_source has {q_source.shape[0]} rows; give 1 or {sizes['B']} (one per destination face)")
    check_finite(q_source, "q_source")
    check_finite(q_destination, "q_destination")
    mask = _mask(attribute_indices(parts, layout), layout)
    if not mask.any():
        raise ValueError(f"transfer names no parts; choose some of {', '.join(group_indices(layout))}")
    free_mask = _mask(attribute_indices(free, layout), layout)
    if (free_mask & mask).any():
        raise ValueError("an attribute is both transferred and listed in free; remove it from free")
    target = torch.where(mask, q_source.detach().expand_as(q_destination), q_destination.detach())
    target = clamp_to_range(target, mask, model, strict=strict, num_std=num_std)
    return EditTarget(target, mask, ~free_mask)


def attribute_range(model: NRSfMModel, num_std: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(low, high), each (8 + K,): mean -+ `num_std` standard deviations of q over the training samples."""
    if not num_std > 0:
        raise ValueError(f"num_std must be positive, got {num_std}")
    return model.q_mean - num_std * model.q_std, model.q_mean + num_std * model.q_std


def clamp_to_range(
    q: torch.Tensor, mask: torch.Tensor, model: NRSfMModel, *, strict: bool = False, num_std: float = 3.0
) -> torch.Tensor:
    """Clamp the masked entries of q (B, 8 + K) into `attribute_range`; warn, or raise when `strict`."""
    low, high = (bound.to(q.dtype) for bound in attribute_range(model, num_std))
    clamped = torch.where(mask, q.clamp(low, high), q)
    outside = (clamped != q).any(0)
    if outside.any():
        names = [model.layout.names()[i] for i in outside.nonzero().flatten().tolist()]
        message = f"edit target for {', '.join(names)} lies outside the training range (mean +- {num_std:g} std of q)"
        if strict:
            raise ValueError(f"{message}; choose a smaller edit or pass strict=false to clamp")
        warnings.warn(f"{message}; clamped to the range", stacklevel=3)
    return clamped


def _mask(indices: list[int], layout: AttributeLayout) -> torch.Tensor:
    mask = torch.zeros(layout.dim, dtype=torch.bool)
    mask[indices] = True
    return mask


def _valid_names(layout: AttributeLayout) -> str:
    names = [*layout.names(), "scale", f"q.0..q.{layout.dim - 1}", *group_indices(layout), *PRESET_NAMES]
    return ", ".join(names)
