"""Gradient editing: minimise, per face, over its latent w

    || (phi(w) - q_target) * weights ||^2 + lambda_id * D(G(w), G(w0)) + lambda_latent * mean((w - w0)^2)

with Adam. D is `IdentityNetwork.distance` (1 - cos) of the identity embeddings, so gradients
pass through the generator G and the identity network. `weights` (D,) default to
``constrained / q_std``: the constrained rows in standardised units, free rows weighted 0.

Shapes: latents (B, *S) in the regressor's latent space (z, w or w+); q (B, D) with D = 8 + K.
The per-face losses are summed over the batch before the gradient step, and Adam works entry by
entry, so each face is optimised as if alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from common.shapes import check_finite, check_shape
from editing.attributes import EditTarget
from editing.latents import row_mask


@dataclass
class GradientEdit:
    """Result of `gradient_edit`.

    Attributes:
        latent: (B, *S) edited latents.
        q: (B, D) phi(latent).
        losses: per term ("attribute", "identity", "latent", "total") a (num_steps,) curve, the batch
            mean at each step before its update.
    """

    latent: torch.Tensor
    q: torch.Tensor
    losses: dict[str, torch.Tensor]


def default_weights(target: EditTarget, regressor: nn.Module) -> torch.Tensor:
    """(D,) weights: 1 / q_std on the constrained rows of `target`, 0 on free rows."""
    return target.constrained.to(regressor.nrsfm.q_std) / regressor.nrsfm.q_std


def gradient_edit(
    regressor: nn.Module,
    latent0: torch.Tensor,
    target: EditTarget,
    *,
    generator: nn.Module | None = None,
    identity: nn.Module | None = None,
    num_steps: int = 100,
    learning_rate: float = 0.01,
    lambda_id: float = 0.01,
    lambda_latent: float = 0.0,
    weights: torch.Tensor | None = None,
    start: torch.Tensor | None = None,
    rows: Sequence[int] | None = None,
) -> GradientEdit:
    """Optimise latents toward `target` while keeping identity (and optionally the latent) close.

    Args:
        regressor: an AttributeRegressor (``latent_space``, ``nrsfm``, ``forward(latent) -> (B, D)``).
        latent0: (B, *S) latents of the faces to edit.
        target: EditTarget with q (B, D) and constrained (D,).
        generator: a `Generator`; needed when lambda_id > 0.
        identity: an `IdentityNetwork` (``embed(images) -> (B, E)`` unit rows); needed when lambda_id > 0.
            One with ``embedding_dim == 0`` (``identity=none``) switches the identity term off.
        num_steps, learning_rate: Adam schedule.
        lambda_id, lambda_latent: weights of the identity and latent-distance terms (>= 0).
        weights: (D,) per-entry weights of the attribute term; default `default_weights`.
        start: (B, *S) where the optimisation starts (e.g. a linear edit); default latent0.
        rows: W+ only: the rows of ws the optimisation may change (`editing.latents.row_mask`); None: all.
    Returns:
        GradientEdit with the edited latents, their q and the loss curves.
    """
    if latent0.dim() < 2:
        raise ValueError(f"latent0 must have shape (B, *S) with a batch dimension, got {tuple(latent0.shape)}")
    check_shape(target.q, (latent0.shape[0], regressor.nrsfm.layout.dim), "target q")
    check_finite(latent0, "latent0")
    if num_steps < 1 or not learning_rate > 0:
        raise ValueError(f"need num_steps >= 1 and learning_rate > 0, got {num_steps} and {learning_rate}")
    if not (lambda_id >= 0 and lambda_latent >= 0):
        raise ValueError(f"lambda_id and lambda_latent must be >= 0, got {lambda_id} and {lambda_latent}")
    if lambda_id > 0 and (generator is None or identity is None):
        raise ValueError("lambda_id > 0 needs a generator and an identity network; pass both or set lambda_id=0")
    if identity is not None and identity.embedding_dim == 0:
        lambda_id = 0.0  # identity=none: the term is off, so G need not run
    weights = default_weights(target, regressor) if weights is None else weights
    check_shape(weights, (regressor.nrsfm.layout.dim,), "weights")
    weights, goal = weights.to(latent0), target.q.to(latent0)
    latent0 = latent0.detach()
    editable = row_mask(latent0, rows)
    latent = (latent0 if start is None else start.detach()).clone().requires_grad_(True)
    check_shape(latent, tuple(latent0.shape), "start")
    embedding0 = _embed(generator, identity, regressor, latent0).detach() if lambda_id > 0 else None
    optimizer = torch.optim.Adam([latent], lr=learning_rate)
    curves: dict[str, list[torch.Tensor]] = {name: [] for name in ("attribute", "identity", "latent", "total")}
    for _ in range(num_steps):
        terms = {"attribute": ((regressor(latent) - goal) * weights).square().sum(-1)}
        terms["identity"] = (
            identity.distance(_embed(generator, identity, regressor, latent), embedding0)
            if embedding0 is not None
            else torch.zeros_like(terms["attribute"])
        )
        terms["latent"] = (latent - latent0).flatten(1).square().mean(-1)
        terms["total"] = terms["attribute"] + lambda_id * terms["identity"] + lambda_latent * terms["latent"]
        (latent.grad,) = torch.autograd.grad(terms["total"].sum(), latent)
        if editable is not None:
            latent.grad *= editable  # Adam moves an entry only where its gradient has been non-zero
        optimizer.step()
        for name, value in terms.items():
            curves[name].append(value.detach().mean())
    latent = latent.detach()
    with torch.no_grad():
        q = regressor(latent)
    return GradientEdit(latent, q, {name: torch.stack(values) for name, values in curves.items()})


def _embed(generator: nn.Module, identity: nn.Module, regressor: nn.Module, latent: torch.Tensor) -> torch.Tensor:
    """(B, *S) latents -> (B, E) identity embeddings of their images."""
    images = generator.synthesis(generator.to_ws(latent, regressor.latent_space))
    return identity.embed(images)
