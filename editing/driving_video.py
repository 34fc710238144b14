"""A driving video with ground truth: one synthetic face along a scripted trajectory, to MP4.

`scripted_trajectory` gives per frame (pitch, yaw, roll) in degrees and the synthetic generator's five
expression coefficients (`backbones.synthetic.face_model.EXPRESSION_NAMES`): yaw sweeps from -yaw to
+yaw (a half cosine), pitch nods `num_nods` times between -pitch and +pitch, roll stays 0, and the
smile and the mouth opening rise and fall once each (sin^2 bumps over the middle and the last
third of the clip). `render_driving_video` renders the face of one seed (its identity,
appearance, framing and lighting held) along it with the synthetic generator's own renderer and
returns the frames and the per-frame truth; `write_driving_video` writes ``<name>.mp4`` and
``<name>_truth.npz`` (``rotation_deg`` (T, 3), ``expression`` (T, 5), ``identity`` (T, 16),
``landmarks`` (T, 68, 2) pixels, ``fps``, ``seed``).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import torch

from backbones.landmarks.base import images_to_uint8
from backbones.synthetic.face_model import EXPRESSION_NAMES, NUM_LANDMARKS
from backbones.synthetic.generator import SyntheticGenerator
from common.io import save_npz_atomic
from editing.video import write_video


def scripted_trajectory(
    num_frames: int = 120,
    yaw: float = 25.0,
    pitch: float = 10.0,
    num_nods: float = 2.0,
    smile: float = 0.8,
    mouth_open: float = 0.4,
) -> dict[str, torch.Tensor]:
    """Per-frame ``rotation_deg`` (T, 3) (pitch, yaw, roll) and ``expression`` (T, 5) of the module docstring."""
    if num_frames < 2:
        raise ValueError(f"num_frames must be at least 2, got {num_frames}")
    time = torch.linspace(0.0, 1.0, num_frames, dtype=torch.float64)
    rotation = torch.stack(
        [pitch * torch.sin(2 * math.pi * num_nods * time), -yaw * torch.cos(math.pi * time), torch.zeros_like(time)], -1
    )

    def bump(start: float, stop: float) -> torch.Tensor:
        phase = ((time - start) / (stop - start)).clamp(0.0, 1.0)
        return torch.sin(math.pi * phase).square()

    expression = torch.zeros(num_frames, len(EXPRESSION_NAMES), dtype=torch.float64)
    expression[:, EXPRESSION_NAMES.index("smile")] = smile * bump(0.2, 0.7)
    expression[:, EXPRESSION_NAMES.index("mouth_open")] = mouth_open * bump(0.65, 1.0)
    return {"rotation_deg": rotation.float(), "expression": expression.float()}


def render_driving_video(
    generator: SyntheticGenerator,
    seed: int,
    trajectory: dict[str, torch.Tensor],
    truncation_psi: float = 1.0,
    batch_size: int = 8,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The face of `seed` along `trajectory`: images (T, 3, R, R) in [-1, 1] and the truth
    (rotation_deg (T, 3), expression (T, 5), identity (T, 16), landmarks (T, 68, 2) pixels)."""
    if not callable(getattr(generator, "render", None)) or not callable(getattr(generator, "scene", None)):
        raise ValueError(f"a driving video with ground truth needs the synthetic generator, got {generator.name!r}")
    rotation, expression = trajectory["rotation_deg"], trajectory["expression"]
    num_frames = len(rotation)
    with torch.no_grad():
        face = generator.scene(generator.sample(1, seed, truncation_psi))
        fields = {
            field.name: getattr(face, field.name).expand(num_frames, *getattr(face, field.name).shape[1:])
            for field in dataclasses.fields(face)
        }
        scene = dataclasses.replace(
            face,
            **{**fields, "rotation_deg": rotation.to(face.rotation_deg), "expression": expression.to(face.expression)},
        )
        chunks = [
            dataclasses.replace(scene, **{name: getattr(scene, name)[start : start + batch_size] for name in fields})
            for start in range(0, num_frames, batch_size)
        ]
        images = torch.cat([generator.render(chunk) for chunk in chunks])
        landmarks = torch.cat([generator.posed_vertices(chunk)[1][:, :NUM_LANDMARKS] for chunk in chunks])
    truth = {
        "rotation_deg": scene.rotation_deg.clone(),
        "expression": scene.expression.clone(),
        "identity": scene.identity.clone(),
        "landmarks": landmarks,
    }
    return images, truth


def write_driving_video(
    path: str | Path,
    generator: SyntheticGenerator,
    seed: int,
    num_frames: int = 120,
    fps: float = 25.0,
    **trajectory_options: float,
) -> tuple[Path, Path]:
    """Render the face of `seed` along `scripted_trajectory(num_frames, **trajectory_options)` to the
    MP4 `path` and its truth to ``<stem>_truth.npz`` beside it; returns both paths."""
    path = Path(path)
    images, truth = render_driving_video(generator, seed, scripted_trajectory(num_frames, **trajectory_options))
    write_video(path, images_to_uint8(images), fps)
    truth_path = save_npz_atomic(
        path.with_name(f"{path.stem}_truth.npz"),
        fps=np.float64(fps),
        seed=np.int64(seed),
        **{key: value.numpy() for key, value in truth.items()},
    )
    return path, truth_path
