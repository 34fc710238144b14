"""Render edits with the generator and write every output of one edit into a folder.

`write_edit_outputs(out_dir, ...)` writes (see `editing.outputs` for the formats):
- ``edited.npz``: ``w`` (N, num_ws, w_dim) the edited latents in NVIDIA's layout, ``w_original``
  (N, num_ws, w_dim), ``q_original``, ``q_target``, ``q_edit`` (N, 8 + K), ``mask`` (8 + K,) and metadata;
- ``edit.png``: per face [reference |] original | edit | edit with target landmarks (green rings;
  R(q_target), with phi(w_edit) in the entries the edit left free) and achieved landmarks (red
  dots; R(phi(w_edit)) unless the caller passes detected ones);
  the reference column shows e.g. the source faces of a transfer;
- ``trajectory.gif``: the straight latent path from the original to the edit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from backbones.generator import Generator
from editing.attributes import EditTarget
from editing.outputs import interpolate_latents, save_gif, save_latents, save_png, side_by_side


def render(
    generator: Generator, latents: torch.Tensor, latent_space: str, truncation_psi: float = 1.0, batch_size: int = 8
) -> torch.Tensor:
    """Latents (B, *S) in `latent_space` -> images (B, 3, R, R) in [-1, 1], without gradients, in chunks."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    with torch.no_grad():
        chunks = [
            generator.synthesis(generator.to_ws(chunk, latent_space, truncation_psi))
            for chunk in latents.split(batch_size)
        ]
    return torch.cat(chunks)


def write_edit_outputs(
    out_dir: str | Path,
    generator: Generator,
    regressor: nn.Module,
    latent0: torch.Tensor,
    latent: torch.Tensor,
    target: EditTarget,
    *,
    metadata: dict[str, Any] | None = None,
    truncation_psi: float = 1.0,
    num_frames: int = 16,
    achieved_landmarks: torch.Tensor | None = None,
    reference_latent: torch.Tensor | None = None,
    batch_size: int = 8,
) -> dict[str, Path]:
    """Write edited.npz, edit.png and trajectory.gif for an edit of latent0 (B, *S) to latent (B, *S).

    Args:
        target: the EditTarget the edit aimed at (q (B, 8 + K), mask (8 + K,)).
        metadata: merged into the latent file's metadata (with generator, checksum, latent space).
        num_frames: frames of the GIF, ends included; 0 skips the GIF.
        achieved_landmarks: (B, L, 2) normalised landmarks to draw as achieved (default R(phi(latent))).
        reference_latent: (B, *S) faces shown in a first column of edit.png (a transfer's sources).
    Returns:
        {"latents": path, "side_by_side": path, "trajectory": path (when written)}.
    """
    out_dir = Path(out_dir)
    space = regressor.latent_space
    with torch.no_grad():
        ws0, ws = (generator.to_ws(x, space, truncation_psi) for x in (latent0, latent))
        q0, q_edit = regressor(latent0), regressor(latent)
        target_landmarks = regressor.nrsfm(
            torch.where(target.constrained.to(q_edit.device), target.q.to(q_edit), q_edit)
        )
        achieved = regressor.nrsfm(q_edit) if achieved_landmarks is None else achieved_landmarks
    meta = {
        "generator": generator.name,
        "generator_checksum": generator.checksum(),
        "latent_space": space,
        "truncation_psi": truncation_psi,
        **(metadata or {}),
    }
    paths = {
        "latents": save_latents(
            out_dir / "edited.npz",
            ws,
            meta,
            w_original=ws0,
            q_original=q0,
            q_target=target.q,
            q_edit=q_edit,
            mask=target.mask,
        )
    }
    images0 = render(generator, latent0, space, truncation_psi, batch_size)
    images = render(generator, latent, space, truncation_psi, batch_size)
    reference = (
        None if reference_latent is None else render(generator, reference_latent, space, truncation_psi, batch_size)
    )
    paths["side_by_side"] = save_png(
        out_dir / "edit.png", side_by_side(images0, images, target_landmarks, achieved, reference)
    )
    if num_frames > 0:
        path = interpolate_latents(latent0, latent, num_frames)
        frames = render(generator, path.flatten(0, 1), space, truncation_psi, batch_size)
        paths["trajectory"] = save_gif(out_dir / "trajectory.gif", frames.view(num_frames, *images.shape))
    return paths
