"""From latents to scene parameters: a fixed, seeded, non-linear mapping z -> w (as StyleGAN's
mapping network) and one fixed non-linear head per row of ws that decodes that row into one group
of scene parameters.

Rows of ws (num_ws = 6) and the parameters they drive:
    0 identity shape (I = 16)    1 appearance: skin and hair colour (6)
    2 expression (E = 5)         3 head rotation: pitch, yaw, roll (3)
    4 framing: scale, tx, ty (3) 5 lighting (4) and background colours (6)
In W space all rows hold the same w, so every group is a different non-linear function of the
same 64 numbers: pose, expression and identity are entangled along every direction of w, and a
regressor w -> q has real work to do. In W+ each row moves only its own group, so W+ edits of the
pose row leave identity and expression untouched. Head outputs are standardised with statistics
of 4096 seeded samples taken at construction, then squashed into physical ranges (degrees, unit
coefficients, colour gains) whose spreads imitate FFHQ: yaw std about 15 deg with tails to 40 deg.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from common.shapes import check_shape

GROUP_SIZES = {"identity": 16, "appearance": 6, "expression": 5, "rotation": 3, "framing": 3, "lighting": 10}
NUM_WS = len(GROUP_SIZES)
NUM_CALIBRATION = 4096


@dataclass(frozen=True)
class SceneParameters:
    """Physical scene parameters of a batch; B is the batch size.

    identity (B, 16) shape coefficients; appearance (B, 6) = log skin lightness, skin warmth, skin
    redness, log hair lightness, hair warmth, saturation; expression (B, 5) = smile, mouth open,
    brows raise, eyes close, jaw sideways; rotation_deg (B, 3) = pitch, yaw, roll; scale (B,) face
    inter-ocular distance as a fraction of the image width; translation (B, 2) as fractions of the
    image size; light_direction (B, 3) unit, pointing from the face toward the light (face frame);
    ambient (B,); light_gain (B,); background (B, 2, 3) top and bottom colours in [0, 1].
    """

    identity: torch.Tensor
    appearance: torch.Tensor
    expression: torch.Tensor
    rotation_deg: torch.Tensor
    scale: torch.Tensor
    translation: torch.Tensor
    light_direction: torch.Tensor
    ambient: torch.Tensor
    light_gain: torch.Tensor
    background: torch.Tensor


def _seeded_linear(in_features: int, out_features: int, generator: torch.Generator) -> nn.Linear:
    layer = nn.Linear(in_features, out_features)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(out_features, in_features, generator=generator) / math.sqrt(in_features))
        layer.bias.copy_(0.1 * torch.randn(out_features, generator=generator))
    return layer


class MappingNetwork(nn.Module):
    """z (B, z_dim) -> w (B, w_dim): second-moment normalisation, then `num_layers` seeded linear
    layers with leaky ReLU (slope 0.2, gain sqrt 2)."""

    def __init__(self, z_dim: int, w_dim: int, num_layers: int, generator: torch.Generator):
        super().__init__()
        widths = [z_dim] + [w_dim] * num_layers
        self.layers = nn.ModuleList(_seeded_linear(i, o, generator) for i, o in zip(widths[:-1], widths[1:]))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = z * torch.rsqrt(z.square().mean(-1, keepdim=True) + 1e-8)
        for layer in self.layers:
            x = F.leaky_relu(layer(x), 0.2) * math.sqrt(2.0)
        return x


class SceneDecoder(nn.Module):
    """ws (B, NUM_WS, w_dim) -> SceneParameters; row g feeds the head of group g."""

    def __init__(self, w_dim: int, hidden: int, generator: torch.Generator):
        super().__init__()
        self.heads = nn.ModuleList(
            nn.Sequential(
                _seeded_linear(w_dim, hidden, generator), nn.LeakyReLU(0.2), _seeded_linear(hidden, size, generator)
            )
            for size in GROUP_SIZES.values()
        )
        total = sum(GROUP_SIZES.values())
        self.register_buffer("raw_mean", torch.zeros(total))
        self.register_buffer("raw_std", torch.ones(total))

    def standardised(self, ws: torch.Tensor) -> torch.Tensor:
        """ws (B, NUM_WS, w_dim) -> (B, sum of group sizes), about zero mean and unit variance."""
        check_shape(ws, ("B", NUM_WS, "D"), "ws")
        raw = torch.cat([head(ws[:, g]) for g, head in enumerate(self.heads)], -1)
        return (raw - self.raw_mean) / self.raw_std

    @torch.no_grad()
    def calibrate(self, ws: torch.Tensor) -> None:
        """Set the standardisation from a large batch ws (N, NUM_WS, w_dim)."""
        self.raw_mean.zero_()
        self.raw_std.fill_(1.0)
        raw = self.standardised(ws)
        self.raw_mean.copy_(raw.mean(0))
        self.raw_std.copy_(raw.std(0).clamp(min=1e-6))

    def forward(self, ws: torch.Tensor) -> SceneParameters:
        groups = dict(zip(GROUP_SIZES, self.standardised(ws).split(list(GROUP_SIZES.values()), -1)))
        light = groups["lighting"]
        azimuth = torch.deg2rad(35.0 * torch.tanh(0.6 * light[:, 0]))
        elevation = torch.deg2rad(10.0 + 25.0 * torch.tanh(0.6 * light[:, 1]))
        light_direction = torch.stack(
            [
                torch.sin(azimuth) * torch.cos(elevation),
                -torch.sin(elevation),
                -torch.cos(azimuth) * torch.cos(elevation),
            ],
            -1,
        )
        base_colour = torch.sigmoid(0.9 * light[:, 4:7])
        top_colour = 0.15 + 0.8 * base_colour
        bottom_colour = (top_colour * torch.exp(0.3 * torch.tanh(light[:, 7:10]) - 0.2)).clamp(0.0, 1.0)
        expression = groups["expression"]
        rotation = groups["rotation"]
        framing = groups["framing"]
        return SceneParameters(
            identity=2.5 * torch.tanh(groups["identity"] / 2.5),
            appearance=torch.tanh(0.5 * groups["appearance"]) * ws.new_tensor([0.35, 0.08, 0.05, 0.6, 0.1, 0.2]),
            expression=torch.stack(
                [
                    torch.tanh(0.7 * expression[:, 0] - 0.2),
                    torch.tanh(0.7 * expression[:, 1] - 0.1),
                    torch.tanh(0.6 * expression[:, 2] + 0.2),
                    0.5 * (1.0 + torch.tanh(1.2 * expression[:, 3] - 2.4)),
                    torch.tanh(0.5 * expression[:, 4]),
                ],
                -1,
            ),
            rotation_deg=torch.stack(
                [
                    20.0 * torch.tanh(0.3 * rotation[:, 0]),
                    50.0 * torch.tanh(0.3 * rotation[:, 1]),
                    25.0 * torch.tanh(0.2 * rotation[:, 2]),
                ],
                -1,
            ),
            scale=0.21 * torch.exp(0.07 * torch.tanh(framing[:, 0] / 2.0) * 2.0),
            translation=0.03 * torch.tanh(framing[:, 1:3]),
            light_direction=light_direction,
            ambient=0.62 + 0.12 * torch.tanh(light[:, 2]),
            light_gain=torch.exp(0.12 * torch.tanh(light[:, 3])),
            background=torch.stack([top_colour, bottom_colour], 1),
        )
