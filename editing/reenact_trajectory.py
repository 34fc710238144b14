"""Joint edits of a clip: every frame's latent of the target face at once, smooth over time.

Per-frame edits of a piecewise-linear phi (a ReLU ensemble) jump from frame to frame: each frame's
Gauss-Newton step changes abruptly where its activation pattern does, so the rendered pose jitters
although the per-frame targets are smooth. `joint_edit` solves for all T latents together:

    minimise over u (T, P)   sum_t || (q_t - phi(w_t))_c / s_c ||^2  +  smoothness * sum_t || u_{t+1} - 2 u_t + u_{t-1} ||^2

with w_t = w0 + S u_t (w0 the target face, S the latent metric applied to every row of a W+
latent, the identity in raw units), c the constrained entries of q and s their training std (the
linear editor's standardised units, `editing.linear`). Each of `num_steps` damped Gauss-Newton steps
solves, with J_t the Jacobian of the standardised constrained rows at frame t and L = D2^T D2 the
second-difference penalty over time,

    (blockdiag(J_t^T J_t) + damping I + smoothness L) du = J^T r - smoothness L u

by conjugate gradients, preconditioned by the same system with every J_t replaced by their mean:
in that mean's right singular directions it splits into one pentadiagonal system over time per
direction, solved exactly. The first step starts with every frame at the target face, where every
J_t is the target's, so it is exact: the linearisation at the target, w_t = w0 + S du_t with du the
damped minimum-norm steps J^T (J J^T + damping)^-1 r_t of all frames smoothed together (a Whittaker
smoother whose cut-off falls where smoothness * frequency^4 meets J's squared singular values).
The later steps re-linearise at each frame's latent and refine all frames jointly, each warm-started
from the step before. Like the linear editor's, the steps stay in the span phi needs (the damped
minimum-norm step leaves the directions phi does not see where they are); with smoothness 0 each
frame takes exactly the linear editor's damped steps from the target face.

Shapes: latents (T, *S) with S = (w_dim,) or (num_ws, w_dim), flattened to P = prod(S); q (T, D).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from scipy.linalg import cho_solve_banded, cholesky_banded
from torch import nn

from common.shapes import check_finite, check_shape
from editing.attributes import EditTarget
from editing.latents import row_mask
from editing.linear import LinearEdit, latent_jacobian


def second_difference_bands(num_frames: int) -> np.ndarray:
    """L = D2^T D2 (T, T) of the second differences over `num_frames` frames, in the upper banded form of
    `scipy.linalg.cholesky_banded`: (3, T), row 2 the diagonal, row 1 the first and row 0 the second super-diagonal."""
    bands = np.zeros((3, num_frames))
    weights = (1.0, -2.0, 1.0)
    rows = np.arange(max(num_frames - 2, 0))
    for i in range(3):
        for j in range(i, 3):  # row t of D2 touches frames t + i and t + j: entry (t + i, t + j), band j - i
            np.add.at(bands[2 - (j - i)], rows + j, weights[i] * weights[j])
    return bands


def second_difference_penalty(values: torch.Tensor) -> torch.Tensor:
    """L x = D2^T D2 x for a series x (T, P) along time: (T, P); zero for T < 3."""
    out = torch.zeros_like(values)
    if len(values) < 3:
        return out
    second = values[2:] - 2 * values[1:-1] + values[:-2]
    out[:-2] += second
    out[1:-1] -= 2 * second
    out[2:] += second
    return out


class TemporalPreconditioner:
    """Solves (I_T (x) J^T J + damping I + smoothness L (x) I_P) x = b exactly for one shared J (C, P):
    one pentadiagonal system over time per right singular direction of J and one for the rest."""

    def __init__(self, jacobian: torch.Tensor, damping: float, smoothness: float, num_frames: int):
        _, singular, self.directions = torch.linalg.svd(jacobian.double(), full_matrices=False)  # (r,), (r, P)
        penalty = smoothness * second_difference_bands(num_frames)
        self.rest = cholesky_banded(_shifted(penalty, damping))
        self.along = [cholesky_banded(_shifted(penalty, damping + float(s) ** 2)) for s in singular]

    def __call__(self, values: torch.Tensor) -> torch.Tensor:
        """(T, P) -> (T, P)."""
        coefficients = values @ self.directions.T  # (T, r)
        rest = cho_solve_banded((self.rest, False), (values - coefficients @ self.directions).numpy())
        along = np.stack(
            [cho_solve_banded((factor, False), coefficients[:, k].numpy()) for k, factor in enumerate(self.along)], -1
        ).reshape(len(values), -1)
        return torch.from_numpy(rest) + torch.from_numpy(along) @ self.directions


def _shifted(bands: np.ndarray, shift: float) -> np.ndarray:
    shifted = bands.copy()
    shifted[2] += shift
    return shifted


def conjugate_gradients(
    operator: Callable[[torch.Tensor], torch.Tensor],
    rhs: torch.Tensor,
    preconditioner: Callable[[torch.Tensor], torch.Tensor],
    max_iterations: int,
    tolerance: float,
) -> torch.Tensor:
    """Preconditioned conjugate gradients for operator(x) = rhs with a symmetric positive definite
    operator on (T, P) arrays; stops when |residual| <= tolerance * |rhs| or after max_iterations."""
    solution = torch.zeros_like(rhs)
    residual = rhs.clone()
    goal = tolerance * float(rhs.norm())
    preconditioned = preconditioner(residual)
    direction = preconditioned.clone()
    product = float((residual * preconditioned).sum())
    for _ in range(max_iterations):
        if float(residual.norm()) <= goal:
            break
        image = operator(direction)
        step = product / float((direction * image).sum())
        solution += step * direction
        residual -= step * image
        preconditioned = preconditioner(residual)
        product, previous = float((residual * preconditioned).sum()), product
        direction = preconditioned + (product / previous) * direction
    return solution


def joint_edit(
    regressor: nn.Module,
    latent0: torch.Tensor,
    target: EditTarget,
    *,
    num_steps: int = 4,
    damping: float = 0.2,
    smoothness: float = 0.0,
    metric: torch.Tensor | None = None,
    rows: Sequence[int] | None = None,
    batch_size: int = 64,
    max_iterations: int = 200,
    tolerance: float = 1e-6,
) -> LinearEdit:
    """Edit one face latent0 (1, *S) toward every frame of `target` (q (T, D)) at once, as the module docstring says.

    Args:
        regressor: an AttributeRegressor (``forward(latent) -> q (B, D)``, attribute ``nrsfm``).
        num_steps: Gauss-Newton steps (1: the linearisation at the target face only).
        damping: Tikhonov lambda > 0 of each step in standardised units of q (as `editing.linear.linear_edit`).
        smoothness: weight >= 0 of the second-difference penalty on the latents over time (latent units).
        metric: (d, d) symmetric S on the latent's last dimension, or None for raw units.
        rows: W+ only: the rows of ws the edit may change (`editing.latents.row_mask`); None: all.
        batch_size: frames whose Jacobians are taken at once (bounds memory; results do not depend on it).
        max_iterations, tolerance: of the conjugate gradients of each step.
    Returns:
        LinearEdit with latents (T, *S), their q (T, D) and error (num_steps + 1, T), the RMS standardised
        residual on the constrained rows before the first step and after each step.
    """
    check_shape(latent0, (1, *latent0.shape[1:]), "latent0")
    check_finite(latent0, "latent0")
    num_frames = len(target.q)
    check_shape(target.q, (num_frames, regressor.nrsfm.layout.dim), "target q")
    if num_steps < 1 or batch_size < 1:
        raise ValueError(f"num_steps and batch_size must be at least 1, got {num_steps} and {batch_size}")
    if not (damping > 0 and smoothness >= 0):
        raise ValueError(f"need damping > 0 and smoothness >= 0, got {damping} and {smoothness}")
    if metric is not None:
        check_shape(metric, (latent0.shape[-1], latent0.shape[-1]), "latent metric")
        check_finite(metric, "latent metric")
    editable = row_mask(latent0, rows)
    editable = (editable.expand_as(latent0) if editable is not None else torch.ones_like(latent0)).flatten().double()
    constrained = target.constrained.nonzero().flatten().to(latent0.device)
    scale = regressor.nrsfm.q_std.to(latent0)[constrained]
    goal = target.q.to(latent0)[:, constrained]
    origin = latent0.detach().flatten(1).double()

    def in_metric(values: torch.Tensor) -> torch.Tensor:
        """(..., P) -> (..., P): S applied to every d-block (S symmetric, so also J S row by row)."""
        if metric is None:
            return values
        return (values.unflatten(-1, (-1, metric.shape[0])) @ metric.to(values)).flatten(-2)

    def latents_of(steps: torch.Tensor) -> torch.Tensor:
        return (origin + in_metric(steps) * editable).to(latent0).view(num_frames, *latent0.shape[1:])

    steps = torch.zeros(num_frames, origin.shape[1], dtype=torch.float64)
    errors = []
    with torch.no_grad():
        for _ in range(num_steps):
            latents = latents_of(steps)
            residual = ((goal - regressor(latents)[:, constrained]) / scale).double()
            errors.append(residual.square().mean(-1).sqrt())
            jacobian = torch.cat(
                [latent_jacobian(regressor, chunk)[:, constrained] for chunk in latents.split(batch_size)]
            )
            jacobian = in_metric(jacobian.double() / scale.double()[:, None] * editable)  # (T, C, P)

            def normal(values: torch.Tensor, jacobian=jacobian) -> torch.Tensor:
                projected = torch.einsum("tcp,tp->tc", jacobian, values)
                return (
                    torch.einsum("tcp,tc->tp", jacobian, projected)
                    + damping * values
                    + smoothness * second_difference_penalty(values)
                )

            rhs = torch.einsum("tcp,tc->tp", jacobian, residual) - smoothness * second_difference_penalty(steps)
            preconditioner = TemporalPreconditioner(jacobian.mean(0), damping, smoothness, num_frames)
            steps = steps + conjugate_gradients(normal, rhs, preconditioner, max_iterations, tolerance) * editable
        latents = latents_of(steps)
        q = regressor(latents)
        errors.append(((goal - q[:, constrained]) / scale).double().square().mean(-1).sqrt())
    return LinearEdit(latents, q, torch.stack(errors).to(latent0))
