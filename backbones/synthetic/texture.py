"""The head texture: the portrait with the background between the jaw line and the head outline
painted over by skin mirrored across the jaw line.

Why: the outline runs a little outside the jaw (dlib's detector needs that margin), and on a turned
head that band faces the camera; with the raw photo it would show smeared background.
All geometry is in face units (see `face_model`); `to_face` maps (N, 2) portrait pixels to face units.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def paint_jaw_band(
    photo: np.ndarray,
    jaw: np.ndarray,
    outline: np.ndarray,
    below: float,
    to_face: Callable[[np.ndarray], np.ndarray],
    to_pixels: Callable[[np.ndarray], np.ndarray],
    inside_polygon: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> np.ndarray:
    """Mirror skin across the jaw line into the band outside it, beside the neck.

    Args:
        photo: (H, W, 3) uint8 portrait.
        jaw: (17, 2) jaw landmarks in face units, ordered along the jaw.
        outline: (P, 2) head outline polygon in face units.
        below: only pixels lower than this face-unit height are painted.
        to_face, to_pixels: maps between portrait pixels and face units, (N, 2) -> (N, 2).
        inside_polygon: (N, 2) points, (P, 2) polygon -> (N,) bool.
    Returns:
        (H, W, 3) uint8, a painted copy.
    """
    height, width = photo.shape[:2]
    rows, cols = np.mgrid[0:height, 0:width]
    pixels = np.stack([cols.ravel(), rows.ravel()], -1).astype(np.float64)
    points = to_face(pixels)
    face = np.concatenate([jaw, [[jaw[-1, 0], below - 2.0], [jaw[0, 0], below - 2.0]]])
    beside_neck = (points[:, 0] < jaw[5, 0]) | (points[:, 0] > jaw[11, 0])
    band = inside_polygon(points, outline) & ~inside_polygon(points, face) & (points[:, 1] > below) & beside_neck
    targets = points[band]
    starts, stops = jaw[:-1], jaw[1:]
    direction = stops - starts
    t = ((targets[:, None] - starts[None]) * direction[None]).sum(-1) / (direction**2).sum(-1)[None]
    nearest = starts[None] + t.clip(0.0, 1.0)[..., None] * direction[None]  # (N, S, 2)
    distance = np.linalg.norm(targets[:, None] - nearest, axis=-1)
    closest = nearest[np.arange(len(targets)), distance.argmin(1)]
    mirrored = to_pixels(2.0 * closest - targets).round().astype(np.int64)
    mirrored[:, 0] = mirrored[:, 0].clip(0, width - 1)
    mirrored[:, 1] = mirrored[:, 1].clip(0, height - 1)
    painted = photo.copy().reshape(-1, 3)
    painted[np.flatnonzero(band)] = photo[mirrored[:, 1], mirrored[:, 0]]
    return painted.reshape(photo.shape)
