"""The rank-one NRSfM face model and its closed-form projection R(q).

Shapes and conventions (see also `nrsfm.geometry`):
- landmarks X: (..., L, 2) in normalised image coordinates (x / width, y / height).
- mean shape B0: (L, 3); directions d: (K, 3), unit rows; basis b: (K, L), orthonormal rows.
  Basis shape k is B_k = b_k d_k^T as an (L, 3) array (the paper's d_k b_k^T, transposed).
- attribute vector q: (..., 8 + K) = (k11, k12, k22, theta_x, theta_y, theta_z, alpha_1..alpha_K, tx, ty),
  angles in radians. Camera M = K [I2 | 0] R(theta) with K = [[k11, k12], [0, k22]].
- R(q) = (B0 + sum_k alpha_k B_k) M^T + t: (..., L, 2).

Saved models are `.npz` files of named arrays plus a JSON `metadata` string (generator id, latent
space, landmark type, K, versions); they load with `allow_pickle=False`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from common.errors import UserError
from common.io import save_npz_atomic
from common.shapes import check_shape
from nrsfm.geometry import euler_angles_to_matrix

FORMAT_VERSION = 1


@dataclass(frozen=True)
class AttributeLayout:
    """Index ranges of the parts of q for a model with `num_basis` (K) basis shapes."""

    num_basis: int

    @property
    def dim(self) -> int:
        return 8 + self.num_basis

    @property
    def camera(self) -> slice:
        """(k11, k12, k22)."""
        return slice(0, 3)

    @property
    def rotation(self) -> slice:
        """(theta_x, theta_y, theta_z) = (pitch, yaw, roll) in radians."""
        return slice(3, 6)

    @property
    def alpha(self) -> slice:
        return slice(6, 6 + self.num_basis)

    @property
    def translation(self) -> slice:
        return slice(6 + self.num_basis, 8 + self.num_basis)

    def rotation_deg(self, q: torch.Tensor) -> torch.Tensor:
        """(pitch, yaw, roll) in degrees from q: (..., 8 + K) -> (..., 3)."""
        check_shape(q, ("...", self.dim), "q")
        return torch.rad2deg(q[..., self.rotation])

    def names(self) -> list[str]:
        """One name per entry of q, e.g. ``["k11", ..., "yaw", ..., "alpha.0", ..., "ty"]``."""
        alphas = [f"alpha.{k}" for k in range(self.num_basis)]
        return ["k11", "k12", "k22", "pitch", "yaw", "roll", *alphas, "tx", "ty"]


class NRSfMModel(nn.Module):
    """Mean shape, rank-one basis and statistics of q; `forward(q)` is R(q).

    Args:
        mean_shape: (L, 3) B0.
        directions: (K, 3) unit d_k.
        basis: (K, L) orthonormal b_k.
        q_mean, q_std: (8 + K,) statistics of q over the training samples (standardisation).
        metadata: JSON-serialisable facts about how the model was made.
    """

    def __init__(self, mean_shape, directions, basis, q_mean, q_std, metadata: dict[str, Any] | None = None):
        super().__init__()
        sizes = check_shape(mean_shape, ("L", 3), "mean_shape")
        sizes = check_shape(directions, ("K", 3), "directions", sizes)
        sizes = check_shape(basis, ("K", "L"), "basis", sizes)
        check_shape(q_mean, (8 + sizes["K"],), "q_mean")
        check_shape(q_std, (8 + sizes["K"],), "q_std")
        for name, value in dict(
            mean_shape=mean_shape, directions=directions, basis=basis, q_mean=q_mean, q_std=q_std
        ).items():
            self.register_buffer(name, torch.as_tensor(value))
        self.metadata = dict(metadata or {})

    @property
    def num_landmarks(self) -> int:
        return self.mean_shape.shape[0]

    @property
    def num_basis(self) -> int:
        return self.directions.shape[0]

    @property
    def layout(self) -> AttributeLayout:
        return AttributeLayout(self.num_basis)

    @property
    def landmark_weights(self) -> torch.Tensor:
        """(L,) weight of each landmark in the fit that made the model (metadata ``landmark_weights``, written
        by `nrsfm.factorize`; all ones when absent), in the model's dtype and device. `nrsfm.fit_q` and the
        regressor's landmark loss weight the landmarks the same way."""
        weights = self.metadata.get("landmark_weights")
        if weights is None:
            return torch.ones(self.num_landmarks, dtype=self.mean_shape.dtype, device=self.mean_shape.device)
        return torch.tensor(weights, dtype=self.mean_shape.dtype, device=self.mean_shape.device)

    def shape_3d(self, alpha: torch.Tensor) -> torch.Tensor:
        """3D shape B0 + sum_k alpha_k B_k: (..., K) -> (..., L, 3)."""
        check_shape(alpha, ("...", self.num_basis), "alpha")
        basis = self.basis.to(alpha.dtype)
        directions = self.directions.to(alpha.dtype)
        basis_shapes = (basis[:, :, None] * directions[:, None, :]).reshape(self.num_basis, -1)  # (K, L * 3)
        offsets = (alpha @ basis_shapes).reshape(*alpha.shape[:-1], self.num_landmarks, 3)
        return self.mean_shape.to(alpha.dtype) + offsets

    def model_frame_shapes(self, q: torch.Tensor) -> torch.Tensor:
        """Per-sample 3D shapes in the model frame, B0 + sum_k alpha_k B_k: q (..., 8 + K) -> (..., L, 3)."""
        check_shape(q, ("...", self.layout.dim), "q")
        return self.shape_3d(q[..., self.layout.alpha])

    def camera_frame_shapes(self, q: torch.Tensor) -> torch.Tensor:
        """Per-sample 3D shapes in the camera frame, R(theta) (B0 + sum_k alpha_k B_k): (..., 8 + K) -> (..., L, 3).

        Rotation only: x and y are the image axes up to the intrinsics K and translation t of q, z is depth.
        """
        rotation = euler_angles_to_matrix(q[..., self.layout.rotation])
        return self.model_frame_shapes(q) @ rotation.transpose(-1, -2)

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        """R(q): (..., 8 + K) -> landmarks (..., L, 2). Batched and differentiable."""
        check_shape(q, ("...", self.layout.dim), "q")
        return render(q, self)

    def standardise(self, q: torch.Tensor) -> torch.Tensor:
        return (q - self.q_mean.to(q.dtype)) / self.q_std.to(q.dtype)

    def unstandardise(self, q_hat: torch.Tensor) -> torch.Tensor:
        return self.q_mean.to(q_hat.dtype) + self.q_std.to(q_hat.dtype) * q_hat

    def save(self, path: str | Path) -> None:
        """Write the model atomically as a named-array `.npz`."""
        arrays = {name: buffer.detach().cpu().numpy() for name, buffer in self.named_buffers()}
        meta = dict(self.metadata, format_version=FORMAT_VERSION)
        save_npz_atomic(path, metadata=np.array(json.dumps(meta)), **arrays)

    @classmethod
    def load(cls, path: str | Path) -> NRSfMModel:
        """Read a model written by `save`; raise UserError with the fix when the file is unusable."""
        path = Path(path)
        if not path.is_file():
            raise UserError(f"NRSfM model {path} not found; create it with `python -m nrsfm.fit data=<dataset>`")
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {
                    name: torch.from_numpy(data[name])
                    for name in ("mean_shape", "directions", "basis", "q_mean", "q_std")
                }
                metadata = json.loads(str(data["metadata"]))
        except (OSError, KeyError, ValueError) as error:
            raise UserError(
                f"{path} is not an NRSfM model file ({error}); re-create it with `python -m nrsfm.fit`"
            ) from error
        return cls(**arrays, metadata=metadata)


def render(q: torch.Tensor, model: NRSfMModel) -> torch.Tensor:
    """R(q) = K [I2|0] R(theta) (B0 + sum alpha_k B_k) + t, as (..., L, 2)."""
    layout = model.layout
    k11, k12, k22 = q[..., layout.camera].unbind(-1)
    zero = torch.zeros_like(k11)
    intrinsics = torch.stack((torch.stack((k11, k12), -1), torch.stack((zero, k22), -1)), -2)
    camera = intrinsics @ euler_angles_to_matrix(q[..., layout.rotation])[..., :2, :]
    shape = model.shape_3d(q[..., layout.alpha])
    return shape @ camera.transpose(-1, -2) + q[..., None, layout.translation]
