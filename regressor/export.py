"""The trained regressor as one file, `regressor.pt`, loadable without Lightning.

The file is a `torch.load(weights_only=True)`-safe dict (tensors, strings, numbers, lists only):
- "format_version": int;
- "mlp": {"hparams": AttributeMLP constructor arguments, "state_dict": its tensors};
- "nrsfm": {"mean_shape", "directions", "basis", "q_mean", "q_std": tensors, "metadata": JSON string};
- "latent_space": "z" | "w" | "w+"; "latent_shape": per-sample latent shape ([D] or [num_ws, w_dim]);
- "metadata": JSON string (generator name + checksum, landmark detector, latent space, dataset
  checksum, training configuration, versions).
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from common.errors import UserError
from common.io import atomic_path
from common.shapes import check_shape
from nrsfm.model import NRSfMModel
from regressor.mlp import AttributeMLP

FORMAT_VERSION = 2  # 2: the MLP is an ensemble (`members`)
NRSFM_ARRAYS = ("mean_shape", "directions", "basis", "q_mean", "q_std")


class AttributeRegressor(nn.Module):
    """phi: latent -> q (un-standardised), with the NRSfM model it was trained against.

    Args:
        mlp: the network predicting standardised q-hat from flat latents.
        nrsfm: the NRSfM model; q = nrsfm.q_mean + nrsfm.q_std * q-hat.
        latent_space: "z", "w" or "w+".
        latent_shape: one sample's latent shape, (D,) or (num_ws, w_dim) for "w+".
        metadata: facts about the training (generator, landmark detector, latent space, ...).
    """

    def __init__(
        self,
        mlp: AttributeMLP,
        nrsfm: NRSfMModel,
        latent_space: str,
        latent_shape: Sequence[int],
        metadata: dict[str, Any] | None = None,
    ):
        super().__init__()
        self.mlp, self.nrsfm = mlp, nrsfm
        self.latent_space = latent_space
        self.latent_shape = tuple(int(s) for s in latent_shape)
        self.metadata = dict(metadata or {})

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        """latent (B, *latent_shape), e.g. w (B, w_dim) or ws (B, num_ws, w_dim) -> q (B, 8 + K)."""
        check_shape(latent, ("B", *self.latent_shape), f"{self.latent_space} latent")
        q_hat = self.mlp(latent.reshape(latent.shape[0], -1).to(self.nrsfm.q_mean.dtype))
        return self.nrsfm.unstandardise(q_hat)

    def landmarks(self, latent: torch.Tensor) -> torch.Tensor:
        """R(phi(latent)): (B, *latent_shape) -> (B, L, 2) normalised landmarks."""
        return self.nrsfm(self.forward(latent))


def save_attribute_regressor(path: str | Path, regressor: AttributeRegressor) -> Path:
    """Write `regressor` to `path` atomically (temporary file, then rename); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nrsfm = {name: getattr(regressor.nrsfm, name).detach().cpu().clone() for name in NRSFM_ARRAYS}
    payload = {
        "format_version": FORMAT_VERSION,
        "mlp": {
            "hparams": regressor.mlp.hparams(),
            "state_dict": {k: v.detach().cpu().clone() for k, v in regressor.mlp.state_dict().items()},
        },
        "nrsfm": dict(nrsfm, metadata=json.dumps(regressor.nrsfm.metadata)),
        "latent_space": regressor.latent_space,
        "latent_shape": list(regressor.latent_shape),
        "metadata": json.dumps(regressor.metadata),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_attribute_regressor(path: str | Path, map_location: str | torch.device = "cpu") -> AttributeRegressor:
    """Read a file written by `save_attribute_regressor`; returns an AttributeRegressor in eval mode."""
    path = Path(path)
    fix = "train one with `python -m regressor.train data.samples=<samples.h5> data.nrsfm_dir=<fit dir>`"
    if not path.is_file():
        raise UserError(f"regressor file {path} not found; {fix}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
        if payload.get("format_version") != FORMAT_VERSION:
            raise UserError(
                f"{path} has format version {payload.get('format_version')}, expected {FORMAT_VERSION}; {fix}"
            )
        mlp = AttributeMLP(**payload["mlp"]["hparams"])
        mlp.load_state_dict(payload["mlp"]["state_dict"])
        arrays = payload["nrsfm"]
        nrsfm = NRSfMModel(*(arrays[name] for name in NRSFM_ARRAYS), metadata=json.loads(arrays["metadata"]))
        regressor = AttributeRegressor(
            mlp, nrsfm, payload["latent_space"], payload["latent_shape"], json.loads(payload["metadata"])
        )
    except UserError:
        raise
    except (
        OSError,
        RuntimeError,
        KeyError,
        TypeError,
        AttributeError,
        ValueError,
        EOFError,
        pickle.UnpicklingError,
    ) as error:
        raise UserError(
            f"{path} is not a readable regressor file ({' '.join(str(error).split())[:200]}); {fix}"
        ) from error
    return regressor.eval()
