"""Camera rotations of a deforming point set from its full-rank factorisation (corrective matrix).

Shapes: reduced measurements Y (N, 2, r), the 2D points of every sample projected on r
orthonormal rows of the measurement matrix (r = 3 + K for K rank-one basis shapes); cameras
(N, 2, 3).

Under an orthographic camera Y_n = M_n S_n. Factorising the stacked Y with rank r gives
Y_n = P_n V, P_n (2, r), and true cameras are P_n G for some r x 3 corrective matrix G (one of
the column triples of the corrective transform, Akhter et al. 2009; Dai, Li & He 2012). The
rows of P_n G are orthogonal and of equal norm, i.e. with Q = G G^T (r x r, positive
semi-definite, rank 3):

    p1^T Q p1 - p2^T Q p2 = 0,   p1^T Q p2 = 0      (p1, p2 the rows of P_n).

Those constraints hold for every column triple and for positive combinations of their Q, so Q
is found in two steps:
1. the convex problem  min_Q sum_n (p1^T Q p1 - p2^T Q p2)^2 + (2 p1^T Q p2)^2 + w (mean_n scale_n(Q) - 1)^2
   over positive semi-definite Q, in whitened coordinates (every column of P unit mean square),
   by accelerated projected gradient (FISTA; the projection clips negative eigenvalues);
2. its rank-3 part G refined by L-BFGS on the scale-free residual of the same constraints (plus,
   for an orthographic camera, the spread of the camera scales over the samples), because a
   combination of column triples is not itself a triple. The orthographic term picks the one
   triple whose cameras keep one scale, which exact data then determines up to a rotation.
Every P_n G is finally replaced by the nearest scaled-orthographic camera s_n [r1; r2]
(orthographic: the same s for all samples). The cameras are in an arbitrary frame (any rotation
or mirror of the truth); a fallback for degenerate input is `nrsfm.deforming.estimate_cameras`'s.
"""

from __future__ import annotations

import torch

from common.shapes import check_shape

ORTHOGRAPHIC_WEIGHT = 1.0
NORMALISATION_WEIGHT = 10.0


def corrective_cameras(
    reduced: torch.Tensor,
    orthographic: bool = True,
    num_iterations: int = 500,
    max_samples: int = 4096,
) -> torch.Tensor:
    """Scaled-orthographic cameras (N, 2, 3) from reduced measurements (N, 2, r), r >= 3.

    `orthographic` asks for one scale for all samples (module docstring), else each has its own.
    The cameras are in an arbitrary Euclidean frame (any rotation or mirror of the truth) and
    have mean square scale 1 (the 3D shapes are then in the units of `reduced`).
    """
    reduced = reduced.to(torch.float64)
    cameras = reduced @ corrective_triple(reduced, orthographic, num_iterations, max_samples)
    if orthographic:
        u, _, vh = torch.linalg.svd(cameras, full_matrices=False)
        return u @ vh
    cameras = nearest_scaled_orthographic(cameras)
    return cameras / cameras.square().sum((1, 2)).mean().div(2).sqrt()


