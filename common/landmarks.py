"""Landmark errors, one definition for every report: NME, the normalised mean error.

For one face, NME = mean over its L points of the 2D distance between the predicted and the
reference landmarks, divided by the size of the reference face: for the 68-point iBUG layout the
inter-ocular distance between the outer eye corners (points 36 and 45) of the reference, for any
other layout the diagonal of the reference points' bounding box. The reference is the better-known
set: the generator's truth when a detector is scored, the detections when a model is scored
against them. A set of faces reports the mean of its faces' NME. Distances are in pixels:
normalised landmarks (x / width, y / height) are scaled by the image size first, so that the NME
does not depend on the image's aspect ratio.
"""

from __future__ import annotations

import torch

from common.shapes import check_shape

NUM_IBUG_LANDMARKS = 68
OUTER_EYE_CORNERS = (36, 45)


def landmark_distances(
    predicted: torch.Tensor, reference: torch.Tensor, image_size: tuple[int, int] | None = None
) -> torch.Tensor:
    """2D distances per landmark, (B, L, 2) x2 -> (B, L); in pixels when `image_size` (H, W) is given."""
    sizes = check_shape(reference, ("B", "L", 2), "reference landmarks")
    check_shape(predicted, ("B", "L", 2), "predicted landmarks", sizes)
    return ((predicted - reference) * _pixel_scale(reference, image_size)).norm(dim=-1)


def face_size(reference: torch.Tensor, image_size: tuple[int, int] | None = None) -> torch.Tensor:
    """(B,) NME's normaliser of reference landmarks (B, L, 2): outer-eye-corner distance for 68 points, else the box diagonal."""
    check_shape(reference, ("B", "L", 2), "reference landmarks")
    points = reference * _pixel_scale(reference, image_size)
    if points.shape[1] == NUM_IBUG_LANDMARKS:
        return (points[:, OUTER_EYE_CORNERS[0]] - points[:, OUTER_EYE_CORNERS[1]]).norm(dim=-1)
    return (points.amax(1) - points.amin(1)).norm(dim=-1)


def face_size_name(num_landmarks: int) -> str:
    """What `face_size` measures for a layout of `num_landmarks` points."""
    if num_landmarks == NUM_IBUG_LANDMARKS:
        return "inter-ocular distance (outer eye corners 36, 45)"
    return "landmark bounding-box diagonal"


def nme(predicted: torch.Tensor, reference: torch.Tensor, image_size: tuple[int, int] | None = None) -> torch.Tensor:
    """(B,) per-face NME of predicted against reference landmarks, both (B, L, 2); reports take the mean."""
    return landmark_distances(predicted, reference, image_size).mean(-1) / face_size(reference, image_size).clamp_min(
        1e-12
    )


def _pixel_scale(landmarks: torch.Tensor, image_size: tuple[int, int] | None) -> torch.Tensor:
    if image_size is None:
        return torch.ones(2, dtype=landmarks.dtype, device=landmarks.device)
    height, width = image_size
    return torch.tensor([width, height], dtype=landmarks.dtype, device=landmarks.device)
