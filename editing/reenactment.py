"""Re-enactment: per-frame targets from a driving face's q, and the per-frame edits of one target face.

q is (T, 8 + K) per frame as in `nrsfm.model.AttributeLayout`. ``parts`` picks what the driver gives:
``pose`` (pitch, yaw, roll), ``expression`` (every alpha) or ``both``; every other entry of q stays the
target's own. ``mode``:
- ``absolute``: the target takes the driver's values in each frame (the driver's pose and expression);
- ``relative``: the target takes its own values plus the driver's change since the first frame
  (puppeteering: the target keeps its own pose and expression at the start, and the driver's
  face shape, which the alphas also carry, does not move onto it).

How the target's latents follow the frames (`ClipEditor`, ``trajectory`` in conf/reenact.yaml):
- ``joint`` (default): every frame's latent at once by damped Gauss-Newton steps with a
  second-difference penalty on the latents over time (`editing.reenact_trajectory.joint_edit`): the
  first step is the linearisation at the target face, the later ones refine all frames jointly. The
  result is as smooth over time as the penalty asks, where per-frame edits of a piecewise-linear phi jump.
- ``frames``: `edit_frames`, the configured editor (``edit=linear|gradient``) frame by frame.

`edit_frames` runs the configured editor through `editing.session.apply_editor` twice per frame, each
time on all frames at once (in batches of `batch_size` only to bound memory): first from the target
face, then warm-started from the first pass's result of the frame before it (frame 0 from its own).
Both starts change smoothly from frame to frame, so the results do; starting each batch from the
last result of the batch before would change the start in steps at batch borders, and the rendered
face jumps there (the editor's result depends on its start along directions phi does not see).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn

from common.cli import build
from common.errors import UserError
from common.shapes import check_shape
from editing.attributes import EditTarget, transfer_target
from editing.reenact_trajectory import joint_edit
from editing.session import apply_editor, editable_rows, latent_metric
from nrsfm.model import NRSfMModel

PARTS = {"pose": ["rotation"], "expression": ["expression"], "both": ["rotation", "expression"]}
MODES = ("absolute", "relative")
METHODS = ("joint", "frames")


@dataclass(frozen=True)
class ClipEditor:
    """How the frames are edited: ``method`` joint or frames (module docstring); for joint, ``num_steps``
    Gauss-Newton steps of Tikhonov ``damping`` (> 0, standardised units of q) with the second-difference
    penalty weight ``smoothness`` (>= 0) on the latents over time."""

    method: str = "joint"
    num_steps: int = 4
    damping: float = 0.2
    smoothness: float = 0.0

    def __post_init__(self):
        if self.method not in METHODS:
            raise UserError(f"trajectory.method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if not (self.num_steps >= 1 and self.damping > 0 and self.smoothness >= 0):
            raise UserError(
                "trajectory needs num_steps >= 1, damping > 0 and smoothness >= 0, got "
                f"{self.num_steps}, {self.damping} and {self.smoothness}"
            )

    def describe(self) -> str:
        """The method and its settings in words, for reports and file metadata."""
        if self.method == "frames":
            return "each frame by the configured editor, two warm-started passes"
        return (
            f"all frames jointly: {self.num_steps} Gauss-Newton steps from the target face, damping {self.damping}, "
            f"second-difference penalty {self.smoothness} on the latents"
        )

    def __call__(
        self,
        cfg: DictConfig,
        generator: nn.Module,
        regressor: nn.Module,
        latent_target: torch.Tensor,
        target: EditTarget,
        batch_size: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Edit latent_target (1, *S) toward every frame of `target` (q (T, D)): latents (T, *S) and their phi (T, D)."""
        if self.method == "frames":
            return edit_frames(cfg, generator, regressor, latent_target, target, batch_size)
        check_shape(latent_target, (1, *regressor.latent_shape), "target latent")
        result = joint_edit(
            regressor,
            latent_target.to(regressor.nrsfm.q_mean.dtype),
            target,
            num_steps=self.num_steps,
            damping=self.damping,
            smoothness=self.smoothness,
            metric=latent_metric(cfg, generator),
            rows=editable_rows(cfg),
            batch_size=batch_size,
        )
        if not torch.isfinite(result.latent).all():
            raise UserError("the joint edit diverged (non-finite latents); raise trajectory.damping")
        return result.latent, result.q


def reenact_target(
    q_target: torch.Tensor,
    q_driving: torch.Tensor,
    parts: str,
    mode: str,
    model: NRSfMModel,
    *,
    free: list[str] | tuple[str, ...] = (),
    strict: bool = False,
    num_std: float = 3.0,
) -> EditTarget:
    """Per-frame EditTarget: q_target (1, D) the target face, q_driving (T, D) the driver per frame
    (no NaN) -> q (T, D) as the module docstring says, clamped to the training range (`strict`: refused);
    the entries named in `free` (e.g. camera, translation) are left to the editor instead of held."""
    if parts not in PARTS:
        raise UserError(f"parts must be one of {', '.join(PARTS)}, got {parts!r}")
    if mode not in MODES:
        raise UserError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    check_shape(q_target, (1, model.layout.dim), "q_target")
    check_shape(q_driving, ("T", model.layout.dim), "q_driving")
    source = q_driving if mode == "absolute" else q_target + (q_driving - q_driving[:1])
    destination = q_target.expand(len(q_driving), -1)
    return transfer_target(
        source.to(q_target), destination, PARTS[parts], model, free=free, strict=strict, num_std=num_std
    )


def edit_frames(
    cfg: DictConfig,
    generator: nn.Module,
    regressor: nn.Module,
    latent_target: torch.Tensor,
    target: EditTarget,
    batch_size: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Edit latent_target (1, *S) toward every frame of `target` (q (T, D)): latents (T, *S) and their phi (T, D).

    Two passes as in the module docstring; an editor that takes a ``start`` (gradient) keeps
    latent_target as its reference (its identity term) and starts there, the linear editor steps from the start.
    """
    if batch_size < 1:
        raise UserError(f"batch_size must be at least 1, got {batch_size}")
    check_shape(latent_target, (1, *regressor.latent_shape), "target latent")
    parameters = inspect.signature(instantiate(cfg.edit)).parameters
    metric = latent_metric(cfg, generator)
    identity = (
        build(cfg.identity, "identity network")
        if "identity" in parameters and float(cfg.edit.get("lambda_id", 0)) > 0
        else None
    )
    latent_target = latent_target.to(regressor.nrsfm.q_mean.dtype)
    num_frames = len(target.q)

    def edit_from(starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        latents, qs = [], []
        for first in range(0, num_frames, batch_size):
            rows = slice(first, first + batch_size)
            chunk = EditTarget(target.q[rows], target.mask, target.constrained)
            begin = starts[rows].clone()
            if "start" in parameters:
                result = apply_editor(
                    cfg,
                    generator,
                    regressor,
                    latent_target.expand_as(begin),
                    chunk,
                    metric=metric,
                    identity=identity,
                    start=begin,
                )
            else:
                result = apply_editor(cfg, generator, regressor, begin, chunk, metric=metric)
            if not torch.isfinite(result.latent).all():
                raise UserError(
                    "an edit diverged (non-finite latents); add damping (edit.damping=...) or smooth the driver more"
                )
            latents.append(result.latent.detach())
            qs.append(result.q.detach())
        return torch.cat(latents), torch.cat(qs)

    first_pass, _ = edit_from(latent_target.expand(num_frames, *latent_target.shape[1:]))
    return edit_from(torch.cat([first_pass[:1], first_pass[:-1]]))
