"""Linear (Jacobian) editing: w = w0 + J^+ (q - q0), repeated a few times as Newton steps.

Shapes: a latent is (B, *S) with S = (z_dim,), (w_dim,) or (num_ws, w_dim) (W+ is flattened to
P = num_ws * w_dim internally); q is (B, D) with D = 8 + K.

Each step solves, per sample and in standardised units of q (divided by `model.q_std`, so degrees
and alphas weigh alike), for the smallest latent step dw with J_c dw = r_c, where c are the
constrained rows of q (the entries the edit sets, pulled to their targets, and the entries held at
q0, pulled back to q0) and r the residual q_target - phi(w). With damping lambda > 0 the step is the
Tikhonov one, J_c^T (J_c J_c^T + lambda I)^-1 r_c. J comes from `torch.func.jacrev` vmapped over
the batch, so many faces are edited at once. With a `metric` S (the square root of the latent
covariance, `editing.latent_prior`) the step is measured in standard deviations of the latent
distribution instead of raw units: dw = S u with u the minimum-norm step of J S.

With ``hold_background`` the image's background colours (`editing.background.background_colours` of
G(w), through the generator) join the held rows, each in units of ``background_tolerance``: phi does
not see the background, so without them the step is free to recolour it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import jacrev, vmap

from common.shapes import check_finite, check_shape
from editing.attributes import EditTarget
from editing.background import background_colours
from editing.latents import row_mask


@dataclass
class LinearEdit:
    """Result of `linear_edit`.

    Attributes:
        latent: (B, *S) edited latents.
        q: (B, D) phi(latent), the attributes the regressor sees in the edit.
        error: (num_steps + 1, B) root mean square of the standardised residual on the constrained
            rows, before the first step and after each step.
    """

    latent: torch.Tensor
    q: torch.Tensor
    error: torch.Tensor


def latent_jacobian(regressor: nn.Module, latent: torch.Tensor) -> torch.Tensor:
    """Per-sample Jacobian of q = phi(latent) with respect to the flattened latent.

    Args:
        regressor: maps (B, *S) latents to (B, D) attributes.
        latent: (B, *S).
    Returns:
        (B, D, P) with P = prod(S).
    """
    return vmap(jacrev(_single_sample(regressor, latent.shape[1:])))(latent.flatten(1))


def linear_edit(
    regressor: nn.Module,
    latent0: torch.Tensor,
    target: EditTarget,
    *,
    num_steps: int = 3,
    damping: float = 0.0,
    metric: torch.Tensor | None = None,
    rows: Sequence[int] | None = None,
    generator: nn.Module | None = None,
    hold_background: bool = False,
    background_tolerance: float = 0.01,
) -> LinearEdit:
    """Move latents so that phi(latent) reaches `target` on its constrained rows.

    Args:
        regressor: an AttributeRegressor (``forward(latent) -> q (B, D)``, attribute ``nrsfm``).
        latent0: (B, *S) latents of the faces to edit.
        target: EditTarget with q (B, D) and constrained (D,).
        num_steps: Newton-style repeats (1 is the paper's single linear step).
        damping: Tikhonov lambda >= 0 in standardised units; 0 is the Moore-Penrose pseudo-inverse.
        metric: (d, d) symmetric S acting on the latent's last dimension d (on every row of a W+
            latent alike), or None for raw units.
        rows: W+ only: the rows of ws the step may change (`editing.latents.row_mask`); None: all.
        generator: the `Generator` of the latents; needed for ``hold_background``.
        hold_background: also hold the background colours of G(latent) at those of G(latent0).
        background_tolerance: the colour change (in [0, 1] units) that weighs as much as one std of q.
    Returns:
        LinearEdit with the edited latents (B, *S), their q (B, D) and the error history.
    """
    if latent0.dim() < 2:
        raise ValueError(f"latent0 must have shape (B, *S) with a batch dimension, got {tuple(latent0.shape)}")
    check_shape(target.q, (latent0.shape[0], regressor.nrsfm.layout.dim), "target q")
    check_finite(latent0, "latent0")
    if num_steps < 1:
        raise ValueError(f"num_steps must be at least 1, got {num_steps}")
    if not damping >= 0:
        raise ValueError(f"damping must be >= 0, got {damping}")
    if metric is not None:
        check_shape(metric, (latent0.shape[-1], latent0.shape[-1]), "latent metric")
        check_finite(metric, "latent metric")
    if hold_background and generator is None:
        raise ValueError("hold_background needs the generator; pass it or set hold_background=false")
    if not background_tolerance > 0:
        raise ValueError(f"background_tolerance must be positive, got {background_tolerance}")
    background = _BackgroundRows(generator, regressor.latent_space, background_tolerance) if hold_background else None
    editable = row_mask(latent0, rows)
    editable = editable.expand_as(latent0[:1]).flatten() if editable is not None else 1.0
    constrained = target.constrained.nonzero().flatten().to(latent0.device)
    scale = regressor.nrsfm.q_std.to(latent0)[constrained]
    goal = target.q.to(latent0)[:, constrained]
    latent = latent0.detach().flatten(1)
    background0 = background.values(latent0) if background is not None else None
    with torch.no_grad():
        errors = []
        for _ in range(num_steps):
            q = regressor(latent.view_as(latent0))
            residual = (goal - q[:, constrained]) / scale
            errors.append(_rms(residual))
            jacobian = latent_jacobian(regressor, latent.view_as(latent0))[:, constrained] / scale[:, None]
            if background is not None:
                values, rows_jacobian = background.linearised(latent.view_as(latent0))
                jacobian = torch.cat([jacobian, rows_jacobian.to(jacobian)], 1)
                residual = torch.cat([residual, ((background0 - values) / background.tolerance).to(residual)], 1)
            latent = latent + _metric_step(jacobian * editable, residual, damping, metric)
        q = regressor(latent.view_as(latent0))
        errors.append(_rms((goal - q[:, constrained]) / scale))
    return LinearEdit(latent.view_as(latent0), q, torch.stack(errors))


def minimum_norm_step(
    jacobian: torch.Tensor, residual: torch.Tensor, damping: float = 0.0, metric: torch.Tensor | None = None
) -> torch.Tensor:
    """The step `linear_edit` takes from a Jacobian it already has: (B, C, P) J of the constrained,
    standardised rows and (B, C) residual -> (B, P) latent step (damped, in the `metric` when given)."""
    return _metric_step(jacobian, residual, damping, metric)


def _metric_step(
    jacobian: torch.Tensor, residual: torch.Tensor, damping: float, metric: torch.Tensor | None
) -> torch.Tensor:
    """(B, C, P), (B, C) -> (B, P): the damped minimum-norm step, in whitened coordinates S u when
    `metric` S (d, d) is given (P a multiple of d; S applied to every d-block)."""
    if metric is None:
        return _minimum_norm_step(jacobian, residual, damping)
    metric = metric.to(jacobian)
    whitened = (jacobian.unflatten(-1, (-1, metric.shape[0])) @ metric).flatten(-2)
    step = _minimum_norm_step(whitened, residual, damping)
    return (step.unflatten(-1, (-1, metric.shape[0])) @ metric).flatten(-2)


def _minimum_norm_step(jacobian: torch.Tensor, residual: torch.Tensor, damping: float) -> torch.Tensor:
    """(B, C, P) and (B, C) -> (B, P): J^T (J J^T + lambda I)^+ r, which is J^+ r when lambda = 0.

    Works through the small (C, C) Gram matrix in float64 (J^+ = J^T (J J^T)^+ holds for any J), which
    is far faster than an SVD of J and keeps rank-deficient rows harmless.
    """
    jacobian64 = jacobian.double()
    gram = jacobian64 @ jacobian64.transpose(-1, -2)
    gram = gram + damping * torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    step = jacobian64.transpose(-1, -2) @ (torch.linalg.pinv(gram, hermitian=True) @ residual.double()[..., None])
    return step[..., 0].to(jacobian.dtype)


def _single_sample(regressor: nn.Module, sample_shape: torch.Size) -> Callable[[torch.Tensor], torch.Tensor]:
    """(P,) flattened latent -> (D,) q, for jacrev."""

    def regress(flat_latent: torch.Tensor) -> torch.Tensor:
        return regressor(flat_latent.view(1, *sample_shape))[0]

    return regress


class _BackgroundRows:
    """The background colours of G(latent) as extra rows of the linear system, in tolerance units."""

    def __init__(self, generator: nn.Module, latent_space: str, tolerance: float):
        self.generator, self.latent_space, self.tolerance = generator, latent_space, tolerance

    def values(self, latent: torch.Tensor) -> torch.Tensor:
        """(B, *S) -> (B, 6) background colours, without gradients."""
        with torch.no_grad():
            return self._colours(latent)

    def linearised(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, *S) -> colours (B, 6) and their Jacobian (B, 6, P) divided by the tolerance; one backward
        pass per colour (faces are independent, so the batch sum's gradient is every face's own)."""
        with torch.enable_grad():
            point = latent.detach().clone().requires_grad_(True)
            colours = self._colours(point)
            rows = [
                torch.autograd.grad(colours[:, i].sum(), point, retain_graph=i + 1 < colours.shape[1])[0].flatten(1)
                for i in range(colours.shape[1])
            ]
        return colours.detach(), torch.stack(rows, 1) / self.tolerance

    def _colours(self, latent: torch.Tensor) -> torch.Tensor:
        ws = self.generator.to_ws(latent.to(self.generator.w_avg.dtype), self.latent_space)
        return background_colours(self.generator.synthesis(ws)).to(latent.dtype)


def _rms(residual: torch.Tensor) -> torch.Tensor:
    return residual.square().mean(-1).sqrt()
