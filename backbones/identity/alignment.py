"""Face alignment for identity networks: non-differentiable landmark detection, differentiable warp.

Conventions: images (B, 3, H, W) float in [-1, 1]; points (B, P, 2) are pixel coordinates (x, y)
with the origin at the centre of the top-left pixel; an affine `chip_to_image` (B, 2, 3) maps a
chip pixel (x, y, 1) to image pixel coordinates.

- `FacePointDetector` finds faces with dlib's HOG detector on a detached uint8 copy and returns
  either dlib's own 5 points (``scheme="dlib5"``, shape_predictor_5: outer and inner eye corners,
  bottom of the nose) or the 5 points of insightface's ArcFace template (``scheme="arcface5"``,
  from the 68-point predictor: eye centres, nose tip, mouth corners).
- `dlib_chip_to_image` reproduces dlib's ``get_face_chip_details`` + ``extract_image_chip``
  geometry (similarity fit of the 5-point template, chip of `size` with `padding`), and
  `extract_chips` samples the chip bilinearly with `grid_sample`, so gradients reach the image.
  Where the chip shrinks the face by more than 2x, dlib samples from an image pyramid; we do the
  same with a differentiable [1 4 6 4 1]/16 blur-and-halve pyramid (close to, not bit-equal with,
  dlib's pyramid_down<2>).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from backbones.identity.base import check_images, raise_if_missing
from common.errors import UserError
from common.shapes import check_finite, check_shape

# dlib's get_face_chip_details template for shape_predictor_5 (unit square, before padding).
DLIB_FIVE_POINT_TEMPLATE = (
    (0.8595674595992, 0.2134981538014),
    (0.6460604764104, 0.2289674387677),
    (0.1205750620789, 0.2137274526848),
    (0.3340850613712, 0.2290642403242),
    (0.4901123135679, 0.6277975316475),
)
# insightface's ArcFace template in a 112x112 chip: eye (image left), eye (image right), nose tip,
# mouth corner (image left), mouth corner (image right).
ARCFACE_TEMPLATE_112 = (
    (38.2946, 51.6963),
    (73.5318, 51.5014),
    (56.0252, 71.7366),
    (41.5493, 92.3655),
    (70.7299, 92.2041),
)
PREDICTOR_FILES = {"dlib5": "shape_predictor_5_face_landmarks.dat", "arcface5": "shape_predictor_68_face_landmarks.dat"}


def images_to_uint8(images: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) float in [-1, 1] -> detached (B, H, W, 3) uint8 RGB (clipped, rounded)."""
    check_shape(images, ("B", 3, "H", "W"), "images")
    pixels = ((images.detach().float().cpu() + 1.0) * 127.5).round().clamp(0, 255)
    return pixels.to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def models_dir() -> Path:
    """The models/ folder of face-recognition-models, found without importing the package."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("face-recognition-models is not installed; pip install face-recognition-models")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


class FacePointDetector:
    """dlib HOG face detector + shape predictor -> 5 alignment points per image (see module doc).

    One face per image: the detection with the highest score. Not differentiable (runs on uint8).
    """

    def __init__(self, scheme: str = "dlib5", upsample: int = 1, predictor_path: str | Path | None = None):
        import dlib

        if scheme not in PREDICTOR_FILES:
            raise ValueError(f"unknown alignment scheme {scheme!r}; use one of {', '.join(PREDICTOR_FILES)}")
        if upsample < 0:
            raise ValueError(f"upsample must be >= 0, got {upsample}")
        path = Path(predictor_path) if predictor_path else models_dir() / PREDICTOR_FILES[scheme]
        if not path.is_file():
            raise UserError(f"{PREDICTOR_FILES[scheme]} not found at {path}; pip install face-recognition-models")
        self.scheme = scheme
        self.upsample = upsample
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(path))

    def detect(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B, 3, H, W) in [-1, 1] -> (points (B, 5, 2) float64 pixels, zeros where not found;
        found (B,) bool)."""
        frames = images_to_uint8(images)
        points = np.zeros((len(frames), 5, 2))
        found = np.zeros(len(frames), bool)
        for index, frame in enumerate(frames):
            boxes, scores, _ = self._detector.run(frame, self.upsample, 0.0)
            if len(boxes):
                shape = self._predictor(frame, boxes[int(np.argmax(scores))])
                parts = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
                points[index] = parts if self.scheme == "dlib5" else _arcface_points_from_68(parts)
                found[index] = True
        return torch.from_numpy(points), torch.from_numpy(found)


