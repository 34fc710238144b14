"""Attribute transfer: ``python -m editing.transfer source=1 target=2``.

Gives the faces of `target` the parts of q (default: rotation and expression) of the face(s) of
`source`: w_b = Omega_{w_b}(q_a) restricted to `parts` (docs/METHOD.md, "Uses"); everything else keeps
the target's own q. `source` and `target` are seeds, lists of seeds or latent files; `source` holds
one face or as many as `target`. ``parts=[rotation]`` moves only the pose, ``parts=[expression]``
only the expression; any names or groups of `editing.attributes` work. ``edit=gradient`` switches
the editor. Writes edited.npz, edit.png (source | target | result | result with landmarks) and
trajectory.gif and prints where.
"""
from __future__ import annotations

from typing import Any

import hydra
import torch
from omegaconf import DictConfig

from editing.attributes import transfer_target
from editing.latents import resolve_faces
from editing.session import apply_editor, finish, hold_alpha, load_generator, load_regressor
from common.cli import exit_on_user_error, launch


def run(cfg: DictConfig) -> dict[str, Any]:
    """Transfer `cfg.parts` from `cfg.source` onto `cfg.target`; returns the output paths and the error."""
    generator = load_generator(cfg)
    faces = {name: resolve_faces(generator, cfg[name], cfg.latent_space, float(cfg.truncation_psi)) for name in ("source", "target")}
    regressor = load_regressor(cfg, generator)
    faces = {name: latent.to(regressor.nrsfm.q_mean.dtype) for name, latent in faces.items()}
    with torch.no_grad():
        q_source, q_target = regressor(faces["source"]), regressor(faces["target"])
    target = transfer_target(q_source, q_target, list(cfg.parts), regressor.nrsfm, free=list(cfg.free),
                             strict=bool(cfg.strict), num_std=float(cfg.num_std))
    target = hold_alpha(cfg, generator, regressor, q_target, target)
    result = apply_editor(cfg, generator, regressor, faces["target"], target)
    request = {"source": str(cfg.source), "target": str(cfg.target), "parts": list(cfg.parts)}
    sources = faces["source"].expand(len(faces["target"]), *faces["source"].shape[1:])
    return finish(cfg, "transfer", generator, regressor, faces["target"], result, target, request, reference_latent=sources)


@hydra.main(version_base="1.3", config_path="../conf", config_name="transfer")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error():
        run(cfg)


if __name__ == "__main__":
    launch("editing.transfer", "transfer")
