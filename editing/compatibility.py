"""Checks that a trained regressor fits the generator and latent space an edit uses.

A regressor is trained on one generator's latents in one latent space; used with another it gives
meaningless edits without failing. `check_regressor_matches` turns that into a one-line error.
It reads the regressor's ``metadata`` (``generator``: name, optionally ``generator_checksum``), the
``generator_checksum`` its NRSfM model was fitted with (``nrsfm.metadata``, from the dataset), and its
``latent_space`` and ``latent_shape``.
"""

from __future__ import annotations

from torch import nn

from backbones.generator import LATENT_SPACES

RETRAIN = "train a regressor for it with `python -m regressor.train` (or let the editing command build one)"


def latent_shape_of(generator: nn.Module, latent_space: str) -> tuple[int, ...]:
    """One sample's latent shape in `latent_space`: (z_dim,), (w_dim,) or (num_ws, w_dim)."""
    shapes = {"z": (generator.z_dim,), "w": (generator.w_dim,), "w+": (generator.num_ws, generator.w_dim)}
    if latent_space not in shapes:
        raise ValueError(f"unknown latent space {latent_space!r}; use one of {', '.join(LATENT_SPACES)}")
    return shapes[latent_space]


def check_regressor_matches(regressor: nn.Module, generator: nn.Module, latent_space: str | None = None) -> None:
    """Raise ValueError when `regressor` was trained for another generator, checksum or latent space.

    Args:
        regressor: an AttributeRegressor (``latent_space``, ``metadata``, optionally ``latent_shape``).
        generator: the Generator the edit renders with (``name``, ``checksum()``, sizes).
        latent_space: the space the edit works in; None accepts the regressor's own.
    """
    trained_for = regressor.metadata.get("generator")
    if trained_for is not None and trained_for != generator.name:
        raise ValueError(f"the regressor was trained for generator {trained_for!r}, not {generator.name!r}; {RETRAIN}")
    checksum = regressor.metadata.get("generator_checksum", regressor.nrsfm.metadata.get("generator_checksum"))
    if checksum not in (None, "unknown") and checksum != generator.checksum():
        raise ValueError(
            f"the regressor was trained for other {generator.name} weights (checksum {checksum}, "
            f"these are {generator.checksum()}); {RETRAIN}"
        )
    if latent_space is not None and latent_space != regressor.latent_space:
        raise ValueError(
            f"the regressor works in latent space {regressor.latent_space!r}, not {latent_space!r}; "
            f"set latent_space={regressor.latent_space} or {RETRAIN}"
        )
    expected = latent_shape_of(generator, regressor.latent_space)
    shape = tuple(getattr(regressor, "latent_shape", expected))
    if shape != expected:
        raise ValueError(
            f"the regressor takes {regressor.latent_space} latents of shape {shape}, but {generator.name} "
            f"makes {expected}; {RETRAIN}"
        )
