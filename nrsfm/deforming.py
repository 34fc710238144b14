"""Rank-one NRSfM for strongly deforming point sets under large rotations (the generic path).

Landmarks (N, L, 2) -> NRSfMModel and q (N, 8 + K), as `nrsfm.factorize.factorize` returns, for
point sets that are not faces: the rank-3 rigid fit that `factorize` starts from mistakes
deformation for rotation when the deformation is strong. Steps (no loop over samples):
1. Cameras from the full-rank factorisation: the stacked, centred landmarks projected on their
   top 3c + 3 right singular vectors, then the corrective matrix of `nrsfm.rotations`
   (orthonormality constraints: convex solve, then a rank-3 refinement that keeps one camera scale).
   c is chosen when not given, without ground truth: for c = 1..max_shapes the cameras of rank
   3c + 3 and the held-out landmark error of c full shapes fitted to them
   (`nrsfm.known_cameras.held_out_error`); c is the first whose successor lowers that error by less
   than `ELBOW_GAIN` (relative), or stops lowering it.
2. Structure with those cameras fixed: mean shape plus k full 3 x L basis shapes by alternating
   projections on the unknown depths (`nrsfm.known_cameras`); for a sequence the basis coefficients
   can be smoothed in time after every projection (`temporal_widths`, candidate widths, 0 meaning none).
3. k is chosen when not given by the same elbow rule on the held-out errors of k = 1..max_shapes
   full shapes with the cameras of step 1 fixed. With several candidate widths, those errors are
   computed for each, and the width whose errors have the lowest mean logarithm is used.
4. The k full basis shapes become 3k rank-one basis shapes (one per full shape and axis: d_k is a
   coordinate axis, b_k that axis's row of the full shape, normalised), so K = 3k.
5. Gauges: the frame is rotated by the mean camera rotation (theta = 0 is the average view); the
   depth reflection is resolved by a rule that needs no knowledge of the object (the mean shape's
   depths have positive third moment, `nrsfm.facing.generic_mirror_rule`); scale so that the mean
   camera scale is 1; alpha has zero mean (its mean is in the mean shape).
A degenerate corrective solve (too little rotation) falls back to the rigid Tomasi-Kanade cameras
with a logged warning.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch

from common.shapes import check_finite
from nrsfm.camera import camera_to_intrinsics_rotation, nearest_rotation
from nrsfm.facing import generic_mirror_rule
from nrsfm.factorize import check_landmarks_and_mask, metric_upgrade
from nrsfm.geometry import matrix_to_euler_angles
from nrsfm.known_cameras import complete_rotations, fit_shape_basis, held_out_error
from nrsfm.model import NRSfMModel
from nrsfm.rotations import corrective_cameras, nearest_scaled_orthographic

logger = logging.getLogger(__name__)

MAX_SHAPES = 6
ELBOW_GAIN = 0.25
MIN_STD = 1e-6


def factorize_deforming(
    landmarks: torch.Tensor,
    found: torch.Tensor | None = None,
    num_shapes: int | None = None,
    max_shapes: int = MAX_SHAPES,
    num_iterations: int = 100,
    camera_shapes: int | None = None,
    temporal_widths: Sequence[float] = (0.0,),
) -> tuple[NRSfMModel, torch.Tensor]:
    """Fit the rank-one model with corrective cameras and a full-shape structure (module docstring).

    Args:
        landmarks: (N, L, 2) float landmarks; rows where `found` is False are ignored.
        found: (N,) bool validity mask, None for all rows.
        num_shapes: k full basis shapes of the structure (the model gets K = 3k rank-one shapes);
            None chooses k by the held-out rule among 1..max_shapes.
        max_shapes: largest k (and c) the rules try.
        num_iterations: alternating projections of the structure step.
        camera_shapes: c, the cameras come from the rank 3c + 3 factorisation; None chooses c by
            the held-out rule among 1..max_shapes.
        temporal_widths: candidate widths (frames) of the temporal smoothing of the basis
            coefficients (`nrsfm.known_cameras.fit_shape_basis`), the best by held-out error is
            used; (0,) when the samples are independent, several (0 among them) when they are the
            frames of one sequence in order (found frames only).
    Returns:
        The model (metadata: ``num_shapes``, ``camera_shapes``, ``held_out_errors`` and
        ``camera_held_out_errors`` when chosen, ``rmse``) and q (N, 8 + 3k), NaN rows where not found.
    """
    landmarks = torch.as_tensor(landmarks)
    if found is None:
        found = torch.ones(landmarks.shape[0], dtype=torch.bool, device=landmarks.device)
    if not temporal_widths or not all(width >= 0 for width in temporal_widths):
        raise ValueError(f"temporal_widths must be widths >= 0 (0: independent samples), got {temporal_widths}")
    points = _validated_points(landmarks, torch.as_tensor(found, device=landmarks.device))
    translation = points.mean(-2)
    centred = points - translation[:, None, :]
    limit = min(points.shape[0] - 1, (points.shape[1] - 4) // 3)
    for name, value in (("num_shapes", num_shapes), ("camera_shapes", camera_shapes)):
        if value is not None and not 1 <= value <= limit:
            raise ValueError(f"{name}={value} must be between 1 and {limit} (K = 3 num_shapes <= L - 4, k < N)")
    camera_held_out_errors = held_out_errors = None
    if camera_shapes is None:
        camera_shapes, camera_held_out_errors = choose_camera_shapes(centred, max_shapes, num_iterations)
    cameras = estimate_cameras(centred, camera_shapes)
    if num_shapes is None or len(temporal_widths) > 1:
        chosen, temporal_width, held_out_errors = choose_num_shapes_and_width(
            centred, cameras, temporal_widths, max_shapes, num_iterations
        )
        num_shapes = chosen if num_shapes is None else num_shapes
    else:
        temporal_width = float(temporal_widths[0])
    basis, coefficients = fit_shape_basis(centred, cameras, num_shapes, num_iterations, temporal_width=temporal_width)
    shapes = basis[0] + torch.einsum("nj,jla->nla", coefficients, basis[1:])
    rmse = float((shapes @ cameras.transpose(1, 2) - centred).square().mean().sqrt())
    cameras, basis = _fix_gauges(cameras, basis)
    model, q_found = _rank_one_model(cameras, basis, coefficients, translation)
    model.metadata.update(
        num_shapes=num_shapes,
        camera_shapes=camera_shapes,
        temporal_width=float(temporal_width),
        method="deforming",
        rmse=rmse,
        rmse_definition="sqrt(mean over found samples, landmarks and x/y of squared error), input units",
        held_out_errors=held_out_errors,
        camera_held_out_errors=camera_held_out_errors,
        mirror_rule="generic: positive third moment of the mean shape's depths",
        camera="orthographic",
    )
    q = torch.full((len(found), q_found.shape[1]), float("nan"), dtype=landmarks.dtype, device=landmarks.device)
    q[torch.as_tensor(found, device=landmarks.device)] = q_found.to(landmarks.dtype)
    return model.to(landmarks.dtype), q


def _validated_points(landmarks: torch.Tensor, found: torch.Tensor) -> torch.Tensor:
    """Check the inputs; return the found landmarks (N_found, L, 2) in float64."""
    sizes = check_landmarks_and_mask(landmarks, found)
    if sizes["L"] < 7:
        raise ValueError(f"the deforming path needs at least 7 points per sample, got L={sizes['L']}")
    points = landmarks[found].to(torch.float64)
    if points.shape[0] < 4:
        raise ValueError(f"only {points.shape[0]} samples have found=True; the deforming path needs at least 4")
    check_finite(points, "landmarks of found samples")
    return points


def estimate_cameras(centred: torch.Tensor, num_shapes: int) -> torch.Tensor:
    """Orthographic cameras (N, 2, 3) from the rank 3k + 3 factorisation of centred (N, L, 2).

    Orthographic (one scale for all samples) is the only camera model of this path: with a free
    scale per sample the corrective solve does not single out one column triple for full shapes.

    Falls back to the rigid Tomasi-Kanade cameras, with a warning, when the corrective solve is
    degenerate (a rank-3 part that does not give rank-2 cameras).
    """
    num_samples, num_landmarks, _ = centred.shape
    num_rows = min(3 * num_shapes + 3, num_landmarks - 1, 2 * num_samples)
    rows = _principal_rows(centred, num_rows)
    reduced = torch.einsum("nlc,rl->ncr", centred, rows)
    cameras = corrective_cameras(reduced, orthographic=True)
    singular = torch.linalg.svdvals(cameras)
    if bool(torch.isfinite(cameras).all()) and bool((singular[:, 1] > 1e-6 * singular[:, 0]).all()):
        return cameras
    logger.warning(
        "corrective cameras are degenerate (too little rotation?); falling back to rigid Tomasi-Kanade cameras"
    )
    rigid = reduced[..., :3] @ metric_upgrade(reduced[..., :3])
    rigid = nearest_scaled_orthographic(rigid)
    return rigid / rigid.square().sum((1, 2)).mean().div(2).sqrt()


def _principal_rows(centred: torch.Tensor, num_rows: int) -> torch.Tensor:
    """Top `num_rows` right singular vectors (num_rows, L) of the (2N, L) measurement matrix."""
    measurement = centred.transpose(1, 2).reshape(-1, centred.shape[1])
    _, vectors = torch.linalg.eigh(measurement.T @ measurement)
    return vectors[:, -num_rows:].flip(-1).T.contiguous()


def choose_camera_shapes(
    centred: torch.Tensor, max_shapes: int = MAX_SHAPES, num_iterations: int = 100
) -> tuple[int, list[float]]:
    """c of step 1 (module docstring): the elbow of the held-out errors of c shapes with the rank 3c + 3 cameras.

    centred (N, L, 2) -> (c, held-out errors for c = 1..max).
    """
    errors = [
        held_out_error(centred, estimate_cameras(centred, num_shapes), num_shapes, num_iterations=num_iterations)
        for num_shapes in range(1, _largest_num_shapes(centred, max_shapes) + 1)
    ]
    return elbow(errors), errors


def choose_num_shapes_and_width(
    centred: torch.Tensor,
    cameras: torch.Tensor,
    temporal_widths: Sequence[float] = (0.0,),
    max_shapes: int = MAX_SHAPES,
    num_iterations: int = 100,
) -> tuple[int, float, list[float]]:
    """k and the temporal width of step 3 (module docstring) for fixed cameras (N, 2, 3).

    centred (N, L, 2) -> (k, width, held-out errors for k = 1..max with that width).
    """
    best = None
    for width in temporal_widths:
        errors = [
            held_out_error(centred, cameras, num_shapes, num_iterations=num_iterations, temporal_width=width)
            for num_shapes in range(1, _largest_num_shapes(centred, max_shapes) + 1)
        ]
        score = sum(math.log(max(error, 1e-300)) for error in errors) / len(errors)
        if best is None or score < best[0]:
            best = (score, float(width), errors)
    _, width, errors = best
    return elbow(errors), width, errors


def elbow(errors: list[float]) -> int:
    """The first k (1-based) whose successor lowers errors[k - 1] by less than `ELBOW_GAIN` (relative)."""
    for index in range(len(errors) - 1):
        if errors[index + 1] > (1 - ELBOW_GAIN) * errors[index]:
            return index + 1
    return len(errors)


def _largest_num_shapes(centred: torch.Tensor, max_shapes: int) -> int:
    return min(max_shapes, (centred.shape[1] - 4) // 3, centred.shape[0] - 1)


def _fix_gauges(cameras: torch.Tensor, basis: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean-rotation frame, generic mirror rule, unit mean camera scale; cameras (N, 2, 3), basis (k + 1, L, 3)."""
    frame = nearest_rotation(complete_rotations(cameras).sum(0))
    cameras, basis = cameras @ frame.T, basis @ frame.T
    if not generic_mirror_rule(basis[0]):
        mirror = torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=basis.dtype, device=basis.device))
        cameras, basis = cameras @ mirror, basis @ mirror
    scale = torch.linalg.vector_norm(cameras, dim=-1).mean()
    return cameras / scale, basis * scale


