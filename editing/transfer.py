"""Attribute transfer: ``python -m editing.transfer source=1 target=2``.

Gives the faces of `target` the parts of q (default: rotation and expression) of the face(s) of
`source`: w_b = Omega_{w_b}(q_a) restricted to `parts` (docs/METHOD.md, "Uses"); everything else keeps
the target's own q. `source` and `target` are seeds, lists of seeds or latent files; `source` holds
one face or as many as `target`. `source` may also be a photo, a folder of photos or a video
(`editing.sources`): its faces' q come from the landmarks of ``detector`` (null: the detector the
NRSfM model was fit on) fitted with `nrsfm.fit_q`; frames without a face are skipped and counted, and
one target face is edited once per remaining frame. ``parts=[rotation]`` moves only the pose, ``parts=[expression]``
only the expression; any names or groups of `editing.attributes` work. ``edit=gradient`` switches
the editor. Writes edited.npz, edit.png (source | target | result | result with landmarks) and
trajectory.gif and prints where.
"""

from __future__ import annotations

from typing import Any

import hydra
import torch
from omegaconf import DictConfig

from common.cli import exit_on_user_error, launch
from editing.attributes import transfer_target
from editing.latents import resolve_faces
from editing.session import apply_editor, finish, hold_alpha, load_generator, load_regressor
from editing.sources import is_image_source, pictures_q, read_source
from editing.video import FrameRange


def run(cfg: DictConfig) -> dict[str, Any]:
    """Transfer `cfg.parts` from `cfg.source` onto `cfg.target`; returns the output paths and the error."""
    generator = load_generator(cfg)
    pictures = read_source(cfg.source, FrameRange()) if is_image_source(cfg.source) else None
    names = ("target",) if pictures is not None else ("source", "target")
    faces = {name: resolve_faces(generator, cfg[name], cfg.latent_space, float(cfg.truncation_psi)) for name in names}
    regressor = load_regressor(cfg, generator)
    faces = {name: latent.to(regressor.nrsfm.q_mean.dtype) for name, latent in faces.items()}
    with torch.no_grad():
        q_target = regressor(faces["target"])
        q_source = (
            regressor(faces["source"])
            if pictures is None
            else pictures_q(regressor.nrsfm, cfg.detector, pictures, str(cfg.source))
        )
    if (
        pictures is not None and len(q_source) > 1 and len(q_target) == 1
    ):  # one target face per frame of a folder or video
        faces["target"] = faces["target"].expand(len(q_source), *faces["target"].shape[1:])
        q_target = q_target.expand(len(q_source), -1)
    target = transfer_target(
        q_source,
        q_target,
        list(cfg.parts),
        regressor.nrsfm,
        free=list(cfg.free),
        strict=bool(cfg.strict),
        num_std=float(cfg.num_std),
    )
    target = hold_alpha(cfg, generator, regressor, q_target, target)
    result = apply_editor(cfg, generator, regressor, faces["target"], target)
    request = {"source": str(cfg.source), "target": str(cfg.target), "parts": list(cfg.parts)}
    sources = None if pictures is not None else faces["source"].expand(len(faces["target"]), *faces["source"].shape[1:])
    return finish(
        cfg, "transfer", generator, regressor, faces["target"], result, target, request, reference_latent=sources
    )


@hydra.main(version_base="1.3", config_path="../conf", config_name="transfer")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error():
        run(cfg)


if __name__ == "__main__":
    launch("editing.transfer", "transfer")
