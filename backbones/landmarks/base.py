"""The interface every face landmark detector implements.

Conventions:
- input images: float32 NCHW (B, 3, H, W) in [-1, 1], as the generators produce them;
- landmarks: (B, L, 2) float32 pixel coordinates (x, y) in the input image, origin at the top-left
  pixel, CPU tensors; rows where no face was found are zeros and ``found`` is False there;
- one face per image: detectors that find several keep the one with the highest detector score.

Detectors run image by image on uint8 RGB arrays (dlib, MediaPipe and FAN all work that way), so
`detect` converts the batch once (`images_to_uint8`) and calls `detect_uint8`, which the sampling
stage also calls directly in its worker processes (uint8 batches are 4x cheaper to send).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from common.shapes import check_finite, check_shape


@dataclass
class Detections:
    """Landmarks of a batch: ``landmarks`` (B, L, 2) float32 pixels, ``found`` (B,) bool,
    ``score`` (B,) float32 (the detector's confidence; 0 where nothing was found)."""

    landmarks: torch.Tensor
    found: torch.Tensor
    score: torch.Tensor

    def __len__(self) -> int:
        return len(self.found)


def images_to_uint8(images: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) float in [-1, 1] -> (B, H, W, 3) uint8 RGB (values outside [-1, 1] are clipped).

    Done in numpy: single-threaded, it is ~50x faster than torch's thread pool on a busy machine.
    """
    check_shape(images, ("B", 3, "H", "W"), "images")
    pixels = images.detach().cpu().float().numpy()
    check_finite(pixels, "images")
    scaled = np.clip(np.rint((pixels + 1.0) * 127.5), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(scaled.transpose(0, 2, 3, 1))


class LandmarkDetector:
    """Base class: subclasses set `name` and `num_landmarks` and implement `detect_one`."""

    name: str = "detector"
    num_landmarks: int

    def detect(self, images: torch.Tensor) -> Detections:
        """images (B, 3, H, W) float in [-1, 1] -> Detections with landmarks (B, L, 2) in pixels."""
        return self.detect_uint8(images_to_uint8(images))

    def detect_uint8(self, images: np.ndarray) -> Detections:
        """images (B, H, W, 3) uint8 RGB -> Detections with landmarks (B, L, 2) in pixels."""
        check_shape(images, ("B", "H", "W", 3), "uint8 images")
        if images.dtype != np.uint8:
            raise ValueError(f"uint8 images must have dtype uint8, got {images.dtype}; convert with images_to_uint8")
        num_images = images.shape[0]
        landmarks = np.zeros((num_images, self.num_landmarks, 2), np.float32)
        found = np.zeros(num_images, bool)
        score = np.zeros(num_images, np.float32)
        for index, image in enumerate(images):
            result = self.detect_one(np.ascontiguousarray(image))
            if result is not None:
                landmarks[index], score[index] = result
                found[index] = True
        return Detections(torch.from_numpy(landmarks), torch.from_numpy(found), torch.from_numpy(score))

    def detect_one(self, image: np.ndarray) -> tuple[np.ndarray, float] | None:
        """One (H, W, 3) uint8 RGB image -> (landmarks (L, 2) pixels, score) of the chosen face, or None."""
        raise NotImplementedError