def _rank_one_model(
    cameras: torch.Tensor, basis: torch.Tensor, coefficients: torch.Tensor, translation: torch.Tensor
) -> tuple[NRSfMModel, torch.Tensor]:
    """Split every full basis shape into 3 rank-one shapes along the axes; q (N, 8 + 3k) float64."""
    num_shapes = coefficients.shape[1]
    mean_coefficients = coefficients.mean(0)
    mean_shape = basis[0] + torch.einsum("j,jla->la", mean_coefficients, basis[1:])
    rows = basis[1:].permute(0, 2, 1).reshape(3 * num_shapes, -1)  # (3k, L): axis a of shape j at 3j + a
    norms = torch.linalg.vector_norm(rows, dim=1).clamp_min(1e-30)
    directions = torch.eye(3, dtype=basis.dtype, device=basis.device).repeat(num_shapes, 1)  # (3k, 3)
    alpha = (coefficients - mean_coefficients).repeat_interleave(3, dim=1) * norms
    intrinsics, rotation = camera_to_intrinsics_rotation(cameras)
    camera_params = torch.stack((intrinsics[:, 0, 0], intrinsics[:, 0, 1], intrinsics[:, 1, 1]), -1)
    q = torch.cat((camera_params, matrix_to_euler_angles(rotation), alpha, translation), -1)
    gram = (rows / norms[:, None]) @ (rows / norms[:, None]).T
    model = NRSfMModel(
        mean_shape=mean_shape,
        directions=directions,
        basis=rows / norms[:, None],
        q_mean=q.mean(0),
        q_std=q.std(0).clamp_min(MIN_STD),
        metadata={
            "num_landmarks": int(basis.shape[1]),
            "num_basis": 3 * num_shapes,
            "num_samples": int(cameras.shape[0]),
            "basis_orthogonality_error": float((gram - torch.eye(len(gram), dtype=gram.dtype)).abs().max()),
        },
    )
    return model, q
