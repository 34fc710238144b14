"""Which landmark decides the depth (reflection) ambiguity of an orthographic reconstruction.

An affine camera cannot tell a face from its mirror image in depth (the Necker reversal: shape
z -> -z with rotation R -> diag(1,1,-1) R diag(1,1,-1) projects identically). The factorizer picks
the solution in which the nose tip of the mean shape lies in front of the face, i.e. at smaller z
(toward the camera; z points away from it) than the centroid of all landmarks.

- 68 landmarks (iBUG 300-W / dlib): nose tip is index 30.
- 468 landmarks (MediaPipe face mesh): nose tip is index 1.
- Any other count: the landmark closest to the centroid of the mean shape in the image plane
  (x, y), which on a face is on the nose. Pass `nose_index` explicitly to override.

Point sets that are not faces use `generic_mirror_rule` instead (``mirror_rule="generic"``).
"""

from __future__ import annotations

import torch

from common.shapes import check_shape

NOSE_TIP_INDEX = {68: 30, 468: 1}
MIRROR_RULES = ("nose", "generic")


def nose_tip_index(mean_shape: torch.Tensor, nose_index: int | None = None) -> int:
    """The landmark that must point toward the camera.

    Args:
        mean_shape: (L, 3) mean shape, centred or not.
        nose_index: explicit index, or None for the rule in the module docstring.
    Returns:
        An index in [0, L).
    """
    sizes = check_shape(mean_shape, ("L", 3), "mean_shape")
    num_landmarks = sizes["L"]
    if nose_index is not None:
        if not 0 <= nose_index < num_landmarks:
            raise ValueError(
                f"nose_index={nose_index} is outside 0..{num_landmarks - 1}; pick a landmark on the nose tip"
            )
        return int(nose_index)
    if num_landmarks in NOSE_TIP_INDEX:
        return NOSE_TIP_INDEX[num_landmarks]
    offsets = mean_shape[:, :2] - mean_shape[:, :2].mean(0)
    return int(torch.linalg.vector_norm(offsets, dim=-1).argmin())


def faces_camera(mean_shape: torch.Tensor, nose_index: int | None = None) -> bool:
    """True when the nose tip of `mean_shape` (L, 3) lies toward the camera (z below the centroid's)."""
    index = nose_tip_index(mean_shape, nose_index)
    return bool(mean_shape[index, 2] < mean_shape[:, 2].mean())


def generic_mirror_rule(mean_shape: torch.Tensor) -> bool:
    """True when the depths z of `mean_shape` (L, 3) have a positive third central moment.

    A rule for any point set: the reflection z -> -z flips the sign of that moment, so exactly one
    of the two solutions passes (unless the depths are symmetric, when either is as good).
    """
    check_shape(mean_shape, ("L", 3), "mean_shape")
    depth = mean_shape[:, 2] - mean_shape[:, 2].mean()
    return bool(depth.pow(3).sum() > 0)
