"""`identity=none`: no identity network; distances are zero and carry no gradient.

Use it to switch the identity term off (its embeddings are empty (B, 0) tensors).
"""

from __future__ import annotations

import torch

from backbones.identity.base import IdentityNetwork, check_images
from common.shapes import check_shape


class NoIdentity(IdentityNetwork):
    """Placeholder identity network: `embed` -> (B, 0), `distance` -> zeros (B,)."""

    name = "none"
    embedding_dim = 0

    def __init__(self):
        super().__init__()
        self.freeze()

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) in [-1, 1] -> (B, 0)."""
        check_images(images)
        return images.new_zeros(images.shape[0], 0)

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """(B, 0), (B, 0) -> zeros (B,)."""
        check_shape(a, ("B", 0), "embeddings a")
        return a.new_zeros(a.shape[0])
