"""FAN (2D-FAN-4, 68 landmarks; Bulat & Tzimiropoulos 2017) from user-provided weights.

face-alignment 1.5.0 loads its landmark network as a TorchScript archive that it downloads to
``$TORCH_HOME/hub/checkpoints/2DFAN4-cd938726ad.zip`` (torch versions other than 1.5/1.6). Nothing
is downloaded here: the adapter reads that same file from `weights`, or from the torch hub cache
(``torch.hub.get_dir()/checkpoints/``, which follows ``$TORCH_HOME``), and otherwise fails with a
line naming the file and the folder. The face-alignment package itself is not needed.

Pipeline per batch: dlib's HOG detector gives one box per image (highest score when several);
the box becomes FAN's crop (centre moved up by 12% of the box height, side 200 * scale with
scale = (width + height) / `reference_scale`), resampled to 256x256 in [0, 1]; the network returns
(B, 68, 64, 64) heatmaps whose arg-max, nudged a quarter pixel toward the higher neighbour, is
mapped back to image pixels. ``score`` is the mean heatmap maximum over the 68 points.

HOG boxes are tighter than the S3FD boxes FAN was trained with (S3FD boxes include the forehead),
so the default `reference_scale` is 165 instead of face-alignment's 195: a ~18% larger crop. This
was not checked against the real weights here (they cannot be downloaded on this machine).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from backbones.landmarks.base import Detections, LandmarkDetector
from backbones.landmarks.dlib import HogFaceFinder
from common.errors import UserError
from common.shapes import check_shape

WEIGHTS_FILE = "2DFAN4-cd938726ad.zip"
WEIGHTS_URL = f"https://www.adrianbulat.com/downloads/python-fan/{WEIGHTS_FILE}"
CROP_SIZE = 256
HEATMAP_SIZE = 64


def default_weights_path() -> Path:
    """Where face-alignment keeps the FAN weights: ``torch.hub.get_dir()/checkpoints/2DFAN4-cd938726ad.zip``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE


def load_fan(weights: str | Path | None) -> torch.jit.ScriptModule:
    """The TorchScript FAN network from `weights` (None: the torch hub cache); UserError when absent."""
    path = Path(weights) if weights is not None else default_weights_path()
    if not path.is_file():
        raise UserError(
            f"FAN weights not found: put {WEIGHTS_FILE} (from {WEIGHTS_URL}) in {path.parent}/ or set landmarks.weights=<file>"
        )
    try:
        with warnings.catch_warnings():  # face-alignment ships TorchScript; torch 2.13 marks jit.load deprecated
            warnings.simplefilter("ignore", DeprecationWarning)
            network = torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError) as error:
        raise UserError(f"{path} is not a TorchScript FAN archive ({error}); download {WEIGHTS_FILE} again") from error
    return network.eval()


