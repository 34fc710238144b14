"""Video files in and out, through imageio-ffmpeg and the ffmpeg binary its wheel ships.

Frames are uint8 RGB arrays (T, H, W, 3). `read_video` decodes a file (any container and codec the
bundled ffmpeg reads: .mp4, .mov, .avi, .mkv, .webm, ...) and keeps the frames of a `FrameRange`;
`write_video` encodes H.264 (yuv420p, so odd sizes are padded by one black row or column) into a
temporary name and renames it into place. Nothing is taken from the system's ffmpeg and nothing
is downloaded: the binary is the one inside the ``imageio-ffmpeg`` wheel.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.errors import UserError
from common.io import atomic_path
from common.shapes import check_shape

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv")
INSTALL = "pip install imageio-ffmpeg (its wheel ships its own ffmpeg)"


@dataclass(frozen=True)
class FrameRange:
    """Frames start, start + step, ... before stop (None: to the end), counted from 0."""

    start: int = 0
    stop: int | None = None
    step: int = 1

    def indices(self, num_frames: int, source: str) -> range:
        """The chosen frame numbers of a source with `num_frames` frames; UserError when the range is empty or outside it."""
        if self.start < 0 or self.step < 1 or (self.stop is not None and self.stop <= self.start):
            raise UserError(
                f"frames must satisfy 0 <= start < stop and step >= 1, got start={self.start}, stop={self.stop}, "
                f"step={self.step}"
            )
        if self.start >= num_frames:
            raise UserError(
                f"frames.start={self.start} is outside {source}, which has {num_frames} frame(s) (0..{num_frames - 1}); "
                "lower frames.start"
            )
        if self.stop is not None and self.stop > num_frames:
            raise UserError(
                f"frames.stop={self.stop} is outside {source}, which has {num_frames} frame(s); "
                f"set frames.stop={num_frames} or null (to the end)"
            )
        return range(self.start, num_frames if self.stop is None else self.stop, self.step)


def is_video_path(path: str | Path) -> bool:
    """Whether `path` names a video file by its suffix."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def _ffmpeg():
    if importlib.util.find_spec("imageio_ffmpeg") is None:
        raise UserError(f"reading and writing videos needs imageio-ffmpeg; {INSTALL}")
    import imageio_ffmpeg

    return imageio_ffmpeg


def read_video(path: str | Path, frames: FrameRange = FrameRange()) -> tuple[np.ndarray, float]:
    """Decode the frames of `frames` from the video at `path`.

    Returns:
        (T, H, W, 3) uint8 RGB frames and the video's frames per second.
    Raises:
        UserError: the file is missing, not a video ffmpeg can read, holds no frame, or `frames`
            lies outside it.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"video {path} not found; give the path of a video file")
    if path.stat().st_size == 0:
        raise UserError(f"video {path} is empty (0 bytes); give a video with at least one frame")
    ffmpeg = _ffmpeg()
    reader = ffmpeg.read_frames(str(path))
    try:
        meta = next(reader)
        width, height = meta["size"]
        decoded = [np.frombuffer(chunk, np.uint8).reshape(height, width, 3) for chunk in reader]
    except (OSError, RuntimeError, StopIteration, KeyError, ValueError) as error:
        reason = " ".join(str(error).split("===")[0].split())[:160] or type(error).__name__
        raise UserError(
            f"cannot read video {path}: ffmpeg could not decode it ({reason}); give an .mp4, .mov, .avi or .mkv file"
        ) from error
    finally:
        reader.close()
    if not decoded:
        raise UserError(f"video {path} holds no frames; give a video with at least one frame")
    chosen = frames.indices(len(decoded), f"video {path}")
    return np.stack([decoded[index] for index in chosen]), float(meta.get("fps") or 25.0)


def write_video(path: str | Path, frames: np.ndarray, fps: float) -> Path:
    """Encode frames (T, H, W, 3) uint8 RGB as H.264 at `fps`, atomically; returns the path."""
    check_shape(frames, ("T", "H", "W", 3), "video frames")
    if frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"video frames must be a non-empty uint8 array, got {len(frames)} of {frames.dtype}")
    if not fps > 0:
        raise UserError(f"fps must be positive, got {fps}")
    height, width = frames.shape[1:3]
    padded = np.pad(frames, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)))
    ffmpeg = _ffmpeg()
    with atomic_path(path) as tmp:
        writer = ffmpeg.write_frames(
            str(tmp),
            (padded.shape[2], padded.shape[1]),
            fps=float(fps),
            codec="libx264",
            macro_block_size=1,
            ffmpeg_log_level="error",
        )
        writer.send(None)
        for frame in padded:
            writer.send(np.ascontiguousarray(frame))
        writer.close()
    return Path(path)
