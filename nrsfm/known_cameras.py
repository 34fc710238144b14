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
that needs no ground truth. When the samples are the frames of one sequence in order, the basis
coefficients can be smoothed in time after every projection (`temporal_width`, a Gaussian filter
over neighbouring frames): the depths of a frame are then also constrained by its neighbours'.
"""

from __future__ import annotations

import math

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
    temporal_width: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean plus `num_shapes` basis shapes explaining the landmarks under the known cameras.

    Args:
        centred: (N, L, 2) landmarks centred per sample.
        cameras: (N, 2, 3) scaled-orthographic cameras s_n [r1; r2].
        num_shapes: k >= 0, the number of basis shapes besides the mean.
        num_iterations: alternating projections (module docstring).
        held_out: optional (N, L) bool, landmarks not to use.
        temporal_width: 0 for independent samples; for the frames of one sequence in order, the
            width (standard deviation, in frames) of the Gaussian filter applied to the coefficients.
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
        coefficients = smooth_in_time(coefficients, temporal_width)
        shapes = basis[0] + torch.einsum("nj,jla->nla", coefficients, basis[1:])
    return basis, coefficients


def smooth_in_time(values: torch.Tensor, width: float) -> torch.Tensor:
    """Gaussian filter of standard deviation `width` (frames) along the first axis of (N, ...) values.

    Normalised by the weights inside the sequence (frames near either end average over fewer
    neighbours); width 0 returns the input.
    """
    if width <= 0:
        return values
    radius = max(1, math.ceil(3 * width))
    offsets = torch.arange(-radius, radius + 1, dtype=values.dtype, device=values.device)
    kernel = torch.exp(-0.5 * (offsets / width).square()).view(1, 1, -1)
    columns = values.reshape(values.shape[0], -1).T[:, None, :]  # (C, 1, N)
    summed = torch.nn.functional.conv1d(columns, kernel, padding=radius)
    weights = torch.nn.functional.conv1d(torch.ones_like(columns[:1]), kernel, padding=radius)
    return (summed / weights)[:, 0].T.reshape(values.shape)


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
    temporal_width: float = 0.0,
) -> float:
    """RMS image distance between held-out landmarks and their prediction by k basis shapes.

    A fixed pseudo-random `fraction` of the (sample, landmark) pairs (drawn with `seed`, so the
    result is deterministic) is left out of `fit_shape_basis` (with `temporal_width`) and predicted by it.
    """
    generator = torch.Generator().manual_seed(seed)
    held_out = (torch.rand(centred.shape[:2], generator=generator, dtype=torch.float64) < fraction).to(centred.device)
    basis, coefficients = fit_shape_basis(centred, cameras, num_shapes, num_iterations, held_out, temporal_width)
    shapes = basis[0] + torch.einsum("nj,jla->nla", coefficients, basis[1:])
    predicted = shapes @ cameras.transpose(1, 2)
    # the per-sample centring used all landmarks: held-out ones leak into it only as a translation
    return float((predicted - centred)[held_out].square().sum(-1).mean().sqrt())


def rank_one_rows(shape_basis: torch.Tensor) -> torch.Tensor:
    """The rows b_k (K, P) of K rank-one shapes b_k d_k^T that span the same space as K full shapes (K, P, 3).

    Shapes of the rank-one model move in a space spanned by K rank-one matrices b_k d_k^T; a
    principal basis of that space (as `fit_shape_basis` gives) mixes them. With the full shapes
    W_j = sum_k t_jk b_k d_k^T, contracting their 3D axis with two fixed vectors u and v gives
    W_u = B diag(u . d_k) T^T and W_v (P, K); the eigenvectors of W_v^+ W_u are the columns of
    T^-T, and W_u T^-T = B diag(u . d_k) (simultaneous diagonalisation, Jennrich's algorithm; the
    d_k must be pairwise non-parallel). Exact for exact shapes; with noise the real parts are kept.
    Rows are unit, in decreasing order of the share of the shapes' energy they carry.
    """
    check_shape(shape_basis, ("K", "P", 3), "shape_basis")
    first = torch.tensor([1.0, 0.37, -0.61], dtype=shape_basis.dtype, device=shape_basis.device)
    second = torch.tensor([-0.29, 1.0, 0.53], dtype=shape_basis.dtype, device=shape_basis.device)
    contracted_first = torch.einsum("jpa,a->pj", shape_basis, first)
    contracted_second = torch.einsum("jpa,a->pj", shape_basis, second)
    _, vectors = torch.linalg.eig(torch.linalg.pinv(contracted_second) @ contracted_first)
    rows = torch.nn.functional.normalize((contracted_first @ vectors.real).T, dim=-1)
    energy = torch.einsum("kp,jpa->kja", rows, shape_basis).square().sum((1, 2))
    return rows[energy.argsort(descending=True)].contiguous()
