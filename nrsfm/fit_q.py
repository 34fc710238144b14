"""q* = argmin_q |R(q) - X|^2 for new landmark sets (docs/METHOD.md, "Attributes"; paper eq. 11).

Every landmark's residual is weighted by the model's `landmark_weights` (the weights of the fit that
made it; all ones for an unweighted fit), so new faces are fitted as the training faces were.

Two phases, both batched over samples:
1. Start (only without `q_init`): alternate the closed-form affine camera and translation given
   the 3D shape (3x3 normal equations) with the closed-form alpha given the camera (K x K normal
   equations), starting from alpha = 0 (the rigid fit of the mean shape).
2. Levenberg-Marquardt on q with per-sample damping; Jacobians of R(q) by `torch.func`.
The result is canonical: k11, k22 > 0 and Euler angles as `nrsfm.geometry.matrix_to_euler_angles`
returns them (theta_y in (-90, 90) deg).
"""

from __future__ import annotations

import copy

import torch
from torch.func import jacfwd, vmap

from common.shapes import check_finite, check_shape
from nrsfm.camera import camera_to_intrinsics_rotation, inverse_3x3
from nrsfm.geometry import euler_angles_to_matrix, matrix_to_euler_angles
from nrsfm.model import NRSfMModel


def fit_q(
    model: NRSfMModel,
    landmarks: torch.Tensor,
    q_init: torch.Tensor | None = None,
    num_steps: int = 20,
    num_init_steps: int = 20,
) -> torch.Tensor:
    """Fit attributes q to landmarks with the model fixed.

    Args:
        model: the NRSfM model (L landmarks, K basis shapes).
        landmarks: (B, L, 2) landmarks in normalised image coordinates, float32 or float64.
        q_init: (B, 8 + K) warm start (e.g. a regressor's prediction); None starts from the
            closed-form alternation of the module docstring.
        num_steps: Levenberg-Marquardt iterations.
        num_init_steps: camera/alpha alternations for the start when `q_init` is None.
    Returns:
        (B, 8 + K) q in the landmarks' dtype and device.
    """
    sizes = check_shape(landmarks, ("B", model.num_landmarks, 2), "landmarks")
    check_finite(landmarks, "landmarks")
    if not landmarks.is_floating_point():
        raise ValueError(f"landmarks must be float32 or float64, got {landmarks.dtype}")
    if model.mean_shape.dtype != landmarks.dtype or model.mean_shape.device != landmarks.device:
        model = copy.deepcopy(model).to(device=landmarks.device, dtype=landmarks.dtype)
    if q_init is None:
        q = _alternation_start(model, landmarks, num_init_steps)
    else:
        check_shape(q_init, (sizes["B"], model.layout.dim), "q_init")
        check_finite(q_init, "q_init")
        q = q_init.to(device=landmarks.device, dtype=landmarks.dtype)
    with torch.no_grad():
        q = _levenberg_marquardt(model, landmarks, q.detach(), num_steps)
    return _canonical(model, q)


