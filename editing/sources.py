"""Faces from photos, folders of photos and videos: frames -> landmarks -> attributes q.

A source is the path of an image file (.png, .jpg, ...), a folder of images (sorted by name) or a
video (`editing.video`). Frames are uint8 RGB (T, S, S, 3): non-square pictures are padded with black
to a square around their centre, so that landmarks normalised by the side keep the face's aspect, as
the generator's square images do. Landmarks come from the detector the NRSfM model was fit on
(`detector_for_model` refuses a detector with another number of landmarks), in normalised image
units (B, L, 2), and q from `nrsfm.fit_q`, batched over frames and warm-started (`fit_frames`).
Frames without a face are skipped and counted; a source without any face is a UserError.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from PIL import Image

import conf
from backbones.landmarks.base import Detections
from common.cli import build
from common.errors import UserError
from common.shapes import check_shape
from editing.attributes import attribute_indices
from editing.video import FrameRange, is_video_path, read_video
from nrsfm.fit_q import fit_q
from nrsfm.model import AttributeLayout, NRSfMModel

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
DEFAULT_FPS = 25.0
ALL_FRAMES = FrameRange()

logger = logging.getLogger(__name__)


@dataclass
class SourceFrames:
    """Pictures of a source: ``frames`` (T, S, S, 3) uint8 RGB, their ``fps`` and ``names`` (T,) (file names or frame numbers)."""

    frames: np.ndarray
    fps: float
    names: list[str]


@dataclass
class SourceAttributes:
    """What a source's frames show.

    Attributes:
        q: (T, 8 + K) fitted attributes, NaN rows where no face was found.
        found: (T,) bool.
        landmarks: (T, L, 2) detected landmarks in normalised image units (zeros where not found).
    """

    q: torch.Tensor
    found: torch.Tensor
    landmarks: torch.Tensor

    @property
    def num_missing(self) -> int:
        return int((~self.found).sum())


def is_image_source(value: Any) -> bool:
    """Whether a face setting (``source=...``) names pictures: an image file, a video or a folder."""
    if not isinstance(value, (str, Path)) or str(value).lstrip("-").isdigit():
        return False
    path = Path(value)
    return path.suffix.lower() in IMAGE_SUFFIXES or is_video_path(path) or path.is_dir()


def square(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (S, S, 3), S = max(H, W): the picture centred on black."""
    height, width = image.shape[:2]
    side = max(height, width)
    top, left = (side - height) // 2, (side - width) // 2
    return np.pad(image, ((top, side - height - top), (left, side - width - left), (0, 0)))


