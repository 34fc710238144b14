"""Rotation conventions, fixed once for the whole project.

- Column vectors: a point p (3,) maps to R @ p. Batched points are rows: (..., L, 3) @ R^T.
- Euler angles theta = (theta_x, theta_y, theta_z) in radians with R(theta) = Rz(theta_z) Ry(theta_y) Rx(theta_x).
- Face frame (after the factorizer aligns its basis): x to image right, y to image down, z away
  from the camera. theta_x is pitch, theta_y is yaw, theta_z is roll; theta = 0 faces the camera.
- theta_y is kept in (-90 deg, 90 deg); the other two in (-180 deg, 180 deg].
"""

from __future__ import annotations

import torch

from common.shapes import check_shape


def euler_angles_to_matrix(theta: torch.Tensor) -> torch.Tensor:
    """Rotation matrices R = Rz Ry Rx from Euler angles.

    Args:
        theta: (..., 3) angles (x, y, z) in radians.
    Returns:
        (..., 3, 3) rotation matrices.
    """
    check_shape(theta, ("...", 3), "theta")
    cx, cy, cz = torch.cos(theta).unbind(-1)
    sx, sy, sz = torch.sin(theta).unbind(-1)
    rows = (
        (cz * cy, cz * sy * sx - sz * cx, cz * sy * cx + sz * sx),
        (sz * cy, sz * sy * sx + cz * cx, sz * sy * cx - cz * sx),
        (-sy, cy * sx, cy * cx),
    )
    return torch.stack([torch.stack(row, -1) for row in rows], -2)


def matrix_to_euler_angles(rotation: torch.Tensor) -> torch.Tensor:
    """Euler angles (x, y, z) of R = Rz Ry Rx; inverse of `euler_angles_to_matrix` for |theta_y| < 90 deg.

    Args:
        rotation: (..., 3, 3) rotation matrices.
    Returns:
        (..., 3) angles in radians.
    """
    check_shape(rotation, ("...", 3, 3), "rotation")
    theta_x = torch.atan2(rotation[..., 2, 1], rotation[..., 2, 2])
    theta_y = torch.asin((-rotation[..., 2, 0]).clamp(-1.0, 1.0))
    theta_z = torch.atan2(rotation[..., 1, 0], rotation[..., 0, 0])
    return torch.stack((theta_x, theta_y, theta_z), -1)