def _alternation_start(model: NRSfMModel, landmarks: torch.Tensor, num_steps: int) -> torch.Tensor:
    """Closed-form camera/alpha alternation from alpha = 0: (B, 8 + K).

    Weighted least squares as plain least squares: every point is centred on the weighted centroid
    and scaled by the square root of its weight (data, mean shape and basis alike)."""
    layout = model.layout
    weights = model.landmark_weights / model.landmark_weights.sum()  # (L,), sums to 1
    scale = (weights * model.num_landmarks).sqrt()
    centroid = (landmarks * weights[:, None]).sum(-2, keepdim=True)
    centred = (landmarks - centroid) * scale[:, None]  # (B, L, 2)
    basis = (model.basis - (model.basis * weights).sum(-1, keepdim=True)) * scale  # (K, L)
    mean_shape = (model.mean_shape - (model.mean_shape * weights[:, None]).sum(0)) * scale[:, None]  # (L, 3)
    basis_gram = basis @ basis.T
    alpha = landmarks.new_zeros(landmarks.shape[0], model.num_basis)
    for _ in range(max(num_steps, 1)):
        shape = mean_shape + torch.einsum("bk,kl,kc->blc", alpha, basis, model.directions)
        camera = centred.transpose(1, 2) @ shape @ inverse_3x3(shape.transpose(1, 2) @ shape)  # (B, 2, 3)
        projected = camera @ model.directions.T  # (B, 2, K)
        normal = (projected.transpose(1, 2) @ projected) * basis_gram
        residual = centred - mean_shape @ camera.transpose(1, 2)  # (B, L, 2)
        rhs = torch.einsum("bck,blc,kl->bk", projected, residual, basis)
        ridge = 1e-9 * normal.diagonal(dim1=1, dim2=2).mean(-1).clamp_min(1e-30)
        eye = torch.eye(model.num_basis, dtype=normal.dtype, device=normal.device)
        alpha = torch.linalg.solve(normal + ridge[:, None, None] * eye, rhs[..., None])[..., 0]
    shape_centroid = (model.shape_3d(alpha) * weights[:, None]).sum(-2)  # (B, 3)
    translation = centroid[:, 0] - (shape_centroid[:, None, :] @ camera.transpose(1, 2))[:, 0]
    intrinsics, rotation = camera_to_intrinsics_rotation(camera)
    q = landmarks.new_zeros(landmarks.shape[0], layout.dim)
    q[:, layout.camera] = torch.stack((intrinsics[:, 0, 0], intrinsics[:, 0, 1], intrinsics[:, 1, 1]), -1)
    q[:, layout.rotation] = matrix_to_euler_angles(rotation)
    q[:, layout.alpha] = alpha
    q[:, layout.translation] = translation
    return q


def _levenberg_marquardt(model: NRSfMModel, landmarks: torch.Tensor, q: torch.Tensor, num_steps: int) -> torch.Tensor:
    """Per-sample damped Gauss-Newton on sum_l w_l |R(q)_l - X_l|^2: q (B, P) -> (B, P)."""
    scale = model.landmark_weights.sqrt()[:, None]  # (L, 1)

    def residual(q_single: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ((model(q_single) - target) * scale).reshape(-1)

    jacobian = vmap(jacfwd(residual))
    residuals = vmap(residual)
    eye = torch.eye(q.shape[-1], dtype=q.dtype, device=q.device)
    damping = q.new_full((q.shape[0],), 1e-3)
    cost = residuals(q, landmarks).square().sum(-1)
    for _ in range(num_steps):
        jac = jacobian(q, landmarks)  # (B, 2L, P)
        normal = jac.transpose(1, 2) @ jac
        gradient = jac.transpose(1, 2) @ residuals(q, landmarks)[..., None]
        scaled = normal + damping[:, None, None] * (normal * eye + 1e-12 * eye)
        step = torch.linalg.solve(scaled, -gradient)[..., 0]
        candidate = q + step
        candidate_cost = residuals(candidate, landmarks).square().sum(-1)
        better = candidate_cost < cost
        if not bool(better.any()):
            break
        q = torch.where(better[:, None], candidate, q)
        cost = torch.where(better, candidate_cost, cost)
        damping = torch.where(better, damping / 3, damping * 4).clamp(1e-9, 1e9)
    return q


def _canonical(model: NRSfMModel, q: torch.Tensor) -> torch.Tensor:
    """Same R(q), with k11, k22 > 0 and Euler angles in their canonical ranges."""
    layout = model.layout
    k11, k12, k22 = q[:, layout.camera].unbind(-1)
    intrinsics = torch.stack((torch.stack((k11, k12), -1), torch.stack((torch.zeros_like(k11), k22), -1)), -2)
    camera = intrinsics @ euler_angles_to_matrix(q[:, layout.rotation])[:, :2]
    intrinsics, rotation = camera_to_intrinsics_rotation(camera)
    q = q.clone()
    q[:, layout.camera] = torch.stack((intrinsics[:, 0, 0], intrinsics[:, 0, 1], intrinsics[:, 1, 1]), -1)
    q[:, layout.rotation] = matrix_to_euler_angles(rotation)
    return q
