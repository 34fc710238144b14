"""Rank-one non-rigid structure-from-motion: landmarks (N, L, 2) -> NRSfMModel and q (N, 8 + K).

Steps (docs/METHOD.md, "Factorization"; all batched tensor ops, no loop over samples):
1. Centre each shape on its centroid t_n; the measurement matrix W (2N, L) has the x and y rows
   of every sample. Its Gram matrix W^T W (L, L) is accumulated in float64 over chunks of samples
   and eigen-decomposed once: the top 3 eigenvectors are the rigid SVD's right singular vectors
   V3, the next K are those of the non-rigid residual W - M0 B0 = W (I - V3^T V3).
   Everything after this works in the coordinates of these r = 3 + K rows (Y_n = X_n V^T,
   (N, 2, r)), so its cost does not depend on L; the fit error outside them is a constant.
2. Two-step fit: rigid cameras M0 = W V3^T, metric upgrade (Tomasi-Kanade: find G = Q Q^T with
   rows of every M_n Q orthogonal and of equal norm, by least squares), b_k = eigenvectors 4..3+K,
   then D and alpha by alternating least squares with cameras and B0 fixed. The ALS starts from
   a deterministic point (top eigenvector of the lifted residuals), so the fit is deterministic.
   With ``initial_cameras="corrective"`` the cameras come instead from the corrective matrix of
   the rank 3 + K factorisation (`nrsfm.rotations`), B0 by least squares for them and the b_k from
   the lifted residuals; the refinement then first fits the structure with those cameras fixed.
3. Joint refinement: alternating least squares over cameras M_n (closed form per sample, 3x3
   inverses by the adjugate), alpha (one Gauss-Seidel sweep of exact per-coordinate updates),
   B0 together with the b_k (one (3+K) x (3+K) solve) and D (one 3K x 3K solve); none of these
   steps can increase the reprojection error. After every sweep the free affine 3D frame is
   made Euclidean again (metric upgrade), so it cannot drift. The camera step also pulls every
   camera toward the nearest scaled-orthographic camera s [r1; r2] (penalty weight
   `camera_penalty`, relative to the reprojection error a camera change causes): with free affine
   cameras (k11, k12, k22 per sample) the refinement lowers the error by flattening the depth of
   the shape and inflating pitch and yaw 2-3x, the per-sample k11/k22 absorbing the foreshortening
   (measured on the synthetic face generator, even with its exact landmarks). With the penalty the
   fitted yaw and pitch follow the truth at a slope of about 1 on exact landmarks at almost the same
   error; on detected (dlib) landmarks with K = 12 they come out compressed instead (yaw slope about
   0.5: the basis absorbs part of the rotation; smaller K helps). ALS alone can settle with some d_k
   in a poor local minimum or with two b_k merged, so the sweeps run in phases: between phases
   the b_k rows are reset to the nearest orthonormal rows and D, alpha restart from a grid search
   over directions (the global optimum of each rank-one subproblem, alpha eliminated). The best
   phase is kept. The b_k stay unit and inside the span of the top 3 + K eigenvectors; they start
   orthonormal and may lose exact orthogonality (``basis_orthogonality_error`` in the metadata).
4. Gauges, fixed in this order: metric upgrade again (affine 3D frame -> Euclidean); mean alpha
   moved into B0 (alpha has zero mean); the frame rotated by the mean rotation of all samples
   (so theta = 0 faces the camera on average); the depth reflection resolved by the nose-tip rule
   of `nrsfm.facing` (nose toward the camera, i.e. negative z; ``mirror_rule="generic"`` uses
   `nrsfm.facing.generic_mirror_rule` for point sets that are not faces); scale chosen so that the mean
   camera scale (k11 + k22) / 2 is 1 (B0 is in normalised image units at that scale); every b_k
   has its largest-magnitude entry positive and every d_k its largest-magnitude component
   positive (signs moved into alpha).
5. Cameras split into K [I2|0] R (`nrsfm.camera`), Euler angles (R = Rz Ry Rx), q assembled.

Landmark weights (``contour_weight`` < 1, `nrsfm.contour`): the fit minimises sum_l w_l |x_nl - ...|^2
with the weights scaled to mean 1. Each shape is centred on its weighted centroid and column l of
the measurement matrix is scaled by sqrt(w_l), so steps 1-3 run unchanged on the scaled data; the
structure is then divided by sqrt(w_l) again, and the points with w_l = 0 get the least-squares B0
column and b_k entries for the fitted cameras, D and alpha, before the gauges are fixed.

Rotation-free basis (``orthogonal_basis``): a rank-one basis shape d b^T whose b has a part along
the rows of B0 acts, seen by the camera, like a change of the rigid pose (with d = x and b the
depth row of B0 it shifts x by depth: a small yaw), so the fit can trade rotation for alphas. With
the option, every b_k stays orthogonal to the rigid rows P of the refinement's starting B0 (the
rank-3 SVD rows for rigid cameras); B0 keeps P's span plus a part in its complement (the mean
deformation), and the rows solve of each sweep is the exact least-squares solve under that
constraint. Then no basis shape can reproduce a linear map (in particular no small rotation) of the
rigid mean shape.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace

import torch

from common.shapes import check_finite, check_shape
from nrsfm.camera import camera_to_intrinsics_rotation, inverse_3x3, nearest_rotation
from nrsfm.contour import contour_weights
from nrsfm.facing import MIRROR_RULES, faces_camera, generic_mirror_rule, nose_tip_index
from nrsfm.geometry import matrix_to_euler_angles
from nrsfm.known_cameras import fit_shape_basis, rank_one_rows
from nrsfm.model import NRSfMModel
from nrsfm.rotations import corrective_triple, nearest_scaled_orthographic

logger = logging.getLogger(__name__)

MIN_STD = 1e-6
CAMERA_PENALTY = 0.2
MIN_PHASE_STEPS = 10


@dataclass
class _Factors:
    """The model in reduced coordinates (float64). N found samples, K basis shapes, r = 3 + K.

    cameras (N, 2, 3); mean_rows E (3, r); directions D (3, K) unit columns; basis_rows F (K, r)
    unit rows; alpha (N, K). The 3D shape of sample n is (E + sum_k alpha_nk d_k F_k) V, (3, L).
    """

    cameras: torch.Tensor
    mean_rows: torch.Tensor
    directions: torch.Tensor
    basis_rows: torch.Tensor
    alpha: torch.Tensor

    def shapes(self) -> torch.Tensor:
        """(N, 3, r) per-sample shapes in reduced coordinates."""
        return self.mean_rows + torch.einsum("nk,ak,kr->nar", self.alpha, self.directions, self.basis_rows)

    def squared_error(self, reduced: torch.Tensor) -> torch.Tensor:
        """Sum of squared residuals inside the reduced rows; reduced (N, 2, r) -> scalar."""
        return (reduced - self.cameras @ self.shapes()).square().sum()


def factorize(
    landmarks: torch.Tensor,
    found: torch.Tensor,
    num_basis: int = 12,
    num_als_steps: int = 50,
    num_refine_steps: int = 200,
    tolerance: float = 1e-7,
    nose_index: int | None = None,
    chunk_size: int = 16384,
    camera_penalty: float = CAMERA_PENALTY,
    mirror_rule: str = "nose",
    initial_cameras: str = "rigid",
    contour_weight: float = 1.0,
    orthogonal_basis: bool = False,
) -> tuple[NRSfMModel, torch.Tensor]:
    """Fit the rank-one NRSfM model to landmark sets (module docstring has the steps).

    Args:
        landmarks: (N, L, 2) float32/float64 landmarks, any device; rows where `found` is False are ignored.
        found: (N,) bool validity mask.
        num_basis: K, the number of rank-one basis shapes; 1 <= K <= L - 4.
        num_als_steps: ALS sweeps of the two-step fit (D and alpha with cameras fixed).
        num_refine_steps: joint-refinement sweeps; 0 gives the paper's two-step result.
        tolerance: stop a phase early when a sweep lowers the error by less than this fraction.
        nose_index: landmark that must face the camera (default: `nrsfm.facing` rule).
        chunk_size: samples per chunk when accumulating the Gram matrix (bounds memory).
        camera_penalty: weight of the refinement's pull of every camera toward scaled-orthographic
            (k11 = k22, k12 = 0), relative to the reprojection error a camera change causes; 0 is
            the unpenalised affine refinement, which trades head rotation for depth (module docstring).
        mirror_rule: how the depth reflection is resolved: "nose" (faces: the nose tip toward the
            camera, `nose_index`) or "generic" (any point set, `nrsfm.facing.generic_mirror_rule`).
        initial_cameras: cameras of the two-step fit: "rigid" (rank-3 SVD + Tomasi-Kanade upgrade) or
            "corrective" (corrective matrix of the rank 3 + K factorisation, `nrsfm.rotations`), which
            does not mistake deformation for rotation.
        contour_weight: weight of the face contour points (`nrsfm.contour`: dlib's jaw line, MediaPipe's
            face oval) in the fit, relative to 1 for the others; 0 leaves them out of the fit of
            cameras, rotations and alphas (their 3D positions and basis entries are then least squares
            for those). The model keeps the weights (``landmark_weights`` in its metadata) for `fit_q`
            and the regressor's loss.
        orthogonal_basis: keep every b_k orthogonal to the rigid rows of B0 throughout the refinement
            (module docstring, "Rotation-free basis").
    Returns:
        The model (buffers in the landmarks' dtype and device; metadata with ``rmse``,
        ``rmse_two_step``, ``num_samples`` and more) and q (N, 8 + K), NaN rows where not found.
    """
    landmarks = torch.as_tensor(landmarks)
    found = torch.as_tensor(found, device=landmarks.device)
    points = _validated_points(landmarks, found, num_basis)
    if not camera_penalty >= 0:
        raise ValueError(f"camera_penalty must be >= 0, got {camera_penalty}")
    if initial_cameras not in ("rigid", "corrective"):
        raise ValueError(f"initial_cameras={initial_cameras!r} is unknown; use rigid or corrective")
    if mirror_rule not in MIRROR_RULES:
        raise ValueError(f"mirror_rule={mirror_rule!r} is unknown; use one of {', '.join(MIRROR_RULES)}")
    num_samples, num_landmarks, _ = points.shape
    num_rows = 3 + num_basis
    raw_weights = contour_weights(num_landmarks, contour_weight)
    weights = (raw_weights / raw_weights.mean()).to(device=points.device)
    weighted = contour_weight != 1.0

    if weighted:
        translation = (points * weights[:, None].to(points.dtype)).sum(-2) / weights.sum().to(points.dtype)
    else:
        translation = points.mean(-2)
    centred = points - translation[:, None, :]
    measured = centred * weights.sqrt()[:, None].to(centred.dtype) if weighted else centred
    rows, total_energy = _principal_rows(measured, num_rows, chunk_size)
    reduced = torch.einsum("nlc,rl->ncr", measured, rows.to(measured.dtype)).to(torch.float64)
    energy_outside = (total_energy - reduced.square().sum()).clamp_min(0.0)

    factors = _two_step(reduced, num_basis, num_als_steps, tolerance, initial_cameras)
    error_two_step = factors.squared_error(reduced)
    if num_refine_steps > 0 and initial_cameras == "corrective":
        # fit the structure to the corrective cameras first, so the joint refinement starts at a consistent point
        factors = _refine(
            factors,
            reduced,
            num_refine_steps,
            tolerance,
            camera_penalty,
            update_cameras=False,
            orthogonal_basis=orthogonal_basis,
        )
    if num_refine_steps > 0:
        factors = _refine(
            factors, reduced, num_refine_steps, tolerance, camera_penalty, orthogonal_basis=orthogonal_basis
        )
    error = factors.squared_error(reduced)
    if weighted:
        factors, rows = _unweighted(factors, rows, centred, weights, chunk_size)
    factors = _fix_gauges(factors, rows, nose_index, mirror_rule)

    num_values = num_samples * num_landmarks * 2
    intrinsics, rotation = camera_to_intrinsics_rotation(factors.cameras)
    theta = matrix_to_euler_angles(rotation)
    camera_params = torch.stack((intrinsics[:, 0, 0], intrinsics[:, 0, 1], intrinsics[:, 1, 1]), -1)
    q_found = torch.cat((camera_params, theta, factors.alpha, translation.to(torch.float64)), -1)

    dtype = landmarks.dtype
    q = torch.full((len(found), 8 + num_basis), float("nan"), dtype=dtype, device=landmarks.device)
    q[found] = q_found.to(dtype)
    basis = factors.basis_rows @ rows
    gram = basis @ basis.T
    metadata = {
        "num_landmarks": num_landmarks,
        "num_basis": num_basis,
        "num_samples": num_samples,
        "rmse": float(((error + energy_outside) / num_values).sqrt()),
        "rmse_two_step": float(((error_two_step + energy_outside) / num_values).sqrt()),
        "nose_index": nose_tip_index((factors.mean_rows @ rows).T, nose_index) if mirror_rule == "nose" else None,
        "mirror_rule": mirror_rule,
        "initial_cameras": initial_cameras,
        "camera_penalty": float(camera_penalty),
        "contour_weight": float(contour_weight),
        "orthogonal_basis": bool(orthogonal_basis),
        "landmark_weights": raw_weights.tolist(),
        "basis_orthogonality_error": float(
            (gram - torch.eye(num_basis, dtype=gram.dtype, device=gram.device)).abs().max()
        ),
        "rmse_definition": (
            "sqrt(mean over found samples, landmarks and x/y of squared error, landmarks weighted by landmark_weights "
            "/ their mean), normalised image units"
        ),
    }
    model = NRSfMModel(
        mean_shape=(factors.mean_rows @ rows).T.to(dtype),
        directions=factors.directions.T.to(dtype),
        basis=basis.to(dtype),
        q_mean=q_found.mean(0).to(dtype),
        q_std=q_found.std(0).clamp_min(MIN_STD).to(dtype),
        metadata=metadata,
    )
    return model, q


def check_landmarks_and_mask(landmarks: torch.Tensor, found: torch.Tensor) -> dict[str, int]:
    """ValueError unless landmarks are floating (N, L, 2) and found an (N,) bool mask; returns {"N", "L"}."""
    sizes = check_shape(landmarks, ("N", "L", 2), "landmarks")
    check_shape(found, (sizes["N"],), "found")
    if not landmarks.is_floating_point():
        raise ValueError(f"landmarks must be float32 or float64, got {landmarks.dtype}")
    if found.dtype != torch.bool:
        raise ValueError(f"found must be a bool mask, got {found.dtype}")
    return sizes


def _validated_points(landmarks: torch.Tensor, found: torch.Tensor, num_basis: int) -> torch.Tensor:
    """Check the inputs; return the found landmarks (N_found, L, 2)."""
    num_landmarks = check_landmarks_and_mask(landmarks, found)["L"]
    if not 1 <= num_basis <= num_landmarks - 4:
        raise ValueError(
            f"num_basis={num_basis} must be between 1 and L - 4 = {num_landmarks - 4} "
            "(3 dimensions go to the rigid shape, 1 to translation); use fewer basis shapes"
        )
    num_found = int(found.sum())
    if num_found == 0:
        raise ValueError("no sample has found=True; the dataset holds no detected faces to fit")
    if num_found < 3:
        raise ValueError(f"only {num_found} samples have found=True; the factorization needs at least 3")
    points = landmarks[found]
    check_finite(points, "landmarks of found samples")
    return points


def _principal_rows(centred: torch.Tensor, num_rows: int, chunk_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top right singular vectors of the measurement matrix via its float64 Gram matrix.

    Args:
        centred: (N, L, 2) centred landmarks.
    Returns:
        rows (num_rows, L) float64, orthonormal, by decreasing singular value; total energy (scalar).
    """
    num_landmarks = centred.shape[1]
    gram = torch.zeros(num_landmarks, num_landmarks, dtype=torch.float64, device=centred.device)
    for chunk in centred.split(chunk_size):
        measurement = chunk.to(torch.float64).transpose(1, 2).reshape(-1, num_landmarks)
        gram += measurement.T @ measurement
    _, vectors = torch.linalg.eigh(gram)
    return vectors[:, -num_rows:].flip(-1).T.contiguous(), gram.trace()


