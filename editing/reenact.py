"""Face re-enactment: ``python -m editing.reenact driving=driver.mp4 target=2``.

The driving face (a video, a folder of pictures, or a latent file whose faces the generator renders)
is read frame by frame (``frames.start/stop/step``); its landmarks come from the detector the NRSfM
model was fit on and its q from `nrsfm.fit_q`, batched and warm-started (`editing.sources`). Frames
without a face are filled by interpolation in q and counted, then q is smoothed over time
(``smoothing``: a zero-phase Savitzky-Golay filter, `editing.smoothing`). The target face (a seed or a
latent file with one face) takes the driver's ``parts`` (pose, expression or both) per frame,
``mode=absolute`` or ``relative`` (puppeteering; `editing.reenactment`). ``trajectory`` says how its
latents follow the frames: ``joint`` (default) edits all frames at once with a second-difference
penalty on the latents over time (`editing.reenact_trajectory`), ``frames`` runs the configured editor
frame by frame, batched and warm-started from the previous frames' results. With
``smooth_latents=true`` the edited latents are also filtered over time with the q filter. Writes reenact.mp4 (driving | result), reenact.png
(a strip of frames), edited.npz (w (T, num_ws, w_dim)) and q.csv (`editing.reenact_outputs`) and prints where.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from backbones.generator import Generator
from backbones.landmarks.base import images_to_uint8
from common.cli import exit_on_user_error, launch
from common.errors import UserError
from editing.latents import latents_from_file, resolve_faces
from editing.reenact_outputs import compose_frames, write_reenact_outputs
from editing.reenactment import MODES, PARTS, ClipEditor, reenact_target
from editing.render import render
from editing.session import hold_alpha, load_generator, load_regressor, output_dir
from editing.smoothing import TemporalFilter, fill_missing
from editing.sources import (
    DEFAULT_FPS,
    SourceFrames,
    detector_for_model,
    is_image_source,
    read_source,
    source_attributes,
)
from editing.video import FrameRange


def read_driving(cfg: DictConfig, generator: Generator, frames: FrameRange) -> SourceFrames:
    """The driving frames: pictures read from a video or folder, or the faces of a latent file rendered by `generator`."""
    if is_image_source(cfg.driving):
        return read_source(cfg.driving, frames)
    if not isinstance(cfg.driving, str) or not cfg.driving.endswith(".npz"):
        raise UserError(
            f"cannot read a driving face from {cfg.driving!r}; give a video, a folder of pictures or a latent .npz"
        )
    latents = latents_from_file(generator, cfg.driving, "w+")
    chosen = list(frames.indices(len(latents), f"latent file {cfg.driving}"))
    images = render(generator, latents[chosen], "w+", float(cfg.truncation_psi))
    return SourceFrames(images_to_uint8(images), DEFAULT_FPS, [str(index) for index in chosen])


def run(cfg: DictConfig) -> dict[str, Any]:
    """Re-enact `cfg.target` from `cfg.driving`; returns the output paths, counts and the seconds per stage."""
    seconds: dict[str, float] = {}
    if cfg.parts not in PARTS or cfg.mode not in MODES:
        raise UserError(
            f"parts must be one of {', '.join(PARTS)} and mode one of {', '.join(MODES)}, got {cfg.parts!r}, {cfg.mode!r}"
        )
    frame_range = FrameRange(
        int(cfg.frames.start), None if cfg.frames.stop is None else int(cfg.frames.stop), int(cfg.frames.step)
    )
    smoothing = TemporalFilter(**OmegaConf.to_container(cfg.smoothing, resolve=True))
    editor = ClipEditor(**OmegaConf.to_container(cfg.trajectory, resolve=True))
    generator = load_generator(cfg)
    psi = float(cfg.truncation_psi)
    latent_target = resolve_faces(generator, cfg.target, cfg.latent_space, psi)
    if len(latent_target) != 1:
        raise UserError(
            f"target must be one face, got {len(latent_target)}; give one seed or a latent file holding one face"
        )
    clock = time.perf_counter()
    driving = read_driving(cfg, generator, frame_range)
    seconds["read"] = time.perf_counter() - clock
    regressor = load_regressor(cfg, generator)
    model = regressor.nrsfm
    detector = detector_for_model(cfg.detector, model)
    clock = time.perf_counter()
    observed = source_attributes(model, detector, driving.frames, str(cfg.driving), int(cfg.batch_size))
    q_smoothed = smoothing(fill_missing(observed.q, observed.found), model.layout)
    seconds["detect_fit"] = time.perf_counter() - clock
    clock = time.perf_counter()
    latent_target = latent_target.to(model.q_mean.dtype)
    with torch.no_grad():
        q0 = regressor(latent_target)
    target = reenact_target(
        q0,
        q_smoothed,
        cfg.parts,
        cfg.mode,
        model,
        free=list(cfg.free),
        strict=bool(cfg.strict),
        num_std=float(cfg.num_std),
    )
    target = hold_alpha(cfg, generator, regressor, q0.expand(len(target.q), -1), target)
    latents, q_edit = editor(cfg, generator, regressor, latent_target, target, int(cfg.batch_size))
    if cfg.smooth_latents:
        latents = smoothing.smooth(latents)
        with torch.no_grad():
            q_edit = regressor(latents)
    seconds["edit"] = time.perf_counter() - clock
    clock = time.perf_counter()
    result_images = render(generator, latents, regressor.latent_space, psi, int(cfg.batch_size))
    seconds["render"] = time.perf_counter() - clock
    clock = time.perf_counter()
    resolution = int(cfg.resolution) if cfg.resolution is not None else generator.img_resolution
    with torch.no_grad():
        target_landmarks = model(torch.where(target.constrained, target.q, q_edit)) if cfg.draw_landmarks else None
    frames = compose_frames(
        driving.frames,
        result_images,
        resolution,
        observed.landmarks if cfg.draw_landmarks else None,
        observed.found,
        target_landmarks,
    )
    with torch.no_grad():
        ws, ws_target = (generator.to_ws(latent, regressor.latent_space, psi) for latent in (latents, latent_target))
    metadata = {
        "command": "reenact",
        "generator": generator.name,
        "generator_checksum": generator.checksum(),
        "latent_space": regressor.latent_space,
        "truncation_psi": psi,
        "driving": str(cfg.driving),
        "target": str(cfg.target),
        "parts": cfg.parts,
        "mode": cfg.mode,
        "smoothing": smoothing.describe(),
        "trajectory": editor.describe(),
        "smooth_latents": bool(cfg.smooth_latents),
        "frames_without_face": observed.num_missing,
        "edit": OmegaConf.to_container(cfg.edit, resolve=True),
        "regressor": regressor.metadata["path"],
    }
    q = {"driving": observed.q, "smoothed": q_smoothed, "target": target.q, "achieved": q_edit}
    out_dir = output_dir(cfg, "reenact", generator.name)
    fps = float(cfg.fps) if cfg.fps is not None else driving.fps
    paths = write_reenact_outputs(
        out_dir, frames, fps, ws, ws_target, model.layout, driving.names, observed.found, q, target.mask, metadata
    )
    seconds["write"] = time.perf_counter() - clock
    num_frames = len(driving.frames)
    print(
        f"reenact: {num_frames} frames, {observed.num_missing} without a face (interpolated in q); "
        f"smoothing: {smoothing.describe()}; edits: {editor.describe()}"
    )
    for name, path in paths.items():
        print(f"wrote {name}: {path}")
    return {
        "out_dir": Path(out_dir),
        **paths,
        "num_frames": num_frames,
        "num_interpolated": observed.num_missing,
        "smoothing": smoothing.describe(),
        "trajectory": editor.describe(),
        "seconds": seconds,
        "latents_array": latents,
        "q_edit": q_edit,
        "q_driving": observed.q,
        "found": observed.found,
        "fps": fps,
        "frame_names": driving.names,
    }


@hydra.main(version_base="1.3", config_path="../conf", config_name="reenact")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error():
        run(cfg)


if __name__ == "__main__":
    launch("editing.reenact", "reenact")
