"""Affine cameras M = K [I2 | 0] R and their split into intrinsics K and a rotation R.

Shapes: cameras M (..., 2, 3); intrinsics K (..., 2, 2) upper triangular [[k11, k12], [0, k22]];
rotations R (..., 3, 3).

Sign conventions (the split of M is unique once they are fixed):
- k11 > 0 and k22 > 0: the flipped QR (Gram-Schmidt from the bottom row up) chooses the signs of
  the first two rows of R so that the diagonal of K is positive.
- det R = +1: the third row of R is the cross product of the first two, so R is a rotation, never
  a reflection. The third row is invisible in the projection; it only completes R.
A rank-deficient M (a row of zeros or parallel rows) has no such split and raises ValueError.
"""

from __future__ import annotations

import torch

from common.shapes import check_shape


def camera_to_intrinsics_rotation(camera: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split M = K [I2 | 0] R by a flipped QR decomposition.

    With rows m1, m2 of M: k22 = |m2|, r2 = m2 / k22, k12 = m1 . r2, k11 = |m1 - k12 r2|,
    r1 = (m1 - k12 r2) / k11 and r3 = r1 x r2. This is the QR decomposition of M^T with its rows
    and columns flipped, which makes K upper (not lower) triangular.

    Args:
        camera: (..., 2, 3) affine cameras of rank 2.
    Returns:
        intrinsics (..., 2, 2) with k11, k22 > 0 and rotations (..., 3, 3) with det +1.
    """
    check_shape(camera, ("...", 2, 3), "camera")
    m1, m2 = camera.unbind(-2)
    k22 = torch.linalg.vector_norm(m2, dim=-1)
    r2 = m2 / k22[..., None]
    k12 = (m1 * r2).sum(-1)
    m1_orthogonal = m1 - k12[..., None] * r2
    k11 = torch.linalg.vector_norm(m1_orthogonal, dim=-1)
    scale = torch.maximum(k22, torch.linalg.vector_norm(m1, dim=-1))
    degenerate = (k11 <= 1e-12 * scale) | (k22 <= 1e-30)
    if bool(degenerate.any()):
        raise ValueError("camera matrices of rank < 2 cannot be split into K [I|0] R; drop those samples")
    r1 = m1_orthogonal / k11[..., None]
    rotation = torch.stack((r1, r2, torch.linalg.cross(r1, r2, dim=-1)), -2)
    zero = torch.zeros_like(k11)
    intrinsics = torch.stack((torch.stack((k11, k12), -1), torch.stack((zero, k22), -1)), -2)
    return intrinsics, rotation


def intrinsics_rotation_to_camera(intrinsics: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """M = K [I2 | 0] R, the inverse of `camera_to_intrinsics_rotation`.

    Args:
        intrinsics: (..., 2, 2) upper-triangular K.
        rotation: (..., 3, 3) rotations.
    Returns:
        (..., 2, 3) cameras.
    """
    check_shape(intrinsics, ("...", 2, 2), "intrinsics")
    check_shape(rotation, ("...", 3, 3), "rotation")
    return intrinsics @ rotation[..., :2, :]


def nearest_rotation(matrix: torch.Tensor) -> torch.Tensor:
    """The rotation closest to `matrix` in the Frobenius norm (polar factor with det +1).

    Args:
        matrix: (..., 3, 3).
    Returns:
        (..., 3, 3) rotations.
    """
    check_shape(matrix, ("...", 3, 3), "matrix")
    u, _, vh = torch.linalg.svd(matrix)
    sign = torch.sign(torch.linalg.det(u @ vh))
    flip = torch.ones_like(matrix[..., 0, :])
    flip[..., 2] = sign
    return (u * flip[..., None, :]) @ vh


def inverse_3x3(matrix: torch.Tensor) -> torch.Tensor:
    """Inverses by the adjugate formula: elementwise ops, much faster than LAPACK for large batches.

    Args:
        matrix: (..., 3, 3) invertible matrices.
    Returns:
        (..., 3, 3) inverses.
    """
    check_shape(matrix, ("...", 3, 3), "matrix")

    def cofactor(i: int, j: int) -> torch.Tensor:
        rows, cols = ((i + 1) % 3, (i + 2) % 3), ((j + 1) % 3, (j + 2) % 3)
        return (
            matrix[..., rows[0], cols[0]] * matrix[..., rows[1], cols[1]]
            - matrix[..., rows[0], cols[1]] * matrix[..., rows[1], cols[0]]
        )

    adjugate = torch.stack([torch.stack([cofactor(j, i) for j in range(3)], -1) for i in range(3)], -2)
    determinant = (matrix[..., 0, :] * adjugate[..., :, 0]).sum(-1)
    return adjugate / determinant[..., None, None]
