"""3D structure of a deforming point set seen by known scaled-orthographic cameras.

Shapes: centred landmarks X (N, L, 2); cameras M_n = s_n [r1; r2] (N, 2, 3); 3D shapes in the
object frame (N, L, 3); a shape basis (k + 1, L, 3) (mean first) with coefficients (N, k).

With the cameras known only the depth of every point along its camera's viewing axis r3 is
unknown. The shapes are found by alternating projections between the set of shapes that project
exactly onto the landmarks (S_n = R_n^T [X_n / s_n; z_n] for any depth z_n) and the set of
sequences lying in a mean plus a k-dimensional linear shape space (truncated SVD of the (N, 3L)
stack), starting from the rigid least-squares shape. Landmarks marked as held out are not used:
their image position is taken from the low-rank shape as well, and how far that prediction lands
from the held-out landmark measures how well k shapes generalise (`held_out_error`), a choice of k
that needs no ground truth.
"""

from __future__ import annotations

import torch

from common.shapes import check_shape

NUM_ITERATIONS = 100


def complete_rotations(cameras: torch.Tensor) -> torch.Tensor:
    """Rotations (N, 3, 3), det +1, whose first two rows are the normalised camera rows (N, 2, 3)."""
    rows = torch.nn.functional.normalize(cameras, dim=-1)
    return torch.cat((rows, torch.linalg.cross(rows[:, 0], rows[:, 1])[:, None]), 1)


def rigid_shape(centred: torch.Tensor, cameras: torch.Tensor) -> torch.Tensor:
    """The one shape (L, 3) minimising sum_n |X_n - S M_n^T|^2 for cameras (N, 2, 3)."""
    gram = torch.einsum("nca,ncb->ab", cameras, cameras)
    return torch.linalg.solve(gram, torch.einsum("nca,nlc->al", cameras, centred)).T


def fit_shape_basis(
    centred: torch.Tensor,
    cameras: torch.Tensor,
    num_shapes: int,
    num_iterations: int = NUM_ITERATIONS,
    held_out: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean plus `num_shapes` basis shapes explaining the landmarks under the known cameras.

    Args:
        centred: (N, L, 2) landmarks centred per sample.
        cameras: (N, 2, 3) scaled-orthographic cameras s_n [r1; r2].
        num_shapes: k >= 0, the number of basis shapes besides the mean.
        num_iterations: alternating projections (module docstring).
        held_out: optional (N, L) bool, landmarks not to use.
    Returns:
        basis (k + 1, L, 3) with the mean shape first, coefficients (N, k); the shape of sample n
        is basis[0] + sum_j coefficients[n, j] basis[j + 1], in the object frame.
    """
    sizes = check_shape(centred, ("N", "L", 2), "centred")
    check_shape(cameras, (sizes["N"], 2, 3), "cameras")
    num_samples, num_landmarks, _ = centred.shape
    if not 0 <= num_shapes < min(num_samples, 3 * num_landmarks):
        raise ValueError(f"num_shapes={num_shapes} must be between 0 and min(N, 3L) - 1")
    scale = torch.linalg.vector_norm(cameras, dim=-1).mean(-1)
    rotations = complete_rotations(cameras)
    image = centred / scale[:, None, None]
    shapes = rigid_shape(centred, cameras).expand(num_samples, num_landmarks, 3)
    basis = torch.cat((shapes[0][None], shapes.new_zeros(num_shapes, num_landmarks, 3)))
    coefficients = shapes.new_zeros(num_samples, num_shapes)
    for _ in range(num_iterations):
        in_camera = shapes @ rotations.transpose(1, 2)
        if held_out is not None:
            in_camera = torch.cat((torch.where(held_out[..., None], in_camera[..., :2], image), in_camera[..., 2:]), -1)
        else:
            in_camera = torch.cat((image, in_camera[..., 2:]), -1)
        basis, coefficients = _truncated_basis(in_camera @ rotations, num_shapes)
        shapes = basis[0] + torch.einsum("nj,jla->nla", coefficients, basis[1:])
    return basis, coefficients


def _truncated_basis(shapes: torch.Tensor, num_shapes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and top `num_shapes` principal shapes of (N, L, 3): basis (k + 1, L, 3), coefficients (N, k)."""
    flat = shapes.reshape(shapes.shape[0], -1)
    mean = flat.mean(0)
    u, singular, vh = torch.linalg.svd(flat - mean, full_matrices=False)
    basis = torch.cat((mean[None], vh[:num_shapes])).reshape(num_shapes + 1, *shapes.shape[1:])
    return basis, u[:, :num_shapes] * singular[:num_shapes]


def held_out_error(
    centred: torch.Tensor,
    cameras: torch.Tensor,
    num_shapes: int,
    fraction: float = 0.1,
    seed: int = 0,
    num_iterations: int = NUM_ITERATIONS,
) -> float:
    """RMS image distance between held-out landmarks and their prediction by k basis shapes.

    A fixed pseudo-random `fraction` of the (sample, landmark) pairs (drawn with `seed`, so the
    result is deterministic) is left out of `fit_shape_basis` and predicted by it.
    """
    generator = torch.Generator().manual_seed(seed)
    held_out = (torch.rand(centred.shape[:2], generator=generator, dtype=torch.float64) < fraction).to(centred.device)
    basis, coefficients = fit_shape_basis(centred, cameras, num_shapes, num_iterations, held_out)
    shapes = basis[0] + torch.einsum("nj,jla->nla", coefficients, basis[1:])
    predicted = shapes @ cameras.transpose(1, 2)
    # the per-sample centring used all landmarks: held-out ones leak into it only as a translation
    return float((predicted - centred)[held_out].square().sum(-1).mean().sqrt())
