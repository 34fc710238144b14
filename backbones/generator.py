"""The interface every image generator implements (synthetic renderer, StyleGAN2, StyleGAN3).

Conventions (as NVIDIA's StyleGAN code):
- latents: z (B, z_dim); w (B, w_dim); ws (B, num_ws, w_dim). A latent in space "w" is one w
  broadcast to all num_ws rows; "w+" gives each row its own w.
- images: float32 NCHW (B, 3, R, R) in [-1, 1] (not clamped), R = img_resolution.
- seeds: the latent of seed s is ``np.random.RandomState(s).randn(z_dim)``, as NVIDIA's
  gen_images.py draws it, so seeds mean the same face here and there.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from common.shapes import check_finite, check_shape

LATENT_SPACES = ("z", "w", "w+")


class Generator(nn.Module):
    """Base class: subclasses set the sizes, register a `w_avg` (w_dim,) buffer and implement
    `mapping` and `synthesis`. Instances are frozen (`eval()`, no parameter gradients); gradients
    still flow to the latents."""

    z_dim: int
    w_dim: int
    num_ws: int
    img_resolution: int
    name: str = "generator"

    def mapping(self, z: torch.Tensor, truncation_psi: float = 1.0) -> torch.Tensor:
        """z (B, z_dim) -> ws (B, num_ws, w_dim), truncated toward `w_avg` by `truncation_psi`."""
        raise NotImplementedError

    def synthesis(self, ws: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        """ws (B, num_ws, w_dim) -> images (B, 3, R, R) in [-1, 1]."""
        raise NotImplementedError

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0, noise_mode: str = "const") -> torch.Tensor:
        return self.synthesis(self.mapping(z, truncation_psi), noise_mode=noise_mode)

    def z_from_seeds(self, seeds: Sequence[int]) -> torch.Tensor:
        """(B,) integer seeds -> z (B, z_dim) float32, NVIDIA's per-seed convention."""
        z = np.stack([np.random.RandomState(int(seed)).randn(self.z_dim) for seed in seeds])
        return torch.from_numpy(z.astype(np.float32)).to(self.w_avg.device)

    def to_ws(self, latent: torch.Tensor, space: str, truncation_psi: float = 1.0) -> torch.Tensor:
        """A latent of `space` ("z": (B, z_dim), "w": (B, w_dim), "w+": (B, num_ws, w_dim)) -> ws."""
        if space == "z":
            check_shape(latent, ("B", self.z_dim), "z latent")
            check_finite(latent, "z latent")
            return self.mapping(latent, truncation_psi)
        if space == "w":
            check_shape(latent, ("B", self.w_dim), "w latent")
            check_finite(latent, "w latent")
            return latent[:, None, :].expand(-1, self.num_ws, -1)
        if space == "w+":
            check_shape(latent, ("B", self.num_ws, self.w_dim), "w+ latent")
            check_finite(latent, "w+ latent")
            return latent
        raise ValueError(f"unknown latent space {space!r}; use one of {', '.join(LATENT_SPACES)}")

    def latent_from_ws(self, ws: torch.Tensor, space: str) -> torch.Tensor:
        """ws (B, num_ws, w_dim) -> the latent of `space` "w" (first row) or "w+" (all rows)."""
        if space == "w":
            return ws[:, 0]
        if space == "w+":
            return ws
        raise ValueError(f"cannot express ws in latent space {space!r}; use w or w+")

    def checksum(self) -> str:
        """First 16 hex digits of a SHA-256 over the state dict: identifies the weights."""
        digest = hashlib.sha256()
        for key, value in sorted(self.state_dict().items()):
            digest.update(key.encode())
            digest.update(value.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()[:16]

    def freeze(self) -> Generator:
        """eval() and no parameter gradients; returns self."""
        return self.eval().requires_grad_(False)