def metric_upgrade(cameras: torch.Tensor) -> torch.Tensor:
    """Q (3, 3) such that the rows of every M_n Q are orthogonal and of equal norm (least squares),
    scaled so that the rows have unit mean square norm.

    Args:
        cameras: (N, 2, 3) affine cameras.
    """
    m1, m2 = cameras.unbind(-2)

    def coefficients(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """a^T G b as a linear function of G's (g11, g12, g13, g22, g23, g33): (N, 6)."""
        return torch.stack(
            (
                a[:, 0] * b[:, 0],
                a[:, 0] * b[:, 1] + a[:, 1] * b[:, 0],
                a[:, 0] * b[:, 2] + a[:, 2] * b[:, 0],
                a[:, 1] * b[:, 1],
                a[:, 1] * b[:, 2] + a[:, 2] * b[:, 1],
                a[:, 2] * b[:, 2],
            ),
            -1,
        )

    system = torch.cat((coefficients(m1, m1) - coefficients(m2, m2), coefficients(m1, m2)))
    system_values, vectors = torch.linalg.eigh(system.T @ system)
    if bool(system_values[1] <= 1e-12 * system_values[-1]):
        raise ValueError(
            "the metric upgrade failed: the cameras do not constrain a Euclidean frame "
            "(too little rotation among the samples?); use samples seen from more varied viewpoints"
        )
    g = vectors[:, 0]
    gram = torch.stack((g[[0, 1, 2]], g[[1, 3, 4]], g[[2, 4, 5]]))
    values, axes = torch.linalg.eigh(gram)
    values = values if values.sum() >= 0 else -values
    values = values.clamp_min(1e-6 * values.abs().max())  # nearest positive definite G when noise breaks it
    upgrade = axes * values.sqrt()
    return upgrade / (cameras @ upgrade).square().sum((1, 2)).mean().div(2).sqrt()


def _two_step(
    reduced: torch.Tensor, num_basis: int, num_steps: int, tolerance: float, initial_cameras: str = "rigid"
) -> _Factors:
    """Cameras (rigid metric upgrade or corrective matrix), B0 and b_k rows, and ALS for D and alpha (cameras, B0 fixed)."""
    num_rows = reduced.shape[-1]
    eye = torch.eye(num_rows, dtype=reduced.dtype, device=reduced.device)
    if initial_cameras == "corrective":
        cameras, mean_rows, basis_rows = _corrective_start(reduced, num_basis)
        residual = (reduced - cameras @ mean_rows) @ basis_rows.T
    else:
        upgrade = metric_upgrade(reduced[..., :3])
        cameras = reduced[..., :3] @ upgrade
        mean_rows = torch.linalg.solve(upgrade, eye[:3])
        basis_rows = eye[3:]
        residual = reduced[..., 3:]  # (N, 2, K) = residual projected on each b_k, since B0's rows are the first 3
    directions = _initial_directions(cameras, residual)
    alpha = _solve_alpha_two_step(cameras, directions, residual)
    previous = None
    for _ in range(num_steps):
        directions, alpha = _normalised(_solve_directions_two_step(cameras, alpha, residual), alpha)
        alpha = _solve_alpha_two_step(cameras, directions, residual)
        error = (residual - alpha[:, None, :] * (cameras @ directions)).square().sum()
        if previous is not None and previous - error <= tolerance * previous:
            break
        previous = error
    return _Factors(cameras, mean_rows, directions, basis_rows, alpha)


def _corrective_start(reduced: torch.Tensor, num_basis: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cameras (N, 2, 3) from the corrective matrix of `nrsfm.rotations` (scaled-orthographic), then
    with them fixed the mean shape rows E (3, r) and K full shapes (`nrsfm.known_cameras`, the r rows
    taken as points), whose span is split into the rank-one shapes' b_k rows F (K, r)."""
    triple = corrective_triple(reduced, orthographic=False)
    cameras = nearest_scaled_orthographic(reduced @ triple)
    cameras = cameras / cameras.square().sum((1, 2)).mean().div(2).sqrt()
    shape_basis, _ = fit_shape_basis(reduced.transpose(1, 2), cameras, num_basis)
    return cameras, shape_basis[0].T.contiguous(), rank_one_rows(shape_basis[1:])


def _initial_directions(cameras: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """Deterministic start for D (3, K): top eigenvector of the lifted residuals M_n^+ c_nk."""
    lifted = torch.linalg.pinv(cameras) @ residual  # (N, 3, K)
    scatter = torch.einsum("nak,nbk->kab", lifted, lifted)
    _, vectors = torch.linalg.eigh(scatter)
    return vectors[..., -1].T.contiguous()


def _solve_alpha_two_step(cameras: torch.Tensor, directions: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """alpha_nk = (M_n d_k) . c_nk / |M_n d_k|^2: (N, K)."""
    projected = cameras @ directions  # (N, 2, K)
    return (projected * residual).sum(1) / projected.square().sum(1).clamp_min(1e-30)


def _solve_directions_two_step(cameras: torch.Tensor, alpha: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """d_k = (sum_n alpha_nk^2 M_n^T M_n)^-1 sum_n alpha_nk M_n^T c_nk: (3, K)."""
    normal = torch.einsum("nk,nca,ncb->kab", alpha.square(), cameras, cameras)
    rhs = torch.einsum("nk,nca,nck->ka", alpha, cameras, residual)
    return torch.linalg.solve(normal, rhs).T


def _normalised(directions: torch.Tensor, alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit columns of D (3, K); the norms move into alpha (N, K)."""
    norms = torch.linalg.vector_norm(directions, dim=0).clamp_min(1e-30)
    return directions / norms, alpha * norms


def _refine(
    factors: _Factors,
    reduced: torch.Tensor,
    num_steps: int,
    tolerance: float,
    camera_penalty: float,
    num_restarts: int = 2,
    update_cameras: bool = True,
    orthogonal_basis: bool = False,
) -> _Factors:
    """Joint ALS over cameras, alpha, (B0, b_k) and D, in `num_restarts + 1` phases.

    With `update_cameras=False` the cameras stay as they are (Euclidean already) and only the
    structure is refined. With `orthogonal_basis` the b_k rows stay orthogonal to the rows of the
    starting B0 (`_solve_rows_orthogonal`; the b_k start projected onto their complement).

    The objective is the reprojection error plus the camera penalty of `_objective` (cameras pulled
    toward scaled-orthographic s [r1; r2]); phases stop when a sweep lowers it by less than
    `tolerance` (relative), but not before `MIN_PHASE_STEPS` sweeps: the first sweeps can raise it
    while the penalty pulls the cameras in and the metric upgrade moves the frame.

    Between phases the b_k rows are made orthonormal again (the truth's are; ALS can merge two of
    them) and D and alpha restart from the grid search of `_grid_directions` given the refined
    cameras, B0 and b_k (ALS can settle with some d_k in a poor local minimum while the b_k are
    already right). The best factors seen (by that objective) are returned.
    """
    split = _rigid_split(factors.mean_rows) if orthogonal_basis else None
    if split is not None:
        factors = replace(factors, basis_rows=factors.basis_rows @ split[1].T @ split[1])
    best, best_error = factors, _objective(factors, reduced, camera_penalty)
    steps_per_phase = -(-num_steps // (num_restarts + 1))
    for phase in range(num_restarts + 1):
        factors = (
            replace(factors) if phase == 0 else _restarted_alpha_directions(_with_orthonormal_basis(best), reduced)
        )
        previous = _objective(factors, reduced, camera_penalty)
        for step in range(steps_per_phase):
            if update_cameras:
                factors.cameras = _solve_cameras(factors, reduced, camera_penalty)
            factors.alpha = _solve_alpha(factors, reduced)
            factors.mean_rows, factors.basis_rows = (
                _solve_rows(factors, reduced) if split is None else _solve_rows_orthogonal(factors, reduced, split)
            )
            factors.directions = _solve_directions(factors, reduced)
            factors = _euclidean(factors) if update_cameras else _unit_factors(factors)
            error = _objective(factors, reduced, camera_penalty)
            if step >= MIN_PHASE_STEPS and previous - error <= tolerance * previous:
                break
            previous = error
        error = _objective(factors, reduced, camera_penalty)
        if error < best_error:
            best, best_error = factors, error
    return best


def _rigid_split(mean_rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Orthonormal rows (3, r) spanning the rows of B0 (E (3, r)) and rows (K, r) spanning their complement."""
    frame, _ = torch.linalg.qr(mean_rows.T, mode="complete")  # (r, r), first 3 columns span E's rows
    return frame[:, :3].T.contiguous(), frame[:, 3:].T.contiguous()


def _solve_rows_orthogonal(
    factors: _Factors, reduced: torch.Tensor, split: tuple[torch.Tensor, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """B0 and b_k rows like `_solve_rows`, with every b_k inside the complement Q (K, r) of the rigid rows P (3, r).

    With E = A P + E_Q Q and F = C Q, the data's P part is M_n A alone (F P^T = 0), a 3 x 3 solve for A;
    its Q part is M_n E_Q + alpha M_n D C, the unconstrained joint solve of `_solve_rows` in Q's coordinates.
    """
    rigid, deformation = split
    cameras = factors.cameras.flatten(0, 1)  # (2N, 3)
    rigid_part = torch.linalg.solve(cameras.T @ cameras, cameras.T @ (reduced @ rigid.T).flatten(0, 1))  # (3, 3)
    projected = factors.cameras @ factors.directions  # (N, 2, K)
    design = torch.cat((factors.cameras, factors.alpha[:, None, :] * projected), -1).flatten(0, 1)  # (2N, 3 + K)
    solution = torch.linalg.solve(design.T @ design, design.T @ (reduced @ deformation.T).flatten(0, 1))
    return rigid_part @ rigid + solution[:3] @ deformation, solution[3:] @ deformation


def _unweighted(
    factors: _Factors, rows: torch.Tensor, centred: torch.Tensor, weights: torch.Tensor, chunk_size: int
) -> tuple[_Factors, torch.Tensor]:
    """Factors of a weighted fit in plain landmark coordinates, with identity rows (L, L).

    The weighted fit models sqrt(w_l) x_nl, so the structure of a landmark with w_l > 0 is its fitted
    column divided by sqrt(w_l); a landmark with w_l = 0 gets the least-squares B0 column and b_k
    entries given the cameras, D and alpha (one (3 + K) x (3 + K) solve shared by those landmarks).

    Args:
        rows: (r, L) reduced rows of the weighted fit; centred: (N, L, 2) centred landmarks; weights: (L,).
    """
    scale = weights.sqrt().to(torch.float64)
    kept = scale > 0
    mean_shape = torch.zeros(3, len(weights), dtype=torch.float64, device=rows.device)
    basis = torch.zeros(factors.basis_rows.shape[0], len(weights), dtype=torch.float64, device=rows.device)
    mean_shape[:, kept] = (factors.mean_rows @ rows)[:, kept] / scale[kept]
    basis[:, kept] = (factors.basis_rows @ rows)[:, kept] / scale[kept]
    if not bool(kept.all()):
        projected = factors.cameras @ factors.directions  # (N, 2, K)
        design = torch.cat((factors.cameras, factors.alpha[:, None, :] * projected), -1)  # (N, 2, 3 + K)
        normal = torch.einsum("nca,ncb->ab", design, design)
        rhs = sum(
            torch.einsum("nca,nlc->al", part, points[:, ~kept].to(torch.float64))
            for part, points in zip(design.split(chunk_size), centred.split(chunk_size))
        )
        solution = torch.linalg.solve(normal, rhs)  # (3 + K, L_left_out)
        mean_shape[:, ~kept], basis[:, ~kept] = solution[:3], solution[3:]
    identity = torch.eye(len(weights), dtype=rows.dtype, device=rows.device)
    return replace(factors, mean_rows=mean_shape, basis_rows=basis), identity


def _with_orthonormal_basis(factors: _Factors) -> _Factors:
    """A copy with the b_k rows replaced by the nearest orthonormal rows (undoes merged b_k)."""
    u, _, vh = torch.linalg.svd(factors.basis_rows, full_matrices=False)
    return _Factors(factors.cameras, factors.mean_rows, factors.directions, u @ vh, factors.alpha)


def _restarted_alpha_directions(factors: _Factors, reduced: torch.Tensor, num_als_steps: int = 30) -> _Factors:
    """New D and alpha for fixed cameras, B0 and b_k: grid-search start, then ALS (copies factors)."""
    residual = (reduced - factors.cameras @ factors.mean_rows) @ factors.basis_rows.T  # (N, 2, K)
    directions = _grid_directions(factors.cameras, residual)
    alpha = _solve_alpha_two_step(factors.cameras, directions, residual)
    for _ in range(num_als_steps):
        directions, alpha = _normalised(_solve_directions_two_step(factors.cameras, alpha, residual), alpha)
        alpha = _solve_alpha_two_step(factors.cameras, directions, residual)
    return _unit_factors(
        _Factors(factors.cameras.clone(), factors.mean_rows.clone(), directions, factors.basis_rows.clone(), alpha)
    )


def _grid_directions(
    cameras: torch.Tensor, residual: torch.Tensor, num_directions: int = 1000, max_samples: int = 1024
) -> torch.Tensor:
    """Per k, the unit d maximising sum_n (c_nk . M_n d)^2 / |M_n d|^2 over a hemisphere grid.

    That is the global minimum over d of the per-k rank-one problem c_nk ~ alpha_nk M_n d_k with
    alpha eliminated, found on a Fibonacci grid of `num_directions` directions using at most
    `max_samples` evenly strided samples. cameras (N, 2, 3), residual (N, 2, K) -> D (3, K).
    """
    stride = max(1, cameras.shape[0] // max_samples)
    cameras, residual = cameras[::stride], residual[::stride]
    index = torch.arange(num_directions, dtype=cameras.dtype, device=cameras.device) + 0.5
    height = index / num_directions
    azimuth = math.pi * (1 + math.sqrt(5)) * index
    radius = (1 - height.square()).sqrt()
    grid = torch.stack((radius * torch.cos(azimuth), radius * torch.sin(azimuth), height), -1)  # (G, 3)
    projected = torch.einsum("nca,ga->ngc", cameras, grid)  # (N, G, 2)
    explained = torch.einsum("ngc,nck->ngk", projected, residual).square()
    score = (explained / projected.square().sum(-1, keepdim=True).clamp_min(1e-30)).sum(0)  # (G, K)
    return grid[score.argmax(0)].T.contiguous()


def _solve_cameras(factors: _Factors, reduced: torch.Tensor, camera_penalty: float = 0.0) -> torch.Tensor:
    """M_n = argmin |Y_n - M S_n|^2 + mu_n |M - C_n|^2: (N, 2, 3), 3x3 inverses in closed form.

    C_n is the scaled-orthographic camera nearest to the current M_n and mu_n = camera_penalty *
    |S_n|^2 / 3 (see `_objective`); camera_penalty = 0 gives the plain affine least squares
    M_n = Y_n S_n^T (S_n S_n^T)^-1.
    """
    shapes = factors.shapes()
    gram = shapes @ shapes.transpose(1, 2)
    rhs = reduced @ shapes.transpose(1, 2)
    if camera_penalty > 0:
        weight = _penalty_weights(shapes, camera_penalty)[:, None, None]
        rhs = rhs + weight * nearest_scaled_orthographic(factors.cameras)
        gram = gram + weight * torch.eye(3, dtype=gram.dtype, device=gram.device)
    return rhs @ inverse_3x3(gram)


def _penalty_weights(shapes: torch.Tensor, camera_penalty: float) -> torch.Tensor:
    """mu_n = camera_penalty * |S_n|^2 / 3: (N, 3, r) -> (N,). A camera change dM costs about
    |dM|^2 |S_n|^2 / 3 of reprojection error, so camera_penalty is relative to that."""
    return camera_penalty * shapes.square().sum((1, 2)) / 3


def _objective(factors: _Factors, reduced: torch.Tensor, camera_penalty: float) -> torch.Tensor:
    """What the refinement minimises: squared reprojection error + sum_n mu_n |M_n - C_n|^2, the
    distance of every camera from the nearest scaled-orthographic camera (zero penalty: the error)."""
    error = factors.squared_error(reduced)
    if camera_penalty <= 0:
        return error
    distance = (factors.cameras - nearest_scaled_orthographic(factors.cameras)).square().sum((1, 2))
    return error + (_penalty_weights(factors.shapes(), camera_penalty) * distance).sum()


def _solve_alpha(factors: _Factors, reduced: torch.Tensor) -> torch.Tensor:
    """One Gauss-Seidel sweep over k of exact per-coordinate minimisation for alpha: (N, K).

    Each update alpha_nk += u_nk^T R_n F_k^T / (|u_nk|^2 |F_k|^2), u_nk = M_n d_k, R_n the current
    residual; exact when the b_k are orthonormal and never increases the error otherwise. The
    residual is tracked through its projections R_n F^T (N, 2, K).
    """
    projected = factors.cameras @ factors.directions  # (N, 2, K)
    residual = reduced - factors.cameras @ factors.shapes()  # (N, 2, r)
    basis_gram = factors.basis_rows @ factors.basis_rows.T  # (K, K)
    residual_on_basis = residual @ factors.basis_rows.T  # (N, 2, K)
    denominators = (projected.square().sum(1) * basis_gram.diagonal()).clamp_min(1e-30)  # (N, K)
    alpha = factors.alpha.clone()
    for k in range(alpha.shape[1]):
        step = (projected[..., k] * residual_on_basis[..., k]).sum(-1) / denominators[:, k]
        alpha[:, k] += step
        residual_on_basis -= (step[:, None] * projected[..., k])[..., None] * basis_gram[k]
    return alpha


def _solve_rows(factors: _Factors, reduced: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """B0 and b_k rows (E (3, r), F (K, r)) jointly given cameras, D and alpha: one shared solve."""
    projected = factors.cameras @ factors.directions  # (N, 2, K)
    design = torch.cat((factors.cameras, factors.alpha[:, None, :] * projected), -1).flatten(0, 1)  # (2N, 3 + K)
    solution = torch.linalg.solve(design.T @ design, design.T @ reduced.flatten(0, 1))
    return solution[:3], solution[3:]


def _solve_directions(factors: _Factors, reduced: torch.Tensor) -> torch.Tensor:
    """D (3, K) given cameras, B0, b and alpha: one 3K x 3K least-squares solve."""
    num_samples, num_basis = factors.alpha.shape
    camera_gram = (factors.cameras.transpose(1, 2) @ factors.cameras).reshape(num_samples, 1, 9)  # (N, 1, 9)
    weighted = (factors.alpha[:, :, None] * camera_gram).reshape(num_samples, -1)  # (N, K * 9)
    normal = (factors.alpha.T @ weighted).reshape(num_basis, num_basis, 3, 3)  # [k, l, a, b]
    basis_gram = factors.basis_rows @ factors.basis_rows.T
    normal = (normal * basis_gram[:, :, None, None]).permute(0, 2, 1, 3).reshape(3 * num_basis, 3 * num_basis)
    residual = reduced - factors.cameras @ factors.mean_rows
    lifted = factors.cameras.transpose(1, 2) @ (residual @ factors.basis_rows.T)  # (N, 3, K)
    rhs = (lifted * factors.alpha[:, None, :]).sum(0).T  # (K, 3)
    solution = torch.linalg.solve(normal, rhs.reshape(-1))
    return solution.reshape(num_basis, 3).T


def _unit_factors(factors: _Factors) -> _Factors:
    """Unit d_k and b_k rows (norms into alpha) and zero-mean alpha (mean into B0)."""
    directions, alpha = _normalised(factors.directions, factors.alpha)
    row_norms = torch.linalg.vector_norm(factors.basis_rows, dim=1).clamp_min(1e-30)
    basis_rows = factors.basis_rows / row_norms[:, None]
    alpha = alpha * row_norms
    alpha_mean = alpha.mean(0)
    mean_rows = factors.mean_rows + torch.einsum("k,ak,kr->ar", alpha_mean, directions, basis_rows)
    return _Factors(factors.cameras, mean_rows, directions, basis_rows, alpha - alpha_mean)


def _euclidean(factors: _Factors) -> _Factors:
    """Undo the drift of the free affine 3D frame: metric upgrade, then unit d_k, b_k, zero-mean alpha.

    When the upgrade is degenerate (the refined cameras no longer constrain a Euclidean frame) the
    frame is kept as it is and a warning is logged, so a refinement is not lost midway.
    """
    try:
        upgrade = metric_upgrade(factors.cameras)
    except ValueError as error:
        logger.warning("keeping the current 3D frame: %s", error)
        return _unit_factors(factors)
    return _unit_factors(_transformed(factors, torch.linalg.inv(upgrade)))


def _transformed(factors: _Factors, transform: torch.Tensor) -> _Factors:
    """Apply an invertible 3x3 change of 3D frame: shapes -> T shapes, cameras -> M T^-1."""
    return _Factors(
        cameras=torch.linalg.solve(transform.T, factors.cameras.transpose(1, 2)).transpose(1, 2),
        mean_rows=transform @ factors.mean_rows,
        directions=transform @ factors.directions,
        basis_rows=factors.basis_rows,
        alpha=factors.alpha,
    )


def _fix_gauges(factors: _Factors, rows: torch.Tensor, nose_index: int | None, mirror_rule: str = "nose") -> _Factors:
    """Euclidean frame, zero-mean alpha, facing frame, nose toward camera, unit mean scale, signs."""
    factors = _euclidean(factors)
    _, rotation = camera_to_intrinsics_rotation(factors.cameras)
    factors = _transformed(factors, nearest_rotation(rotation.sum(0)))
    mean_shape = (factors.mean_rows @ rows).T
    if not (faces_camera(mean_shape, nose_index) if mirror_rule == "nose" else generic_mirror_rule(mean_shape)):
        mirror = torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=rows.dtype, device=rows.device))
        factors = _transformed(factors, mirror)
    intrinsics, _ = camera_to_intrinsics_rotation(factors.cameras)
    scale = (intrinsics[:, 0, 0] + intrinsics[:, 1, 1]).mean() / 2
    factors = _transformed(factors, scale * torch.eye(3, dtype=rows.dtype, device=rows.device))
    factors = _unit_factors(factors)
    basis = factors.basis_rows @ rows
    basis_sign = _sign_of_largest(basis, dim=1)
    direction_sign = _sign_of_largest(factors.directions, dim=0)
    return _Factors(
        factors.cameras,
        factors.mean_rows,
        factors.directions * direction_sign,
        factors.basis_rows * basis_sign[:, None],
        factors.alpha * basis_sign * direction_sign,
    )


def _sign_of_largest(values: torch.Tensor, dim: int) -> torch.Tensor:
    """+1/-1 per slice along `dim`: the sign of its largest-magnitude entry."""
    index = values.abs().argmax(dim, keepdim=True)
    sign = torch.sign(values.gather(dim, index)).squeeze(dim)
    return torch.where(sign == 0, torch.ones_like(sign), sign)
