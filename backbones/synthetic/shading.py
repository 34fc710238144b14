"""Colour of the rendered head: portrait texture sampling, per-sample skin and hair tone,
Lambertian shading from vertex normals, and the background gradient.

Colours are in [0, 1] (the generator maps images to [-1, 1] at its boundary); per-pixel values
are given for the N visible pixels (`rasterizer.Fragments`), shading is per vertex (Gouraud).
Normals follow the face frame (x right, y down, z away from the camera) and point out of the
head, i.e. toward the camera (negative z) on a frontal face.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

# Luma weights used to (de)saturate colours.
_LUMA = (0.299, 0.587, 0.114)


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted unit vertex normals: vertices (B, V, 3), faces (T, 3) -> (B, V, 3)."""
    a, b, c = vertices[:, faces].unbind(2)  # (B, T, 3) each
    face_normals = torch.linalg.cross(c - a, b - a, dim=-1)
    normals = torch.zeros_like(vertices)
    for corner in range(3):
        normals = normals.index_add(1, faces[:, corner], face_normals)
    return F.normalize(normals, dim=-1, eps=1e-12)


def sample_texture(texture: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Bilinear texture lookup: texture (3, Ht, Wt), uv (N, 2) in [-1, 1] -> colours (N, 3)."""
    sampled = F.grid_sample(texture[None], uv[None, None], mode="bilinear", padding_mode="border", align_corners=True)
    return sampled[0, :, 0].transpose(0, 1)


def apply_tone(albedo: torch.Tensor, skin: torch.Tensor, hair: torch.Tensor, appearance: torch.Tensor) -> torch.Tensor:
    """Recolour skin and hair.

    Args:
        albedo: (N, 3) in [0, 1]; skin, hair: (N,) region weights.
        appearance: (N, 6) log skin lightness, skin warmth, skin redness, log hair lightness, hair
            warmth, log saturation (see `scene.SceneParameters`).
    Returns:
        (N, 3).
    """
    ones = torch.ones_like(appearance[:, 0])
    skin_gain = torch.exp(appearance[:, 0:1]) * torch.stack(
        [ones + appearance[:, 1], ones - appearance[:, 2], ones - appearance[:, 1]], -1
    )
    hair_gain = torch.exp(appearance[:, 3:4]) * torch.stack(
        [ones + appearance[:, 4], ones, ones - appearance[:, 4]], -1
    )
    gain = 1.0 + skin[:, None] * (skin_gain - 1.0) + hair[:, None] * (hair_gain - 1.0)
    coloured = albedo * gain
    luma = (coloured * coloured.new_tensor(_LUMA)).sum(-1, keepdim=True)
    return luma + (coloured - luma) * torch.exp(appearance[:, 5:6])


def lambert(
    normals: torch.Tensor, light_direction: torch.Tensor, ambient: torch.Tensor, gain: torch.Tensor
) -> torch.Tensor:
    """Relative per-vertex shading that leaves a frontally lit, frontal surface unchanged.

    Args:
        normals: (B, V, 3) unit normals; light_direction: (B, 3) unit, toward the light.
        ambient, gain: (B,).
    Returns:
        (B, V) multiplicative shading.
    """
    cosine = (normals * light_direction[:, None, :]).sum(-1)
    diffuse = F.softplus(cosine * 8.0) / 8.0
    frontal = (-light_direction[:, 2:3]).clamp(min=0.2)
    return gain[:, None] * (ambient[:, None] + (1.0 - ambient[:, None]) * diffuse / frontal)


def tone_map(colours: torch.Tensor, knee: float = 0.8) -> torch.Tensor:
    """Keep colours in [0, 1]: identity below `knee`, a smooth (C1) tanh shoulder above it, and
    negative values clipped to 0. (...) -> (...)."""
    shoulder = knee + (1.0 - knee) * torch.tanh((colours - knee) / (1.0 - knee))
    return torch.where(colours < knee, colours, shoulder).clamp(min=0.0)


def background_gradient(colours: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Vertical gradient: colours (B, 2, 3) top and bottom -> (B, 3, H, W)."""
    t = torch.linspace(0.0, 1.0, height, dtype=colours.dtype, device=colours.device)[None, :, None]
    column = colours[:, 0, :, None] * (1.0 - t[..., 0]) + colours[:, 1, :, None] * t[..., 0]  # (B, 3, H)
    return column[..., None].expand(-1, -1, -1, width)
