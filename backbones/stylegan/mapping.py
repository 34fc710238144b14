"""The mapping network z -> ws shared by StyleGAN2 and StyleGAN3 (unconditional).

Parameter and buffer names follow NVIDIA's (`fc{i}.weight`, `fc{i}.bias`, `w_avg`), so the
`mapping.*` entries of their state dicts load one-to-one. Weights are stored divided by the
learning-rate multiplier and rescaled in `forward` (equalized learning rate), as NVIDIA stores them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from backbones.stylegan.ops import SQRT2, bias_act, normalize_2nd_moment


class FullyConnectedLayer(nn.Module):
    """y = act(x @ (weight * weight_gain).T + bias * bias_gain) with equalized learning rate.

    Shapes: x (B, in_features) -> (B, out_features).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        lrelu: bool = False,
        lr_multiplier: float = 1.0,
        weight_init: float = 1.0,
        bias_init: float | Sequence[float] = 0.0,
    ):
        super().__init__()
        self.lrelu = lrelu
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) * (weight_init / lr_multiplier))
        bias = torch.broadcast_to(torch.as_tensor(bias_init, dtype=torch.float32), [out_features])
        self.bias = nn.Parameter(bias / lr_multiplier)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight * self.weight_gain
        bias = self.bias if self.bias_gain == 1 else self.bias * self.bias_gain
        if not self.lrelu:
            return torch.addmm(bias.unsqueeze(0), x, weight.t())
        return bias_act(x.matmul(weight.t()), bias, slope=0.2, gain=SQRT2)


class MappingNetwork(nn.Module):
    """z (B, z_dim) -> ws (B, num_ws, w_dim): normalise z, `num_layers` lrelu layers, broadcast,
    truncate toward the `w_avg` buffer (w_dim,)."""

    def __init__(
        self,
        z_dim: int,
        w_dim: int,
        num_ws: int,
        num_layers: int,
        *,
        layer_features: int | None = None,
        lr_multiplier: float = 0.01,
    ):
        super().__init__()
        self.z_dim, self.w_dim, self.num_ws, self.num_layers = z_dim, w_dim, num_ws, num_layers
        hidden = w_dim if layer_features is None else layer_features
        features = [z_dim] + [hidden] * (num_layers - 1) + [w_dim]
        for index in range(num_layers):
            layer = FullyConnectedLayer(features[index], features[index + 1], lrelu=True, lr_multiplier=lr_multiplier)
            setattr(self, f"fc{index}", layer)
        self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0) -> torch.Tensor:
        x = normalize_2nd_moment(z.to(torch.float32))
        for index in range(self.num_layers):
            x = getattr(self, f"fc{index}")(x)
        ws = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            ws = self.w_avg.lerp(ws, truncation_psi)
        return ws
