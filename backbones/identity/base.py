"""The interface of identity networks (face-recognition embeddings for identity losses).

Conventions: images are float32 NCHW (B, 3, H, W) in [-1, 1] at any resolution; each network finds
and aligns the face itself (detection on a detached copy, differentiable warp) and returns unit
embeddings (B, D). The identity distance is 1 - cos, in [0, 2]; 0 means the same direction.

Images in which no face is found: with ``on_missing="error"`` (the default) `embed` raises a
ValueError naming the batch items; with ``on_missing="centre"`` those items use the largest centred
square of the image as the chip instead (suits generators whose faces are centred, e.g. FFHQ).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from common.shapes import check_finite, check_shape

MISSING_FACE_POLICIES = ("error", "centre")


def cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """1 - cos between rows: a (B, D), b (B, D) (or (1, D), broadcast) -> (B,)."""
    check_shape(a, ("B", "D"), "embeddings a")
    check_shape(b, ("...", a.shape[1]), "embeddings b")
    return 1.0 - F.cosine_similarity(a, b, dim=1)


class IdentityNetwork(nn.Module):
    """Base class: subclasses set `name`, `embedding_dim` and implement `embed`.

    Instances are frozen (`eval()`, no parameter gradients); gradients still flow to the images.
    """

    name: str = "identity"
    embedding_dim: int

    def freeze(self) -> IdentityNetwork:
        """eval() and requires_grad_(False); returns self."""
        return self.eval().requires_grad_(False)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) float in [-1, 1] -> unit embeddings (B, D), differentiable."""
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.embed(images)

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Embeddings a (B, D), b (B, D) -> identity distance 1 - cos (B,)."""
        return cosine_distance(a, b)

    def image_distance(self, images_a: torch.Tensor, images_b: torch.Tensor) -> torch.Tensor:
        """Two image batches (B, 3, H, W) in [-1, 1] -> identity distance (B,) of their faces."""
        return self.distance(self.embed(images_a), self.embed(images_b))


def check_images(images: torch.Tensor) -> None:
    """Raise ValueError unless images is a finite float (B, 3, H, W) batch with B >= 1."""
    check_shape(images, ("B", 3, "H", "W"), "images")
    if not images.is_floating_point():
        raise ValueError(f"images must be float in [-1, 1], got dtype {images.dtype}; convert uint8 with x / 127.5 - 1")
    if images.shape[0] == 0:
        raise ValueError("images is an empty batch; pass at least one image")
    check_finite(images, "images")


def check_missing_policy(on_missing: str) -> str:
    if on_missing not in MISSING_FACE_POLICIES:
        raise ValueError(f"unknown on_missing {on_missing!r}; use one of {', '.join(MISSING_FACE_POLICIES)}")
    return on_missing


def raise_if_missing(found: torch.Tensor) -> None:
    """ValueError naming the batch items without a face (found (B,) bool)."""
    missing = (~found).nonzero().flatten().tolist()
    if missing:
        raise ValueError(
            f"no face found in batch item(s) {missing}; pass images with a visible face or set "
            "identity.on_missing=centre to fall back to a centred crop"
        )
