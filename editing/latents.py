"""Where the faces to edit come from: seeds or latent files, expressed in the regressor's latent space.

A face is named by an integer seed (NVIDIA's convention, `Generator.z_from_seeds`), a list of seeds,
or the path of a `.npz` latent file with ``w`` (N, num_ws, w_dim) (`editing.outputs.load_latents`;
NVIDIA's ``projected_w.npz`` works). Latents come out as (B, *S) in the requested space: z (B, z_dim),
w (B, w_dim) or w+ (B, num_ws, w_dim).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from backbones.generator import Generator
from common.errors import UserError
from editing.compatibility import latent_shape_of
from editing.outputs import load_latents


def latents_from_seeds(
    generator: Generator, seeds: Sequence[int], latent_space: str, truncation_psi: float = 1.0
) -> torch.Tensor:
    """(B,) seeds -> latents (B, *S) in `latent_space` (w and w+ through the mapping network)."""
    latent_shape_of(generator, latent_space)
    if len(seeds) == 0:
        raise ValueError("no seeds given; name at least one face, e.g. seeds=[7]")
    with torch.no_grad():
        z = generator.z_from_seeds(seeds)
        if latent_space == "z":
            return z
        return generator.latent_from_ws(generator.mapping(z, truncation_psi), latent_space).clone()


def latents_from_file(generator: Generator, path: str | Path, latent_space: str) -> torch.Tensor:
    """Latent file with ``w`` (N, num_ws, w_dim) -> latents (N, *S) in "w" (first row) or "w+"."""
    ws, metadata = load_latents(path)
    made_by = metadata.get("generator")
    if made_by is not None and made_by != generator.name:
        raise UserError(
            f"{path} holds latents of generator {made_by!r}, not {generator.name!r}; give latents made with "
            f"{generator.name} (or set generator={made_by})"
        )
    checksum = metadata.get("generator_checksum")
    if checksum is not None and checksum != generator.checksum():
        raise UserError(
            f"{path} holds latents of other {generator.name} weights (checksum {checksum}, these are "
            f"{generator.checksum()}); give latents made with these weights"
        )
    expected = (generator.num_ws, generator.w_dim)
    if tuple(ws.shape[1:]) != expected:
        raise UserError(
            f"{path} holds w of shape {tuple(ws.shape)}, but {generator.name} needs (N, {expected[0]}, {expected[1]}); "
            "give latents made with this generator"
        )
    if latent_space == "z":
        raise UserError(
            f"{path} holds w latents, which have no z; use latent_space=w or w+ with a regressor for that space"
        )
    return generator.latent_from_ws(ws.to(generator.w_avg), latent_space)


def resolve_faces(generator: Generator, faces: Any, latent_space: str, truncation_psi: float = 1.0) -> torch.Tensor:
    """A seed, a list of seeds or a latent file path -> latents (B, *S) in `latent_space`."""
    if isinstance(faces, bool) or faces is None:
        raise UserError(f"cannot read faces from {faces!r}; give a seed (7), seeds ([1,2,3]) or a latent .npz file")
    if isinstance(faces, int):
        return latents_from_seeds(generator, [faces], latent_space, truncation_psi)
    if isinstance(faces, (str, Path)):
        text = str(faces)
        if text.lstrip("-").isdigit():
            return latents_from_seeds(generator, [int(text)], latent_space, truncation_psi)
        return latents_from_file(generator, text, latent_space)
    seeds = list(faces)
    if not all(isinstance(seed, int) and not isinstance(seed, bool) for seed in seeds):
        raise UserError(f"cannot read faces from {faces!r}; a list must hold integer seeds")
    return latents_from_seeds(generator, seeds, latent_space, truncation_psi)


def row_mask(latent: torch.Tensor, rows: Sequence[int] | None) -> torch.Tensor | None:
    """(1, num_ws, 1) mask, 1 on the `rows` of a W+ latent (B, num_ws, w_dim) an edit may change and 0
    elsewhere (StyleGAN's layer-restricted editing), or None when `rows` is None (every entry may change)."""
    if rows is None:
        return None
    if latent.dim() != 3:
        raise UserError(
            f"rows={list(rows)} restricts an edit to rows of ws, so it needs latent_space=w+; "
            f"got latents of shape {tuple(latent.shape)}"
        )
    num_ws = latent.shape[1]
    chosen = [int(row) for row in rows]
    if not chosen or any(not 0 <= row < num_ws for row in chosen):
        raise UserError(f"rows must be a non-empty list of rows in 0..{num_ws - 1} of ws, got {list(rows)}")
    mask = torch.zeros(1, num_ws, 1, dtype=latent.dtype, device=latent.device)
    mask[:, chosen] = 1
    return mask
