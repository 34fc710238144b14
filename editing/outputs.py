"""What an edit writes: latents in NVIDIA's exchange format, a side-by-side PNG and a trajectory GIF.

- Latents: `.npz` with ``w`` float32 (N, num_ws, w_dim), as NVIDIA's projector writes
  ``projected_w.npz``, plus any named arrays and a JSON ``metadata`` string; read back with
  `load_latents` (no pickles).
- Images come in as float32 (B, 3, H, W) in [-1, 1] and are written as uint8 RGB.
- Side by side: one row per face, columns original | edit | edit with landmarks, where the target
  landmarks R(q_target) are drawn as green rings and the achieved ones as red dots.
- Every file is written under a temporary name in the same folder and renamed into place.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np
import torch
from PIL import Image, ImageDraw

from common.errors import UserError
from common.io import atomic_path, save_npz_atomic
from common.shapes import check_finite, check_shape

TARGET_COLOR = (40, 220, 60)
ACHIEVED_COLOR = (235, 40, 40)


def save_latents(path: str | Path, ws: torch.Tensor, metadata: dict[str, Any] | None = None, **arrays: Any) -> Path:
    """Write ws (N, num_ws, w_dim) as ``w`` with named extra arrays and JSON metadata; returns the path."""
    check_shape(ws, ("N", "num_ws", "w_dim"), "ws")
    check_finite(ws, "ws")
    extra = {
        name: np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value)
        for name, value in arrays.items()
    }
    save_npz_atomic(path, w=ws.detach().cpu().float().numpy(), metadata=np.array(json.dumps(metadata or {})), **extra)
    return Path(path)


def load_latents(path: str | Path) -> tuple[torch.Tensor, dict[str, Any]]:
    """Read ``w`` (N, num_ws, w_dim) and the metadata (empty for NVIDIA's own files) from a latent `.npz`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"latent file {path} not found; give a .npz with an array w of shape (N, num_ws, w_dim)")
    try:
        with np.load(path, allow_pickle=False) as data:
            ws = torch.from_numpy(data["w"].astype(np.float32))
            metadata = json.loads(str(data["metadata"])) if "metadata" in data else {}
    except (OSError, KeyError, ValueError) as error:
        raise UserError(
            f"{path} is not a latent file ({error}); give a .npz with an array w of shape (N, num_ws, w_dim)"
        ) from error
    check_shape(ws, ("N", "num_ws", "w_dim"), f"w in {path}")
    check_finite(ws, f"w in {path}")
    return ws, metadata


def images_to_uint8(images: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) float in [-1, 1] -> (B, H, W, 3) uint8."""
    check_shape(images, ("B", 3, "H", "W"), "images")
    pixels = ((images.detach().cpu().float() + 1) * 127.5).round().clamp(0, 255)
    return pixels.to(torch.uint8).permute(0, 2, 3, 1).numpy()


def draw_landmarks(
    image: np.ndarray, landmarks: np.ndarray, color: tuple[int, int, int], ring: bool = False
) -> np.ndarray:
    """Copy of image (H, W, 3) uint8 with landmarks (L, 2), normalised (x / W, y / H), drawn as dots or rings."""
    check_shape(image, ("H", "W", 3), "image")
    check_shape(landmarks, ("L", 2), "landmarks")
    height, width = image.shape[:2]
    radius = max(1.0, min(height, width) / 128)
    canvas = Image.fromarray(np.ascontiguousarray(image))
    draw = ImageDraw.Draw(canvas)
    for x, y in np.asarray(landmarks, dtype=np.float64) * (width, height):
        box = (x - radius, y - radius, x + radius, y + radius)
        draw.ellipse(box, outline=color if ring else None, fill=None if ring else color)
    return np.asarray(canvas)


def side_by_side(
    original: torch.Tensor,
    edited: torch.Tensor,
    target_landmarks: torch.Tensor,
    achieved_landmarks: torch.Tensor,
    reference: torch.Tensor | None = None,
) -> np.ndarray:
    """Grid image (B * H, C * W, 3) uint8: per face [reference |] original | edit | edit with target and
    achieved landmarks (C = 3, or 4 with a reference).

    Args:
        original, edited: (B, 3, H, W) in [-1, 1].
        target_landmarks, achieved_landmarks: (B, L, 2) normalised image coordinates.
        reference: (B, 3, H, W) in [-1, 1], e.g. the source faces of a transfer, shown first.
    """
    sizes = check_shape(original, ("B", 3, "H", "W"), "original")
    check_shape(edited, ("B", 3, "H", "W"), "edited", sizes)
    sizes = check_shape(target_landmarks, ("B", "L", 2), "target_landmarks", sizes)
    check_shape(achieved_landmarks, ("B", "L", 2), "achieved_landmarks", sizes)
    if reference is not None:
        check_shape(reference, ("B", 3, "H", "W"), "reference", sizes)
    before, after = images_to_uint8(original), images_to_uint8(edited)
    firsts = images_to_uint8(reference) if reference is not None else [None] * len(before)
    target, achieved = (marks.detach().cpu().numpy() for marks in (target_landmarks, achieved_landmarks))
    rows = []
    for first, image0, image1, marks_target, marks_achieved in zip(firsts, before, after, target, achieved):
        marked = draw_landmarks(
            draw_landmarks(image1, marks_target, TARGET_COLOR, ring=True), marks_achieved, ACHIEVED_COLOR
        )
        panels = [image0, image1, marked] if first is None else [first, image0, image1, marked]
        rows.append(np.concatenate(panels, axis=1))
    return np.concatenate(rows, axis=0)


def save_png(path: str | Path, image: np.ndarray) -> Path:
    """Write an (H, W, 3) uint8 image atomically as PNG; returns the path."""
    check_shape(image, ("H", "W", 3), "image")
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(image)).save(tmp, format="PNG")
    return Path(path)


def interpolate_latents(latent0: torch.Tensor, latent1: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Straight path from latent0 to latent1, both (B, *S): (num_frames, B, *S), ends included."""
    if num_frames < 2:
        raise ValueError(f"num_frames must be at least 2, got {num_frames}")
    check_shape(latent1, tuple(latent0.shape), "latent1")
    steps = torch.linspace(0, 1, num_frames, dtype=latent0.dtype, device=latent0.device)
    steps = steps.view(-1, *([1] * latent0.dim()))
    return latent0 + steps * (latent1 - latent0)


def save_gif(path: str | Path, frames: torch.Tensor, frame_seconds: float = 0.08) -> Path:
    """Animated GIF of frames (T, B, 3, H, W) in [-1, 1], the B faces side by side, looping; returns the path."""
    check_shape(frames, ("T", "B", 3, "H", "W"), "frames")
    num_frames, batch = frames.shape[:2]
    pixels = images_to_uint8(frames.flatten(0, 1))
    tiles = pixels.reshape(num_frames, batch, *pixels.shape[1:])
    strips = np.concatenate(list(tiles.transpose(1, 0, 2, 3, 4)), axis=2)
    with atomic_path(path) as tmp:
        iio.imwrite(tmp, strips, extension=".gif", duration=int(frame_seconds * 1000), loop=0)
    return Path(path)
