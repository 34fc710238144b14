"""dlib's 128-d face descriptor as an `IdentityNetwork` (offline default: weights ship with
face-recognition-models).

Pipeline per batch: 5 points by dlib's HOG detector + shape_predictor_5 (detached uint8 copy),
dlib's chip geometry (size 150, padding 0.25) warped differentiably, `DlibResNet` on the chip
pixels in [0, 255], then normalisation to unit length (dlib's raw descriptors have norms near 1
and are compared by Euclidean distance with threshold 0.6; we use 1 - cos like the other networks).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from backbones.identity.alignment import (
    DLIB_FIVE_POINT_TEMPLATE,
    FacePointDetector,
    chip_geometry_or_centre,
    dlib_chip_to_image,
    extract_chips,
)
from backbones.identity.base import IdentityNetwork, check_missing_policy
from backbones.identity.dlib_resnet import load_dlib_resnet


class DlibIdentity(IdentityNetwork):
    """dlib face recognition ResNet: images (B, 3, H, W) in [-1, 1] -> unit (B, 128)."""

    name = "dlib"

    def __init__(
        self,
        weights_path: str | Path | None = None,
        cache_dir: str | Path | None = None,
        chip_size: int = 150,
        padding: float = 0.25,
        upsample: int = 1,
        on_missing: str = "error",
    ):
        super().__init__()
        self.on_missing = check_missing_policy(on_missing)
        self.network = load_dlib_resnet(weights_path, cache_dir)
        if chip_size != self.network.input_size:
            raise ValueError(f"chip_size must be {self.network.input_size} for this network, got {chip_size}")
        self.chip_size, self.padding = chip_size, padding
        self.detector = FacePointDetector("dlib5", upsample=upsample)
        self.embedding_dim = self.network.embedding_dim
        self.freeze()

    def chip_geometry(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) in [-1, 1] -> chip_to_image (B, 2, 3) (non-differentiable)."""
        placeholder = torch.tensor(DLIB_FIVE_POINT_TEMPLATE, dtype=torch.float64) * 100.0
        return chip_geometry_or_centre(
            images,
            self.detector,
            self.on_missing,
            self.chip_size,
            placeholder,
            lambda points: dlib_chip_to_image(points, self.chip_size, self.padding),
        )

    def chip_pixels(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) in [-1, 1] -> aligned chips (B, 3, 150, 150) as RGB pixel values in
        [0, 255] (black outside the image, as dlib), differentiable w.r.t. the images."""
        return extract_chips((images + 1.0) * 127.5, self.chip_geometry(images), self.chip_size)

    def descriptors(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) in [-1, 1] -> dlib's raw (un-normalised) descriptors (B, 128)."""
        return self.network(self.chip_pixels(images))

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) in [-1, 1] -> unit embeddings (B, 128), differentiable w.r.t. images."""
        return F.normalize(self.descriptors(images), dim=1)
