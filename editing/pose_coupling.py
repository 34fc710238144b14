"""Let the alphas an edit holds follow the head's turn the way they do in the data.

On detected landmarks some alphas move with the pose: the jaw contour slides as the head turns,
and the rank-one basis explains part of that as deformation, so some alphas follow phi's yaw over
the training faces. Holding such an
alpha at q0 while the yaw changes asks for a face the data do not contain, and the editor finds one
only where phi was never trained. With ``hold_alpha=coupled`` a held alpha keeps its pose-independent
part instead: alpha_target = alpha0 + (theta_target - theta0) A, with A (3, K) the least-squares
slopes of alpha on the angles over the training faces (phi of the sampling stage's seeds).
Its measured effect: docs/RESULTS.md, "Edit accuracy".
"""

from __future__ import annotations

from dataclasses import replace

import torch

from common.shapes import check_finite, check_shape
from editing.attributes import EditTarget
from nrsfm.model import AttributeLayout


def pose_coupling(q: torch.Tensor, layout: AttributeLayout) -> torch.Tensor:
    """A (3, K): the least-squares slopes of every alpha on (pitch, yaw, roll) in radians over q (N, 8 + K)."""
    check_shape(q, ("N", layout.dim), "attribute sample")
    check_finite(q, "attribute sample")
    angles = q[:, layout.rotation].double()
    if len(q) <= angles.shape[1] + 1:
        raise ValueError(f"need more than 4 attribute vectors to fit the pose coupling, got {len(q)}")
    design = torch.cat([angles - angles.mean(0), torch.ones_like(angles[:, :1])], 1)
    return torch.linalg.lstsq(design, q[:, layout.alpha].double()).solution[:3]


def couple_held_alpha(
    target: EditTarget, q0: torch.Tensor, coupling: torch.Tensor, layout: AttributeLayout
) -> EditTarget:
    """`target` with every held alpha (constrained, not set by the edit) moved by the rotation change
    times `coupling` (3, K); q0 and target.q are (B, 8 + K). Alphas the edit sets or frees are kept."""
    check_shape(coupling, (3, layout.num_basis), "pose coupling")
    held = (target.constrained & ~target.mask)[layout.alpha]  # (K,)
    if not held.any():
        return target
    turn = target.q[:, layout.rotation] - q0.to(target.q)[:, layout.rotation]  # (B, 3)
    shift = turn.double() @ coupling.to(device=turn.device, dtype=torch.float64)  # (B, K)
    q = target.q.clone()
    q[:, layout.alpha] += (shift * held.to(shift)).to(q)
    return replace(target, q=q)
