"""The MLP phi-hat: a flat latent (B, D) -> standardised attributes q-hat (B, Q).

Inputs are standardised per feature with buffers `input_mean`, `input_std` (D,) fitted on the
training split, so z, w and w+ latents of any scale train with one learning rate. The output is
q-hat; the attribute vector is q = mu + sigma * q-hat with the NRSfM model's q_mean, q_std.
Paper setting: three hidden layers of 512 units with ReLU.

With `num_members` M > 1 the MLP is a deep ensemble: M networks of that shape, initialised apart
and trained side by side on the same batches (`forward_members`), whose mean is q-hat. Editing
inverts phi, so it seeks out the latent directions along which phi changes fastest; where one
network is wrong about how fast, the others rarely are in the same way, and their mean follows the
images further (docs/RESULTS.md, "Edit accuracy").
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from common.shapes import check_shape

ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}


class AttributeMLP(nn.Module):
    """Fully connected network: Linear -> activation for each hidden layer, then a Linear head.

    Args:
        in_dim: D, the flat latent size.
        out_dim: Q = 8 + K.
        hidden_dims: sizes of the hidden layers (paper: 512, 512, 512).
        activation: one of `ACTIVATIONS`.
        head_scale: the head's initial weights are scaled by this, so training starts near q = mu.
        num_members: M, the networks averaged (1: a single MLP, the paper's).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden_dims: Sequence[int] = (512, 512, 512),
        activation: str = "relu",
        head_scale: float = 0.1,
        num_members: int = 1,
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; use one of {', '.join(ACTIVATIONS)}")
        if in_dim < 1 or out_dim < 1 or any(int(h) < 1 for h in hidden_dims):
            raise ValueError(
                f"layer sizes must be positive, got in_dim={in_dim}, hidden_dims={list(hidden_dims)}, out_dim={out_dim}"
            )
        if isinstance(num_members, bool) or not isinstance(num_members, int) or num_members < 1:
            raise ValueError(f"num_members must be a positive integer, got {num_members!r}")
        sizes = [in_dim, *[int(h) for h in hidden_dims], out_dim]
        self.members = nn.ModuleList(_network(sizes, ACTIVATIONS[activation], head_scale) for _ in range(num_members))
        self.register_buffer("input_mean", torch.zeros(in_dim))
        self.register_buffer("input_std", torch.ones(in_dim))
        self.in_dim, self.out_dim = in_dim, out_dim
        self.hidden_dims, self.activation = [int(h) for h in hidden_dims], activation

    def set_input_statistics(self, latents: torch.Tensor) -> None:
        """Fit `input_mean`, `input_std` to training latents (N, D); constant features get std 1."""
        check_shape(latents, ("N", self.in_dim), "latents")
        std = latents.std(0)
        self.input_mean.copy_(latents.mean(0))
        self.input_std.copy_(torch.where(std > 1e-8, std, torch.ones_like(std)))

    def hparams(self) -> dict:
        """The constructor arguments, to rebuild the network from a state dict."""
        return {
            "in_dim": self.in_dim,
            "out_dim": self.out_dim,
            "hidden_dims": self.hidden_dims,
            "activation": self.activation,
            "num_members": len(self.members),
        }

    def forward_members(self, latent: torch.Tensor) -> torch.Tensor:
        """(B, D) -> every member's q-hat (M, B, Q)."""
        check_shape(latent, ("B", self.in_dim), "latent")
        standardised = (latent - self.input_mean) / self.input_std
        return torch.stack([member(standardised) for member in self.members])

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        """(B, D) -> q-hat (B, Q), the members' mean."""
        return self.forward_members(latent).mean(0)


def _network(sizes: Sequence[int], activation: type[nn.Module], head_scale: float) -> nn.Sequential:
    """Linear -> activation between consecutive `sizes`, then a Linear head scaled by `head_scale`."""
    layers: list[nn.Module] = []
    for size_in, size_out in zip(sizes[:-2], sizes[1:-1]):
        layers += [nn.Linear(size_in, size_out), activation()]
    head = nn.Linear(sizes[-2], sizes[-1])
    with torch.no_grad():
        head.weight.mul_(head_scale)
        head.bias.zero_()
    return nn.Sequential(*layers, head)
