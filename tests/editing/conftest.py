"""Fixtures for the editing tests; the stand-ins themselves live in `editing_standins`."""

import pytest
import torch
from editing_standins import W_DIM, ProjectionIdentity, TinyGenerator, TinyRegressor, random_nrsfm

from regressor.export import AttributeRegressor, save_attribute_regressor
from regressor.mlp import AttributeMLP


@pytest.fixture
def regressor():
    return TinyRegressor()


@pytest.fixture
def generator():
    return TinyGenerator()


@pytest.fixture
def identity():
    return ProjectionIdentity()


@pytest.fixture
def latents():
    return 0.5 * torch.randn(6, W_DIM, generator=torch.Generator().manual_seed(3), dtype=torch.float64)


@pytest.fixture
def regressor_path(tmp_path):
    """A saved AttributeRegressor in w space over a random NRSfM model, for the command tests."""
    torch.manual_seed(0)
    nrsfm = random_nrsfm(dtype=torch.float32)
    mlp = AttributeMLP(16, nrsfm.layout.dim, hidden_dims=(32,), activation="tanh", head_scale=1.0)
    regressor = AttributeRegressor(mlp, nrsfm, "w", (16,), {"generator": "tiny", "latent_space": "w"})
    return save_attribute_regressor(tmp_path / "regressor.pt", regressor)
