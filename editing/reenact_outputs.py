"""What `python -m editing.reenact` writes into its folder (every file atomically):

- ``reenact.mp4``: per frame the driving picture | the re-enacted target, each panel `resolution`
  pixels square; with landmarks, the detected driving landmarks (red dots) on the left and the target
  landmarks R(q_target) (green rings) on the right;
- ``reenact.png``: a strip of `num_strip` evenly spaced frames, driving above, result below;
- ``edited.npz``: ``w`` (T, num_ws, w_dim) the result per frame in NVIDIA's layout, ``w_original``
  (1, num_ws, w_dim) the target face, ``q_driving`` (T, D) as fitted (NaN where no face was found),
  ``q_driving_smoothed``, ``q_target``, ``q_edit`` (T, D), ``found`` (T,), ``mask`` (D,) and metadata;
- ``q.csv``: one row per frame: frame, the driving frame's name, found, then driving (as fitted),
  smoothed, target and achieved (phi of the result) q, each entry named ``<kind>.<entry>``, with
  pitch, yaw and roll in degrees.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.io import write_text_atomic
from editing.outputs import ACHIEVED_COLOR, TARGET_COLOR, draw_landmarks, images_to_uint8, save_latents, save_png
from editing.sources import resized
from editing.video import write_video
from nrsfm.model import AttributeLayout

Q_KINDS = ("driving", "smoothed", "target", "achieved")


def compose_frames(
    driving: np.ndarray,
    result: torch.Tensor,
    resolution: int,
    driving_landmarks: torch.Tensor | None = None,
    found: torch.Tensor | None = None,
    target_landmarks: torch.Tensor | None = None,
) -> np.ndarray:
    """Side-by-side frames (T, R, 2R, 3) uint8: driving (T, S, S, 3) uint8 | result (T, 3, H, H) in [-1, 1],
    each resized to R = `resolution`; landmarks (T, L, 2) normalised, driving ones drawn where `found` (T,)."""
    panels = []
    results = images_to_uint8(result)
    for index, (picture, image) in enumerate(zip(driving, results)):
        left, right = resized(picture, resolution), resized(image, resolution)
        if driving_landmarks is not None and bool(found[index]):
            left = draw_landmarks(left, driving_landmarks[index].numpy(), ACHIEVED_COLOR)
        if target_landmarks is not None:
            right = draw_landmarks(right, target_landmarks[index].numpy(), TARGET_COLOR, ring=True)
        panels.append(np.concatenate([left, right], 1))
    return np.stack(panels)


def strip(frames: np.ndarray, num_strip: int) -> np.ndarray:
    """Side-by-side frames (T, R, 2R, 3) -> (2R, n R, 3): n evenly spaced frames, driving above, result below."""
    chosen = np.unique(np.linspace(0, len(frames) - 1, min(num_strip, len(frames))).round().astype(int))
    side = frames.shape[1]
    top = np.concatenate([frames[index, :, :side] for index in chosen], 1)
    bottom = np.concatenate([frames[index, :, side:] for index in chosen], 1)
    return np.concatenate([top, bottom], 0)


def q_table(layout: AttributeLayout, names: list[str], found: torch.Tensor, q: dict[str, torch.Tensor]) -> str:
    """CSV text of the module docstring: q maps each of `Q_KINDS` to (T, D)."""
    entries = layout.names()
    angles = set(range(layout.rotation.start, layout.rotation.stop))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        ["frame", "name", "found"]
        + [f"{kind}.{entry}{'[deg]' if i in angles else ''}" for kind in Q_KINDS for i, entry in enumerate(entries)]
    )
    values = {kind: q[kind].detach().cpu().double().numpy().copy() for kind in Q_KINDS}
    for array in values.values():
        array[:, sorted(angles)] = np.degrees(array[:, sorted(angles)])
    for frame, name in enumerate(names):
        row = [frame, name, int(bool(found[frame]))]
        for kind in Q_KINDS:
            row += [f"{value:.6g}" for value in values[kind][frame]]
        writer.writerow(row)
    return buffer.getvalue()


def write_reenact_outputs(
    out_dir: str | Path,
    frames: np.ndarray,
    fps: float,
    ws: torch.Tensor,
    ws_target: torch.Tensor,
    layout: AttributeLayout,
    names: list[str],
    found: torch.Tensor,
    q: dict[str, torch.Tensor],
    mask: torch.Tensor,
    metadata: dict[str, Any],
    num_strip: int = 8,
) -> dict[str, Path]:
    """Write the files of the module docstring: frames (T, R, 2R, 3) uint8 from `compose_frames`, ws (T, num_ws, w_dim),
    ws_target (1, num_ws, w_dim), q as in `q_table`; returns {"video", "strip", "latents", "csv"} paths."""
    out_dir = Path(out_dir)
    paths = {
        "video": write_video(out_dir / "reenact.mp4", frames, fps),
        "strip": save_png(out_dir / "reenact.png", strip(frames, num_strip)),
    }
    paths["latents"] = save_latents(
        out_dir / "edited.npz",
        ws,
        metadata,
        w_original=ws_target,
        q_driving=q["driving"],
        q_driving_smoothed=q["smoothed"],
        q_target=q["target"],
        q_edit=q["achieved"],
        found=found,
        mask=mask,
    )
    paths["csv"] = write_text_atomic(out_dir / "q.csv", q_table(layout, names, found, q))
    return paths
