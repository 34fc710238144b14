"""The colours of a portrait's background, read from the image's frame, for edits that must keep them.

q says nothing about the background, so an edit through phi alone is free to change it: in W every
scene group, the background's colours included, is a function of the same latent, and the step
phi asks for moves them too. `background_colours` reads them where a portrait shows background, on
a frame a thirty-second of the shorter side wide: the top strip and the two side strips (the bottom
is left out, where the neck and shoulders reach the border).
"""

from __future__ import annotations

import torch

from common.shapes import check_shape


def background_colours(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) images in [-1, 1] -> (B, 6) in [0, 1]: mean RGB of the top strip, then of the side strips."""
    check_shape(images, ("B", 3, "H", "W"), "images")
    width = max(1, min(images.shape[-2:]) // 32)
    top = images[..., :width, :].mean((-2, -1))
    sides = torch.cat([images[..., width:, :width], images[..., width:, -width:]], -1).mean((-2, -1))
    return (torch.cat([top, sides], -1) + 1.0) / 2.0