def crop_boxes(boxes: torch.Tensor, reference_scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Face boxes (B, 4) as (left, top, right, bottom) -> crop centres (B, 2) and sides (B,) in pixels."""
    check_shape(boxes, ("B", 4), "boxes")
    left, top, right, bottom = boxes.unbind(-1)
    height = bottom - top
    centre = torch.stack(((left + right) / 2, (top + bottom) / 2 - 0.12 * height), -1)
    side = 200.0 * (right - left + height) / reference_scale
    return centre, side


def crop_images(images: torch.Tensor, centre: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
    """Square crops resampled to 256x256: images (B, 3, H, W), centre (B, 2), side (B,) -> (B, 3, 256, 256).

    Output pixel i (centre i + 0.5) samples the image at centre - side/2 + (i + 0.5) * side / 256.
    """
    sizes = check_shape(images, ("B", 3, "H", "W"), "images")
    check_shape(centre, (sizes["B"], 2), "centre")
    height, width = sizes["H"], sizes["W"]
    size = torch.tensor([width, height], dtype=images.dtype)
    # grid_sample (align_corners=False) reads normalised u at pixel coordinate (u + 1) * size / 2 - 0.5.
    scale = side[:, None] / size
    offset = (2 * centre + 1) / size - 1
    theta = torch.zeros(len(images), 2, 3, dtype=images.dtype)
    theta[:, 0, 0], theta[:, 1, 1] = scale[:, 0], scale[:, 1]
    theta[:, :, 2] = offset
    grid = F.affine_grid(theta, [len(images), 3, CROP_SIZE, CROP_SIZE], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def heatmaps_to_landmarks(heatmaps: torch.Tensor, centre: torch.Tensor, side: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """FAN heatmaps (B, L, S, S) -> landmarks (B, L, 2) in image pixels and scores (B,) (mean peak value)."""
    sizes = check_shape(heatmaps, ("B", "L", "S", "S"), "heatmaps")
    size = sizes["S"]
    flat = heatmaps.flatten(2)
    peak, index = flat.max(-1)
    x, y = index % size, index // size
    def value(dx, dy):
        xs, ys = (x + dx).clamp(0, size - 1), (y + dy).clamp(0, size - 1)
        return flat.gather(-1, (ys * size + xs)[..., None])[..., 0]
    nudge_x = 0.25 * torch.sign(value(1, 0) - value(-1, 0))
    nudge_y = 0.25 * torch.sign(value(0, 1) - value(0, -1))
    points = torch.stack((x + nudge_x, y + nudge_y), -1).to(side.dtype)
    pixel = side[:, None, None] / size
    landmarks = centre[:, None, :] - side[:, None, None] / 2 + (points + 0.5) * pixel
    return landmarks, peak.mean(-1)


class FanDetector(LandmarkDetector):
    """68 landmarks from FAN on dlib HOG face boxes.

    Args:
        weights: the TorchScript file ``2DFAN4-cd938726ad.zip``; None looks in the torch hub cache.
        upsample, threshold: dlib HOG detector settings (see `HogFaceFinder`).
        reference_scale: box size (width + height) that maps to a 200-pixel crop; smaller = larger crop.
    """

    name = "fan"
    num_landmarks = 68

    def __init__(self, weights: str | None = None, upsample: int = 1, threshold: float = 0.0, reference_scale: float = 165.0):
        if reference_scale <= 0:
            raise ValueError(f"reference_scale must be > 0, got {reference_scale}")
        self._args = (weights, upsample, threshold, reference_scale)
        self._network = load_fan(weights)
        self._faces = HogFaceFinder(upsample, threshold)
        self.reference_scale = float(reference_scale)

    def __reduce__(self):
        """Pickle by constructor arguments: each process loads the weights itself."""
        return (type(self), self._args)

    @torch.no_grad()
    def detect_uint8(self, images: np.ndarray) -> Detections:
        """images (B, H, W, 3) uint8 RGB -> Detections (landmarks (B, 68, 2) pixels)."""
        check_shape(images, ("B", "H", "W", 3), "uint8 images")
        num_images = images.shape[0]
        landmarks = torch.zeros(num_images, self.num_landmarks, 2)
        score = torch.zeros(num_images)
        faces = [self._faces.find(np.ascontiguousarray(image)) for image in images]
        found = torch.tensor([face is not None for face in faces], dtype=torch.bool)
        if found.any():
            boxes = torch.tensor([[b.left(), b.top(), b.right(), b.bottom()] for b, _ in filter(None, faces)], dtype=torch.float32)
            centre, side = crop_boxes(boxes, self.reference_scale)
            pixels = torch.from_numpy(images[found.numpy()]).permute(0, 3, 1, 2).float() / 255.0
            heatmaps = self._network(crop_images(pixels, centre, side))
            if isinstance(heatmaps, (list, tuple)):
                heatmaps = heatmaps[-1]
            check_shape(heatmaps, (len(boxes), self.num_landmarks, "S", "S"), "FAN heatmaps")
            landmarks[found], score[found] = heatmaps_to_landmarks(heatmaps.float(), centre, side)
        return Detections(landmarks, found, score)