def _arcface_points_from_68(parts: np.ndarray) -> np.ndarray:
    """(68, 2) iBUG landmarks -> (5, 2): eye centres, nose tip, mouth corners (image left first)."""
    return np.stack([parts[36:42].mean(0), parts[42:48].mean(0), parts[30], parts[48], parts[54]])


def similarity_transform(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Least-squares similarity (Umeyama 1991) mapping source points to target points.

    source, target (B, N, 2) -> (B, 2, 3) with target ≈ A @ [x, y, 1]ᵀ, A = [s·R | t], det R = +1.
    """
    sizes = check_shape(source, ("B", "N", 2), "source points")
    check_shape(target, (sizes["B"], sizes["N"], 2), "target points")
    source_mean, target_mean = source.mean(1, keepdim=True), target.mean(1, keepdim=True)
    source_centred, target_centred = source - source_mean, target - target_mean
    covariance = target_centred.transpose(1, 2) @ source_centred / source.shape[1]
    u, singular, vh = torch.linalg.svd(covariance)
    sign = torch.ones_like(singular)
    sign[:, 1] = torch.sign(torch.det(u) * torch.det(vh))
    rotation = u @ torch.diag_embed(sign) @ vh
    variance = source_centred.pow(2).sum((1, 2)) / source.shape[1]
    scale = (singular * sign).sum(1) / variance
    linear = scale[:, None, None] * rotation
    translation = target_mean.transpose(1, 2) - linear @ source_mean.transpose(1, 2)
    return torch.cat([linear, translation], dim=2)


def dlib_chip_to_image(points: torch.Tensor, size: int = 150, padding: float = 0.25) -> torch.Tensor:
    """dlib's chip geometry for shape_predictor_5 points (B, 5, 2) -> chip_to_image (B, 2, 3).

    As ``get_face_chip_details(det, size, padding)``: a similarity fit of the padded template
    (times `size`) to the points gives angle, scale and the chip centre; ``extract_image_chip`` then
    maps chip corners (0, 0) and (size-1, size-1) to the corners of dlib's ``centered_drect`` of
    side size·scale - 1 around that centre (rotated by the fitted angle).
    """
    check_shape(points, ("B", 5, 2), "five alignment points")
    if size < 2 or padding < 0:
        raise ValueError(f"chip size must be >= 2 and padding >= 0, got size={size}, padding={padding}")
    template = (torch.tensor(DLIB_FIVE_POINT_TEMPLATE, dtype=torch.float64) + padding) / (2 * padding + 1) * size
    fit = similarity_transform(template.expand(points.shape[0], -1, -1), points.to(torch.float64))
    centre = fit[:, :, :2] @ torch.full((2, 1), size / 2.0, dtype=torch.float64) + fit[:, :, 2:]
    scale = fit[:, :, :2].det().abs().sqrt()
    linear = fit[:, :, :2] * ((size * scale - 1.0) / ((size - 1.0) * scale))[:, None, None]
    offset = centre - linear @ torch.full((2, 1), (size - 1) / 2.0, dtype=torch.float64)
    return torch.cat([linear, offset], dim=2)


def template_chip_to_image(points: torch.Tensor, template: torch.Tensor) -> torch.Tensor:
    """Points (B, P, 2) and a chip template (P, 2) in chip pixels -> chip_to_image (B, 2, 3): the
    inverse of the least-squares similarity from the points to the template (insightface's
    ``norm_crop`` fits image -> chip the same way and warps with its inverse)."""
    check_shape(template, ("P", 2), "template")
    check_shape(points, ("B", template.shape[0], 2), "alignment points")
    image_to_chip = similarity_transform(
        points.to(torch.float64), template.to(torch.float64).expand(points.shape[0], -1, -1)
    )
    linear = torch.linalg.inv(image_to_chip[:, :, :2])
    return torch.cat([linear, -linear @ image_to_chip[:, :, 2:]], dim=2)


def centred_chip_to_image(num_images: int, height: int, width: int, size: int) -> torch.Tensor:
    """Fallback geometry without landmarks: the chip covers the largest centred square of the image.
    -> chip_to_image (num_images, 2, 3)."""
    side = min(height, width)
    scale = (side - 1) / (size - 1.0)
    affine = torch.tensor(
        [[scale, 0.0, (width - side) / 2.0], [0.0, scale, (height - side) / 2.0]], dtype=torch.float64
    )
    return affine.expand(num_images, -1, -1).clone()


def chip_geometry_or_centre(
    images: torch.Tensor,
    detector: FacePointDetector,
    on_missing: str,
    chip_size: int,
    placeholder_points: torch.Tensor,
    points_to_chip: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """chip_to_image (B, 2, 3) for images (B, 3, H, W) in [-1, 1] (non-differentiable).

    Faces are aligned by `points_to_chip` on the detector's 5 points (B, 5, 2); where no face was
    found, `on_missing="error"` raises and `"centre"` takes `centred_chip_to_image`. Rows without a
    face are aligned on `placeholder_points` (5, 2) first, so the transform stays well defined.
    """
    check_images(images)
    points, found = detector.detect(images)
    if on_missing == "error":
        raise_if_missing(found)
    safe_points = torch.where(found[:, None, None], points, placeholder_points.to(points).expand_as(points))
    fallback = centred_chip_to_image(images.shape[0], images.shape[2], images.shape[3], chip_size)
    return torch.where(found[:, None, None], points_to_chip(safe_points), fallback)


def _halve(images: torch.Tensor) -> torch.Tensor:
    """One pyramid level: [1 4 6 4 1]/16 blur (replicated border) and every second pixel; pixel i of
    the result sits at pixel 2i of the input. (B, C, H, W) -> (B, C, ceil(H/2), ceil(W/2))."""
    taps = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], dtype=images.dtype, device=images.device) / 16.0
    channels = images.shape[1]
    padded = F.pad(images, (2, 2, 2, 2), mode="replicate")
    rows = F.conv2d(padded, taps.view(1, 1, 5, 1).expand(channels, 1, 5, 1), stride=(2, 1), groups=channels)
    return F.conv2d(rows, taps.view(1, 1, 1, 5).expand(channels, 1, 1, 5), stride=(1, 2), groups=channels)


def extract_chips(images: torch.Tensor, chip_to_image: torch.Tensor, size: int) -> torch.Tensor:
    """Differentiable chip extraction: images (B, C, H, W), chip_to_image (B, 2, 3) -> (B, C, size, size).

    Bilinear sampling at the mapped pixel centres (zeros outside the image, as dlib). Where one chip
    pixel spans more than two image pixels, sampling happens on a blurred, halved pyramid level
    instead (level k for a scale in (2^k, 2^(k+1)]), as dlib does to avoid aliasing; there the
    image border is extended rather than zero.
    """
    sizes = check_shape(images, ("B", "C", "H", "W"), "images")
    check_shape(chip_to_image, (sizes["B"], 2, 3), "chip_to_image")
    check_finite(chip_to_image, "chip_to_image")
    scale = chip_to_image[:, :, :2].det().abs().sqrt()
    levels = torch.where(scale > 2.0, torch.ceil(torch.log2(scale)) - 1, torch.zeros_like(scale)).long()
    ys, xs = torch.meshgrid(
        torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64), indexing="ij"
    )
    chip_pixels = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1).reshape(-1, 3)
    chips = images.new_zeros(sizes["B"], sizes["C"], size, size)
    level_images = images
    for level in range(int(levels.max()) + 1):
        if level:
            level_images = _halve(level_images)
        selected = (levels == level).nonzero().squeeze(1)
        if selected.numel() == 0:
            continue
        image_points = chip_pixels @ chip_to_image[selected].transpose(1, 2) / 2.0**level  # (b, size², 2)
        height, width = level_images.shape[2:]
        normalise = torch.tensor([2.0 / max(width - 1, 1), 2.0 / max(height - 1, 1)], dtype=torch.float64)
        grid = (image_points * normalise - 1.0).reshape(-1, size, size, 2).to(images.dtype)
        chips[selected] = F.grid_sample(
            level_images[selected],
            grid.to(images.device),
            mode="bilinear",
            padding_mode="zeros" if level == 0 else "border",
            align_corners=True,
        )
    return chips


__all__ = [
    "ARCFACE_TEMPLATE_112",
    "DLIB_FIVE_POINT_TEMPLATE",
    "FacePointDetector",
    "centred_chip_to_image",
    "dlib_chip_to_image",
    "extract_chips",
    "images_to_uint8",
    "models_dir",
    "similarity_transform",
    "template_chip_to_image",
]
