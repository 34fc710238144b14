"""The face contour (silhouette) landmarks and the per-landmark weights of a face fit.

A detector's contour points do not sit on fixed points of the head: dlib's jaw line (iBUG points
0-16) and MediaPipe's face oval follow the visible outline, which slides over the head as it
turns. A rank-one fit explains that sliding with basis shapes, and with it part of the turn. The
face path of `nrsfm.factorize` can therefore weight every contour point by `contour_weight` (1: as
any other point, 0: left out of the fit of cameras, rotations and alphas; its 3D position and
basis entries are then the least-squares ones for those).

- 68 landmarks (iBUG 300-W / dlib / FAN): the jaw line 0..16.
- 468 landmarks (MediaPipe face mesh): the face oval, the outer boundary loop of the face-mesh
  tessellation (MediaPipe's FACEMESH_FACE_OVAL).
"""

from __future__ import annotations

import torch

JAW_LINE = tuple(range(17))
FACE_OVAL = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
    152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)  # fmt: skip
CONTOUR_INDICES = {68: JAW_LINE, 468: FACE_OVAL}


def contour_weights(num_landmarks: int, contour_weight: float) -> torch.Tensor:
    """(L,) float64 weights: `contour_weight` on the contour points of the module docstring, 1 elsewhere.

    Raises:
        ValueError: contour_weight is outside [0, 1], or differs from 1 for a layout without a known contour.
    """
    if not 0.0 <= contour_weight <= 1.0:
        raise ValueError(f"contour_weight must lie in [0, 1], got {contour_weight}")
    weights = torch.ones(num_landmarks, dtype=torch.float64)
    if contour_weight == 1.0:
        return weights
    if num_landmarks not in CONTOUR_INDICES:
        raise ValueError(
            f"contour_weight={contour_weight:g} needs a layout with a known face contour (68 or 468 landmarks), "
            f"these have {num_landmarks}; use contour_weight=1"
        )
    weights[list(CONTOUR_INDICES[num_landmarks])] = contour_weight
    return weights