def corrective_triple(
    reduced: torch.Tensor, orthographic: bool = True, num_iterations: int = 500, max_samples: int = 4096
) -> torch.Tensor:
    """The corrective column triple G (r, 3): cameras are reduced (N, 2, r) @ G (module docstring).

    Solved on at most `max_samples` evenly strided samples (the problem has r (r + 1) / 2 unknowns).
    """
    check_shape(reduced, ("N", 2, "r"), "reduced")
    reduced = reduced.to(torch.float64)
    reduced = reduced[:: max(1, reduced.shape[0] // max_samples)]
    column_scale = reduced.square().sum((0, 1)).div(2 * reduced.shape[0]).sqrt().clamp_min(1e-12)
    rows = reduced / column_scale  # whitened: every column has unit mean square, which conditions the problem
    values, vectors = torch.linalg.eigh(_corrective_gram(rows, num_iterations))
    triple = vectors[:, -3:] * values[-3:].clamp_min(0).sqrt()
    triple = _refined_triple(rows, triple, scale_weight=ORTHOGRAPHIC_WEIGHT if orthographic else 0.0)
    return triple / column_scale[:, None]


def _constraint_matrices(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample the symmetric matrices A_n with tr(A_n Q) the two constraints, and the scale matrix.

    rows (N, 2, r) -> constraints (2N, r, r), scale matrix (r, r) = mean_n (p1 p1^T + p2 p2^T) / 2.
    """
    p1, p2 = rows.unbind(1)
    outer11 = p1[:, :, None] * p1[:, None, :]
    outer22 = p2[:, :, None] * p2[:, None, :]
    outer12 = p1[:, :, None] * p2[:, None, :]
    constraints = torch.cat((outer11 - outer22, outer12 + outer12.transpose(1, 2)))
    return constraints, (outer11 + outer22).mean(0) / 2


def _corrective_gram(rows: torch.Tensor, num_iterations: int) -> torch.Tensor:
    """Q (r, r) positive semi-definite solving the convex problem of the module docstring by FISTA."""
    constraints, scale = _constraint_matrices(rows)
    num_rows = rows.shape[-1]
    design = torch.cat((constraints.flatten(1), NORMALISATION_WEIGHT**0.5 * scale.reshape(1, -1)))  # (2N + 1, r^2)
    target = torch.zeros(design.shape[0], dtype=rows.dtype, device=rows.device)
    target[-1] = NORMALISATION_WEIGHT**0.5
    normal = design.T @ design
    rhs = design.T @ target
    lipschitz = 2 * torch.linalg.eigvalsh(normal)[-1]
    eye = torch.eye(num_rows, dtype=rows.dtype, device=rows.device)
    gram_q = eye / torch.trace(scale)
    momentum, step_size = gram_q.clone(), 1.0
    for _ in range(num_iterations):
        gradient = (2 * (normal @ momentum.reshape(-1) - rhs)).reshape(num_rows, num_rows)
        updated = _nearest_psd(momentum - gradient / lipschitz)
        next_step = (1 + (1 + 4 * step_size**2) ** 0.5) / 2
        momentum = updated + (step_size - 1) / next_step * (updated - gram_q)
        gram_q, step_size = updated, next_step
    return gram_q


def _nearest_psd(matrix: torch.Tensor) -> torch.Tensor:
    """Symmetric part of (r, r) `matrix` with negative eigenvalues set to zero."""
    values, vectors = torch.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * values.clamp_min(0)) @ vectors.T


def nearest_scaled_orthographic(cameras: torch.Tensor) -> torch.Tensor:
    """The nearest s [r1; r2] (r1, r2 orthonormal, s >= 0) to every camera in the Frobenius norm:
    (N, 2, 3) -> (N, 2, 3). With M = U diag(s1, s2) V^T it is (s1 + s2) / 2 U V^T."""
    u, singular, vh = torch.linalg.svd(cameras, full_matrices=False)
    return singular.mean(-1)[:, None, None] * (u @ vh)


def _refined_triple(
    rows: torch.Tensor, triple: torch.Tensor, max_iterations: int = 300, scale_weight: float = 0.0
) -> torch.Tensor:
    """The rank-3 corrective G (r, 3) refined by L-BFGS on the scale-free orthonormality residual

        sum_n (|p1 G|^2 - |p2 G|^2)^2 + 4 (p1 G . p2 G)^2  /  sum_n (|p1 G|^2 + |p2 G|^2)^2

    from the convex solution's rank-3 part (which only approximates a rank-3 optimum)."""
    variable = triple.detach().clone().contiguous().requires_grad_(True)
    optimiser = torch.optim.LBFGS(
        [variable], max_iter=max_iterations, line_search_fn="strong_wolfe", tolerance_grad=1e-14, tolerance_change=1e-16
    )

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        first, second = rows[:, 0] @ variable, rows[:, 1] @ variable
        norm1, norm2, cross = first.square().sum(-1), second.square().sum(-1), (first * second).sum(-1)
        total = norm1 + norm2
        spread = (total - total.mean()).square()
        loss = ((norm1 - norm2).square() + 4 * cross.square() + scale_weight * spread).sum() / total.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimiser.step(closure)
    return variable.detach()