def as_rgb(image: np.ndarray, path: Path) -> np.ndarray:
    """An image as read (gray (H, W), RGB or RGBA; uint8 or 16-bit) -> (H, W, 3) uint8 RGB."""
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, -1)
    if image.ndim != 3 or image.shape[-1] not in (3, 4):
        raise UserError(f"{path} is not an RGB or gray picture (shape {image.shape}); give a photo")
    if image.dtype == np.uint16:
        image = (image // 257).astype(np.uint8)
    return np.ascontiguousarray(image[..., :3].astype(np.uint8))


def read_image(path: Path) -> np.ndarray:
    """One picture file -> (H, W, 3) uint8 RGB; UserError when it cannot be read."""
    try:
        image = iio.imread(path)
    except (OSError, ValueError, SyntaxError) as error:
        raise UserError(
            f"cannot read image {path} ({' '.join(str(error).split())[:120]}); give a .png or .jpg photo"
        ) from error
    return as_rgb(np.asarray(image), path)


def resized(image: np.ndarray, side: int) -> np.ndarray:
    """(S, S, 3) uint8 -> (side, side, 3) uint8 (bilinear; unchanged when already that size)."""
    if image.shape[0] == side:
        return image
    return np.asarray(Image.fromarray(image).resize((side, side), Image.BILINEAR))


def read_source(path: str | Path, frames: FrameRange = ALL_FRAMES) -> SourceFrames:
    """The square frames of an image file, a folder of images (sorted by name, each resized to the
    first one's size) or a video; `frames` picks frames of a video or folder."""
    path = Path(path)
    if path.is_dir():
        files = sorted(file for file in path.iterdir() if file.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise UserError(f"folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)}); give a folder of photos")
        chosen = [files[index] for index in frames.indices(len(files), f"folder {path}")]
        pictures = [square(read_image(file)) for file in chosen]
        side = pictures[0].shape[0]
        return SourceFrames(
            np.stack([resized(picture, side) for picture in pictures]), DEFAULT_FPS, [file.name for file in chosen]
        )
    if is_video_path(path):
        video, fps = read_video(path, frames)
        numbers = [str(frames.start + i * frames.step) for i in range(len(video))]
        return SourceFrames(np.stack([square(frame) for frame in video]), fps, numbers)
    if not path.is_file():
        raise UserError(f"{path} not found; give an image, a folder of images or a video")
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise UserError(
            f"{path} is neither an image ({', '.join(IMAGE_SUFFIXES)}) nor a video; give a photo or a video"
        )
    return SourceFrames(square(read_image(path))[None], DEFAULT_FPS, [path.name])


def detector_for_model(spec: Any, model: NRSfMModel):
    """The landmark detector for faces fitted with `model`, checked against its landmark layout.

    Args:
        spec: None (the detector the model was fit on, by its name in ``metadata["landmarks"]``), the
            name of a conf/landmarks option (``dlib``, ``mediapipe``, ``fan``) or a config node with ``_target_``.
    Raises:
        UserError: a detector whose number of landmarks differs from the model's.
    """
    fitted_on = model.metadata.get("landmarks")
    name = fitted_on if spec is None else spec
    if isinstance(name, str):
        options = sorted(file.stem for file in (Path(conf.__file__).parent / "landmarks").glob("*.yaml"))
        if name not in options:
            raise UserError(
                f"unknown landmark detector {name!r} (the NRSfM model was fit on {fitted_on!r}); "
                f"set detector= one of {', '.join(options)}"
            )
        spec = OmegaConf.load(Path(conf.__file__).parent / "landmarks" / f"{name}.yaml")
    detector = build(spec if isinstance(spec, DictConfig) else OmegaConf.create(spec), "landmark detector")
    if detector.num_landmarks != model.num_landmarks:
        raise UserError(
            f"detector {detector.name!r} gives {detector.num_landmarks} landmarks, but the NRSfM model was fit on "
            f"{model.num_landmarks} ({fitted_on}); use detector={fitted_on} or null (the model's own)"
        )
    if fitted_on is not None and detector.name != fitted_on:
        warnings.warn(
            f"detector {detector.name!r} differs from the one the NRSfM model was fit on ({fitted_on!r}); "
            "its landmarks share the count, so q is fitted, but it may be biased",
            stacklevel=2,
        )
    return detector


def detect_frames(detector, frames: np.ndarray, batch_size: int = 16) -> Detections:
    """uint8 frames (T, S, S, 3) -> Detections with landmarks (T, L, 2) in normalised units."""
    check_shape(frames, ("T", "S", "S", 3), "frames")
    parts = []
    for start in range(0, len(frames), batch_size):
        chunk = torch.from_numpy(frames[start : start + batch_size]).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        parts.append(detector.detect(chunk))
    landmarks = torch.cat([part.landmarks for part in parts]) / float(frames.shape[1])
    return Detections(landmarks, torch.cat([part.found for part in parts]), torch.cat([part.score for part in parts]))


def landmark_residual(model: NRSfMModel, q: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
    """(B,) squared distance |R(q) - X|^2 summed over landmarks: q (B, D), landmarks (B, L, 2)."""
    with torch.no_grad():
        return (model(q) - landmarks).square().sum((-1, -2))


def fit_frames(model: NRSfMModel, landmarks: torch.Tensor, found: torch.Tensor) -> torch.Tensor:
    """q of every found frame, batched and warm-started: (T, L, 2), (T,) -> (T, 8 + K), NaN rows where not found.

    All found frames are fitted at once from the closed-form start (`nrsfm.fit_q`), then once more,
    again at once, each from the fit of the found frame before it; per frame the fit with the smaller
    landmark residual is kept, so a frame whose own start led to a worse optimum takes its neighbour's.
    """
    dtype = model.mean_shape.dtype
    q = torch.full((len(found), model.layout.dim), math.nan, dtype=dtype)
    if not bool(found.any()):
        return q
    points = landmarks[found].to(dtype)
    cold = fit_q(model, points)
    if len(points) > 1:
        warm = fit_q(model, points[1:], q_init=cold[:-1])
        better = landmark_residual(model, warm, points[1:]) < landmark_residual(model, cold[1:], points[1:])
        cold[1:] = torch.where(better[:, None], warm, cold[1:])
    q[found] = cold
    return q


def source_attributes(
    model: NRSfMModel, detector, frames: np.ndarray, source: str, batch_size: int = 16
) -> SourceAttributes:
    """Detect and fit the frames (T, S, S, 3) of `source` (named in messages); UserError when no frame shows a face."""
    detections = detect_frames(detector, frames, batch_size)
    found = detections.found.bool()
    if not bool(found.any()):
        what = source if len(frames) == 1 else f"any of the {len(frames)} frames of {source}"
        raise UserError(
            f"no face found in {what} by the {detector.name} detector; give a picture with a clear, "
            "roughly frontal face"
        )
    attributes = SourceAttributes(fit_frames(model, detections.landmarks, found), found, detections.landmarks)
    if attributes.num_missing:
        logger.warning(f"{source}: no face in {attributes.num_missing} of {len(frames)} frames")
    return attributes


def pictures_q(model: NRSfMModel, detector_spec: Any, pictures: SourceFrames, source: str) -> torch.Tensor:
    """q (S, 8 + K) of the faces in the frames of `source` (read with `read_source`); frames without a
    face are skipped and counted in a warning."""
    attributes = source_attributes(model, detector_for_model(detector_spec, model), pictures.frames, source)
    if attributes.num_missing:
        warnings.warn(
            f"{source}: skipped {attributes.num_missing} of {len(pictures.frames)} frames without a face", stacklevel=2
        )
    return attributes.q[attributes.found]


def source_changes(q: torch.Tensor, parts: list[str], layout: AttributeLayout) -> dict[str, float]:
    """One face's q (D,) -> absolute edit changes ``{"yaw": degrees, "alpha.0": value, ...}`` for the entries `parts` name."""
    names = layout.names()
    angles = range(layout.rotation.start, layout.rotation.stop)
    return {
        names[index]: float(torch.rad2deg(q[index]) if index in angles else q[index])
        for index in attribute_indices(parts, layout)
    }
