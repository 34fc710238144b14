"""Conditional sampling: ``python -m editing.sample preset=frontal_neutral n=16``.

Draws the faces of seeds ``seed .. seed + n - 1`` and edits each to the preset's attributes
(conf/preset/: frontal = rotation 0, neutral = every alpha 0, frontal_neutral, rotated = yaw 30
degrees, smiling = the mean expression moved 2 std along the smile direction derived by
`editing.presets`), the rest of q kept (docs/METHOD.md, "Uses"). A preset is an edit request as in
`editing.attributes`. Writes edited.npz, edit.png and trajectory.gif and prints where.
"""

from __future__ import annotations

from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from common.cli import exit_on_user_error, launch
from common.errors import UserError
from editing.attributes import flatten_changes
from editing.latents import latents_from_seeds
from editing.session import apply_editor, finish, load_generator, load_regressor, request_target


def run(cfg: DictConfig) -> dict[str, Any]:
    """Sample `cfg.n` faces from `cfg.seed` and edit them to `cfg.preset`; returns paths and the error."""
    if int(cfg.n) < 1:
        raise UserError(f"n must be at least 1, got {cfg.n}")
    changes = flatten_changes(OmegaConf.to_container(cfg.preset, resolve=True))
    if not changes:
        raise UserError(
            "the preset changes nothing; choose preset=frontal, neutral, frontal_neutral, rotated or smiling"
        )
    generator = load_generator(cfg)
    regressor = load_regressor(cfg, generator)
    seeds = list(range(int(cfg.seed), int(cfg.seed) + int(cfg.n)))
    latent0 = latents_from_seeds(generator, seeds, cfg.latent_space, float(cfg.truncation_psi)).to(
        regressor.nrsfm.q_mean.dtype
    )
    q0 = regressor(latent0).detach()
    target = request_target(cfg, generator, regressor, q0, changes)
    result = apply_editor(cfg, generator, regressor, latent0, target)
    return finish(cfg, "sample", generator, regressor, latent0, result, target, {"seeds": seeds, "changes": changes})


@hydra.main(version_base="1.3", config_path="../conf", config_name="conditional")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error():
        run(cfg)


if __name__ == "__main__":
    launch("editing.sample", "conditional")
