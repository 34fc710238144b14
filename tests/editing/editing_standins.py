"""Small stand-ins for the editing tests: a regressor, a generator and an identity network.

They follow the contracts in docs/ARCHITECTURE.md (AttributeRegressor, Generator,
IdentityNetwork) but are tiny smooth functions, so edits can be checked exactly and quickly.
"""

import torch
from hydra import compose, initialize_config_module
from omegaconf import DictConfig, open_dict
from torch import nn

from backbones.generator import Generator
from nrsfm.model import NRSfMModel

NUM_BASIS = 4
W_DIM = 16
NUM_WS = 3
RESOLUTION = 16


def random_nrsfm(num_landmarks=20, num_basis=NUM_BASIS, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    basis = torch.linalg.qr(torch.randn(num_landmarks, num_basis, generator=g, dtype=dtype))[0].T
    directions = nn.functional.normalize(torch.randn(num_basis, 3, generator=g, dtype=dtype), dim=-1)
    mean_shape = 0.2 * torch.randn(num_landmarks, 3, generator=g, dtype=dtype)
    q_mean = torch.zeros(8 + num_basis, dtype=dtype)
    q_mean[[0, 2]] = 1.0
    q_mean[-2:] = 0.5
    q_std = torch.full((8 + num_basis,), 0.1, dtype=dtype)
    q_std[3:6] = 0.35  # about 20 degrees
    return NRSfMModel(mean_shape, directions, basis, q_mean, q_std, {"landmarks": "test"})


class TinyRegressor(nn.Module):
    """An AttributeRegressor stand-in: tanh MLP predicting standardised q, un-standardised by the model."""

    def __init__(self, latent_space="w", latent_dim=W_DIM, num_ws=NUM_WS, hidden=32, seed=0, dtype=torch.float64):
        super().__init__()
        torch.manual_seed(seed)
        self.latent_space = latent_space
        self.latent_shape = (num_ws, latent_dim) if latent_space == "w+" else (latent_dim,)
        self.nrsfm = random_nrsfm(dtype=dtype)
        self.metadata = {"latent_space": latent_space, "generator": "tiny"}
        in_dim = latent_dim * (num_ws if latent_space == "w+" else 1)
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.Tanh(), nn.Linear(hidden, self.nrsfm.layout.dim)).to(
            dtype
        )
        self.eval().requires_grad_(False)

    def forward(self, latent):
        return self.nrsfm.unstandardise(self.mlp(latent.flatten(1)))


class TinyGenerator(Generator):
    """A Generator whose synthesis is a fixed smooth random function of ws."""

    z_dim = W_DIM
    w_dim = W_DIM
    num_ws = NUM_WS
    img_resolution = RESOLUTION
    name = "tiny"

    def __init__(self, dtype=torch.float64, seed=1):
        super().__init__()
        dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("w_avg", torch.zeros(W_DIM, dtype=dtype))
        self.register_buffer("mapping_matrix", torch.randn(W_DIM, W_DIM, generator=g, dtype=dtype) / W_DIM**0.5)
        pixels = 3 * RESOLUTION * RESOLUTION
        self.register_buffer(
            "synthesis_matrix", torch.randn(NUM_WS * W_DIM, pixels, generator=g, dtype=dtype) / W_DIM**0.5
        )
        self.freeze()

    def mapping(self, z, truncation_psi=1.0):
        w = torch.tanh(z.to(self.mapping_matrix.dtype) @ self.mapping_matrix)
        w = self.w_avg + truncation_psi * (w - self.w_avg)
        return w[:, None].expand(-1, self.num_ws, -1)

    def synthesis(self, ws, noise_mode="const"):
        return torch.tanh(ws.flatten(1) @ self.synthesis_matrix).view(-1, 3, RESOLUTION, RESOLUTION)


class ProjectionIdentity(nn.Module):
    """An IdentityNetwork stand-in: unit-normalised fixed random projection of the pixels."""

    name = "projection"
    embedding_dim = 8

    def __init__(self, dtype=torch.float64, seed=2):
        super().__init__()
        dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
        g = torch.Generator().manual_seed(seed)
        self.register_buffer(
            "projection", torch.randn(3 * RESOLUTION * RESOLUTION, self.embedding_dim, generator=g, dtype=dtype)
        )
        self.eval().requires_grad_(False)

    def embed(self, images):
        return nn.functional.normalize(images.flatten(1) @ self.projection, dim=-1)

    def distance(self, a, b):
        return 1 - (a * b).sum(-1)


class ProjectionDetector:
    """A LandmarkDetector stand-in: 20 landmarks in pixels, a fixed smooth function of the image;
    images whose mean pixel is below `missing_below` count as "no face" (zeros, found False)."""

    name = "projection"
    num_landmarks = 20

    def __init__(self, missing_below=-1.0, seed=3):
        g = torch.Generator().manual_seed(seed)
        self.projection = torch.randn(
            3 * RESOLUTION * RESOLUTION, 2 * self.num_landmarks, generator=g, dtype=torch.float64
        )
        self.missing_below = missing_below

    def detect(self, images):
        from backbones.landmarks.base import Detections

        images = images.double()
        landmarks = RESOLUTION * torch.sigmoid(images.flatten(1) @ self.projection / 20).view(-1, self.num_landmarks, 2)
        found = images.mean((1, 2, 3)) >= self.missing_below
        landmarks = torch.where(found[:, None, None], landmarks, 0.0).float()
        return Detections(landmarks, found, found.float())


TINY_GENERATOR = {"_target_": "editing_standins.TinyGenerator", "dtype": "float32"}


def command_config(name: str, tmp_path, regressor_path, *overrides: str, num_frames: int = 3) -> DictConfig:
    """conf/<name>.yaml for `TinyGenerator` and the regressor at `regressor_path`, outputs under tmp_path/out."""
    with initialize_config_module(config_module="conf", version_base="1.3"):
        cfg = compose(
            config_name=name,
            overrides=[
                "generator=stylegan2",
                f"regressor_path={regressor_path}",
                f"out_dir={tmp_path / 'out'}",
                f"num_frames={num_frames}",
                "check_landmarks=false",
                *overrides,
            ],
        )
    with open_dict(cfg):
        cfg.generator = TINY_GENERATOR
    return cfg
