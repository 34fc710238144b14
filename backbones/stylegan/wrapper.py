"""`StyleGANGenerator`: NVIDIA's mapping and synthesis networks behind `backbones.generator.Generator`.

The two networks are registered under NVIDIA's names `mapping` and `synthesis`, so the state dict
reads `mapping.fc0.weight`, `synthesis.b4.const`, ... exactly as in NVIDIA's `G_ema`. Because the
`Generator` interface also has methods called `mapping` and `synthesis`, the method wins on
attribute access; the networks themselves are `mapping_network` and `synthesis_network`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from backbones.generator import Generator
from common.shapes import check_finite, check_shape

NOISE_MODES = ("const", "random", "none")


def check_noise_mode(noise_mode: str) -> str:
    """Return `noise_mode` when it is one of const/random/none, else raise ValueError."""
    if noise_mode not in NOISE_MODES:
        raise ValueError(f"noise_mode must be one of {', '.join(NOISE_MODES)}, got {noise_mode!r}")
    return noise_mode


def check_truncation_psi(truncation_psi: float) -> float:
    """Return `truncation_psi` as a float when finite, else raise ValueError."""
    if not math.isfinite(float(truncation_psi)):
        raise ValueError(f"truncation_psi must be a finite number (1 = no truncation), got {truncation_psi!r}")
    return float(truncation_psi)


class StyleGANGenerator(Generator):
    """A frozen StyleGAN2/3 generator.

    Attributes:
        name: "stylegan2", "stylegan3-t" or "stylegan3-r".
        architecture: "stylegan2" or "stylegan3" (selects the constructor in `loader`).
        init_kwargs: the constructor kwargs (JSON-like), saved with the weights.
        truncation_psi, noise_mode: defaults used when `mapping`/`synthesis` get None.
    """

    architecture: str

    def __init__(
        self,
        mapping_network: nn.Module,
        synthesis_network: nn.Module,
        *,
        name: str,
        init_kwargs: dict[str, Any],
        truncation_psi: float = 1.0,
        noise_mode: str = "const",
    ):
        super().__init__()
        self.z_dim = mapping_network.z_dim
        self.w_dim = mapping_network.w_dim
        self.num_ws = synthesis_network.num_ws
        self.img_resolution = synthesis_network.img_resolution
        self.name = name
        self.init_kwargs = init_kwargs
        self.truncation_psi = check_truncation_psi(truncation_psi)
        self.noise_mode = check_noise_mode(noise_mode)
        self.mapping = mapping_network
        self.synthesis = synthesis_network

    @property
    def mapping_network(self) -> nn.Module:
        return self._modules["mapping"]

    @property
    def synthesis_network(self) -> nn.Module:
        return self._modules["synthesis"]

    @property
    def w_avg(self) -> torch.Tensor:
        """(w_dim,) the average w (NVIDIA's `mapping.w_avg` buffer)."""
        return self.mapping_network.w_avg

    def forward(
        self, z: torch.Tensor, truncation_psi: float | None = None, noise_mode: str | None = None
    ) -> torch.Tensor:
        """z (B, z_dim) -> images (B, 3, R, R); None uses the configured defaults."""
        return self.synthesis(self.mapping(z, truncation_psi), noise_mode)

    def mapping(self, z: torch.Tensor, truncation_psi: float | None = None) -> torch.Tensor:
        """z (B, z_dim) -> ws (B, num_ws, w_dim), truncated toward `w_avg` on every row
        (None = this generator's configured `truncation_psi`)."""
        check_shape(z, ("B", self.z_dim), "z")
        check_finite(z, "z")
        psi = self.truncation_psi if truncation_psi is None else check_truncation_psi(truncation_psi)
        return self.mapping_network(z.to(self.w_avg.device), psi)

    def synthesis(self, ws: torch.Tensor, noise_mode: str | None = None) -> torch.Tensor:
        """ws (B, num_ws, w_dim) -> images (B, 3, R, R), nominally in [-1, 1], not clamped.
        noise_mode: const | random | none (None = configured); StyleGAN3 has no noise inputs."""
        check_shape(ws, ("B", self.num_ws, self.w_dim), "ws")
        check_finite(ws, "ws")
        mode = self.noise_mode if noise_mode is None else check_noise_mode(noise_mode)
        return self.synthesis_network(ws.to(self.w_avg.device, torch.float32), mode)
