"""Fixtures for the editing tests; the stand-ins themselves live in `editing_standins`."""
import pytest
import torch

from editing_standins import W_DIM, ProjectionIdentity, TinyGenerator, TinyRegressor


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
