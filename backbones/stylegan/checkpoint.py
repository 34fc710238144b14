"""Our safe StyleGAN checkpoint format: a `torch.load(weights_only=True)` dict.

Layout (`.pt`, written by `save_stylegan_checkpoint`):
    {
      "format": "rankone-edit/stylegan",
      "version": 1,
      "architecture": "stylegan2" | "stylegan3",
      "name": "stylegan2" | "stylegan3-t" | "stylegan3-r",
      "init_kwargs": {...},      # kwargs of StyleGAN2Generator / StyleGAN3Generator (numbers, strings, lists)
      "state_dict": {...},       # NVIDIA's parameter/buffer names, float32 CPU tensors
    }
Converting an NVIDIA pickle once,
`save_stylegan_checkpoint(load_stylegan("ffhq.pkl"), "ffhq.pt")`, gives a file that loads without
the restricted unpickler.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from backbones.stylegan.nvidia import build_generator
from backbones.stylegan.wrapper import StyleGANGenerator
from common.errors import UserError
from common.io import atomic_path

CHECKPOINT_FORMAT = "rankone-edit/stylegan"
CHECKPOINT_VERSION = 1


def checkpoint_dict(generator: StyleGANGenerator) -> dict[str, Any]:
    """The weights-only dict describing `generator` (see the module docstring)."""
    return {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "architecture": generator.architecture,
        "name": generator.name,
        "init_kwargs": dict(generator.init_kwargs),
        "state_dict": {name: tensor.detach().cpu().clone() for name, tensor in generator.state_dict().items()},
    }


def save_stylegan_checkpoint(generator: StyleGANGenerator, path: str | Path) -> Path:
    """Write `checkpoint_dict(generator)` to `path` atomically (temporary file, then rename)."""
    with atomic_path(path) as tmp:
        torch.save(checkpoint_dict(generator), tmp)
    return path


def is_stylegan_checkpoint(data: Any) -> bool:
    return isinstance(data, dict) and data.get("format") == CHECKPOINT_FORMAT


def generator_from_checkpoint(
    data: dict[str, Any], *, truncation_psi: float = 1.0, noise_mode: str = "const"
) -> StyleGANGenerator:
    """Build a frozen generator from a loaded checkpoint dict."""
    if data.get("version") != CHECKPOINT_VERSION:
        raise UserError(
            f"StyleGAN checkpoint version {data.get('version')!r} is not supported (expected {CHECKPOINT_VERSION})"
        )
    missing = [
        key for key in ("architecture", "init_kwargs", "state_dict") if not isinstance(data.get(key), (str, dict))
    ]
    if missing:
        raise UserError(f"StyleGAN checkpoint lacks {missing}; re-create it with save_stylegan_checkpoint")
    return build_generator(
        data["architecture"],
        dict(data["init_kwargs"]),
        dict(data["state_dict"]),
        truncation_psi=truncation_psi,
        noise_mode=noise_mode,
    )
