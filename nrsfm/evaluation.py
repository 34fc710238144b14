"""The 3D error that non-rigid structure-from-motion papers report (e3D, Akhter et al.).

Shapes: ground truth and estimate (N, L, 3), per-frame 3D points; rotations (N, 3, 3).

e3D of one sequence:
1. sigma = mean over the 3N coordinate rows of the ground truth of their standard deviation over
   the L points (population standard deviation); ground truth and estimate are divided by it.
2. Every frame of the ground truth and of the estimate is centred on its centroid.
3. One global 3x3 orthogonal matrix (a mirror allowed: it absorbs the depth reflection of every
   orthographic reconstruction) aligns all estimated frames to the ground truth in least squares.
4. e3D = mean over frames and points of the Euclidean distance between aligned estimate and truth.

Step 3 is the least-squares orthogonal alignment (orthogonal Procrustes) by default. The authors'
evaluation code instead fits the unconstrained least-squares 3x3 matrix and takes its nearest
orthogonal matrix (``alignment="projected"``); that is the alignment under which Akhter et al.'s
stored reconstructions score their published numbers. It is never better than Procrustes.

Rotations are compared the same way, up to one global rotation (`rotation_errors_deg`): the angle
of R_n G R_true_n^T per frame, with G the rotation that best aligns all frames; optionally also after
the depth reflection D R D (D = diag(1, 1, -1)) that an orthographic reconstruction cannot tell apart.

Sequences compared in the camera frame (the ``rot_struct`` flag of the benchmark files) first put
the estimate in the camera frame with the recovered rotation of each frame (`camera_frame_shapes`).
"""

from __future__ import annotations

import torch

from common.shapes import check_finite, check_shape
from nrsfm.camera import nearest_rotation

ALIGNMENTS = ("procrustes", "projected")


def e3d(estimate: torch.Tensor, truth: torch.Tensor, alignment: str = "procrustes") -> float:
    """e3D of an estimated sequence of 3D shapes against the ground truth (module docstring).

    Args:
        estimate: (N, L, 3) estimated shapes, any scale of the truth's order, any global frame.
        truth: (N, L, 3) ground-truth shapes.
        alignment: "procrustes" (the least-squares orthogonal matrix) or "projected" (the nearest
            orthogonal matrix to the least-squares 3x3 matrix, as the published evaluation code).
    Returns:
        The mean aligned point distance in units of the truth's spread sigma.
    """
    if alignment not in ALIGNMENTS:
        raise ValueError(f"alignment={alignment!r} is unknown; use one of {', '.join(ALIGNMENTS)}")
    sizes = check_shape(truth, ("N", "L", 3), "truth")
    check_shape(estimate, (sizes["N"], sizes["L"], 3), "estimate")
    estimate, truth = torch.as_tensor(estimate, dtype=torch.float64), torch.as_tensor(truth, dtype=torch.float64)
    check_finite(estimate, "estimate")
    check_finite(truth, "truth")
    sigma = truth.std(dim=1, correction=0).mean()
    if not sigma > 0:
        raise ValueError("the ground truth has no spread (all points equal); e3D is undefined")
    truth = (truth - truth.mean(1, keepdim=True)) / sigma
    estimate = (estimate - estimate.mean(1, keepdim=True)) / sigma
    if alignment == "procrustes":
        matrix = best_orthogonal_alignment(estimate, truth)
    else:
        matrix = projected_least_squares_alignment(estimate, truth)
    return float(torch.linalg.vector_norm(estimate @ matrix.T - truth, dim=-1).mean())


def best_orthogonal_alignment(estimate: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """The orthogonal Y (3, 3), det +-1, minimising sum_n |Y X_n - T_n|^2 over all frames.

    Args:
        estimate: (N, L, 3) shapes X_n (points as rows, so Y acts as points @ Y^T).
        truth: (N, L, 3) shapes T_n.
    """
    correlation = torch.einsum("nla,nlb->ab", truth, estimate)
    u, _, vh = torch.linalg.svd(correlation)
    return u @ vh


def projected_least_squares_alignment(estimate: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """The orthogonal matrix (3, 3) nearest to the least-squares A minimising sum_n |A X_n - T_n|^2.

    Args:
        estimate: (N, L, 3) shapes X_n (points as rows).
        truth: (N, L, 3) shapes T_n.
    """
    least_squares = torch.linalg.lstsq(estimate.reshape(-1, 3), truth.reshape(-1, 3)).solution.T
    u, _, vh = torch.linalg.svd(least_squares)
    return u @ vh


def camera_frame_shapes(shapes: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """Shapes in the camera frame: R_n S_n, as (N, L, 3) from shapes (N, L, 3) and rotations (N, 3, 3)."""
    sizes = check_shape(shapes, ("N", "L", 3), "shapes")
    check_shape(rotations, (sizes["N"], 3, 3), "rotations")
    return shapes @ rotations.transpose(1, 2)


def rotation_errors_deg(rotation: torch.Tensor, true_rotation: torch.Tensor) -> torch.Tensor:
    """Angles (N,) in degrees between rotation (N, 3, 3) and true_rotation (N, 3, 3) after one global
    alignment G (the rotation nearest to sum_n R_n^T T_n, so that R_n G ~ T_n)."""
    alignment = nearest_rotation((rotation.transpose(1, 2) @ true_rotation).sum(0))
    difference = rotation @ alignment @ true_rotation.transpose(1, 2)
    cosine = ((difference.diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2).clamp(-1, 1)
    return torch.rad2deg(torch.acos(cosine))


def median_rotation_error_deg(rotation: torch.Tensor, true_rotation: torch.Tensor, allow_mirror: bool = False) -> float:
    """The median of `rotation_errors_deg`; with `allow_mirror` the smaller of that and the median for
    the depth-reflected rotations D R D."""
    candidates = [rotation]
    if allow_mirror:
        mirror = torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=rotation.dtype, device=rotation.device))
        candidates.append(mirror @ rotation @ mirror)
    return min(float(rotation_errors_deg(candidate, true_rotation).median()) for candidate in candidates)
