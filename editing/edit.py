"""Edit faces: ``python -m editing.edit faces=7 yaw=20``.

- ``yaw=20`` is absolute (the face ends at yaw 20 degrees); ``delta.yaw=20`` is relative (it turns by
  20 degrees). Names: pitch, yaw, roll (degrees), scale, tx, ty, k11, k12, k22, groups rotation,
  expression, camera, translation, and ``+alpha.<k>=...`` / ``+q.<i>=...`` (the ``+`` because
  Hydra only accepts keys the config declares). Rules in `editing.attributes`.
- Expression presets ``smile``, ``mouth_open``, ``brows_raised`` (``smile=1`` absolute, ``delta.smile=0.5``
  relative), in training standard deviations along directions derived from the NRSfM model
  (`editing.presets`; 68-landmark models only).
- ``faces`` is a seed, a list of seeds ``[1,2,3]`` or a latent file (``w`` (N, num_ws, w_dim)).
- ``source=photo.jpg`` sets the entries ``source_parts`` names (default the rotation) to the photo's
  (its landmarks from ``detector``, null: the one the NRSfM model was fit on, fitted with `nrsfm.fit_q`;
  `editing.sources`); other change keys apply as well (``source=photo.jpg smile=1``).
- ``edit=linear`` (default) or ``edit=gradient``; other settings in conf/edit.yaml.
Writes edited.npz, edit.png and trajectory.gif (see `editing.render`) and prints where.
"""

from __future__ import annotations

from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from common.cli import exit_on_user_error, launch
from common.errors import UserError
from editing.attributes import flatten_changes
from editing.latents import resolve_faces
from editing.presets import PRESET_NAMES
from editing.session import apply_editor, finish, load_generator, load_regressor, request_target
from editing.sources import is_image_source, pictures_q, read_source, source_changes
from editing.video import FrameRange

CHANGE_KEYS = (
    "pitch",
    "yaw",
    "roll",
    "scale",
    "tx",
    "ty",
    "k11",
    "k12",
    "k22",
    "alpha",
    "q",
    "rotation",
    "expression",
    "camera",
    "translation",
    *PRESET_NAMES,
    "delta",
)
SETTING_KEYS = (
    "paths",
    "generator",
    "identity",
    "edit",
    "latent_space",
    "truncation_psi",
    "latent_metric",
    "hold_alpha",
    "rows",
    "regressor_path",
    "free",
    "strict",
    "num_std",
    "num_frames",
    "check_landmarks",
    "out_dir",
    "pipeline",
    "faces",
    "source",
    "source_parts",
    "detector",
)


def requested_changes(cfg: DictConfig) -> dict[str, float]:
    """The change keys of `cfg` that are set, flattened: ``{"yaw": 20.0, "delta.pitch": -5.0}``; a key
    that is neither a change nor a setting (``+frown=3``) is refused with the valid names."""
    unknown = [key for key in cfg if key not in CHANGE_KEYS + SETTING_KEYS]
    if unknown:
        names = ", ".join(key for key in CHANGE_KEYS if key not in ("alpha", "q", "delta"))
        raise UserError(
            f"unknown attribute {unknown[0]!r}; valid: {names}, alpha.<k>, q.<i> (each also as delta.<name>)"
        )
    changes = {
        key: OmegaConf.to_container(cfg[key], resolve=True) if OmegaConf.is_config(cfg[key]) else cfg[key]
        for key in CHANGE_KEYS
        if key in cfg
    }
    return flatten_changes(changes)


def run(cfg: DictConfig) -> dict[str, Any]:
    """Edit the faces of `cfg.faces` as the change keys ask; returns the output paths and the error."""
    changes = requested_changes(cfg)
    source = cfg.get("source")
    if not changes and source is None:
        raise UserError(
            "nothing to change; add e.g. yaw=20 (absolute, degrees), delta.yaw=20 (relative) or source=photo.jpg"
        )
    if source is not None and not is_image_source(source):
        raise UserError(
            f"source={source!r} must be a photo, a folder of photos or a video; for seeds and latents use editing.transfer"
        )
    generator = load_generator(cfg)
    pictures = read_source(source, FrameRange()) if source is not None else None
    latent0 = resolve_faces(generator, cfg.faces, cfg.latent_space, float(cfg.truncation_psi))
    regressor = load_regressor(cfg, generator)
    latent0 = latent0.to(regressor.nrsfm.q_mean.dtype)
    q0 = regressor(latent0).detach()
    if pictures is not None:
        q_source = pictures_q(regressor.nrsfm, cfg.detector, pictures, str(source))
        if len(q_source) != 1:
            raise UserError(
                f"source {source} shows {len(q_source)} faces; give one photo (editing.transfer takes a folder or video)"
            )
        changes = {**source_changes(q_source[0], list(cfg.source_parts), regressor.nrsfm.layout), **changes}
    target = request_target(cfg, generator, regressor, q0, changes)
    result = apply_editor(cfg, generator, regressor, latent0, target)
    return finish(
        cfg, "edit", generator, regressor, latent0, result, target, {"faces": str(cfg.faces), "changes": changes}
    )


@hydra.main(version_base="1.3", config_path="../conf", config_name="edit")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error():
        run(cfg)


if __name__ == "__main__":
    launch("editing.edit", "edit")
