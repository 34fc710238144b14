"""Synthetic landmark sets drawn from the rank-one model itself, with known ground truth.

Used by the tests and `benchmarks/nrsfm_fit.py` to measure how well `factorize` recovers a model.
Ground truth: a random centred B0 (L, 3) whose nose landmark (rule of `nrsfm.facing`; its index is
the model's ``metadata["nose_index"]``) is moved 0.1 in front of the nearest other landmark (toward
the camera), unit d_k, orthonormal b_k orthogonal to the all-ones vector (so shapes stay centred),
alpha_k ~ N(0, (0.5 * 0.85^k)^2), rotations uniform within +-25 deg pitch, +-45 deg yaw, +-20 deg roll,
weak-perspective cameras k11 = k22 ~ U(0.8, 1.2), k12 = 0, translations ~ U(0.4, 0.6), and
Gaussian noise of standard deviation `noise` on every coordinate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from nrsfm.facing import nose_tip_index
from nrsfm.model import NRSfMModel

ANGLE_LIMITS_DEG = (25.0, 45.0, 20.0)


@dataclass
class SyntheticNRSfM:
    """model: the true NRSfMModel; q: (N, 8 + K) true attributes; landmarks: (N, L, 2) noisy R(q)."""

    model: NRSfMModel
    q: torch.Tensor
    landmarks: torch.Tensor


def synthetic_landmarks(
    num_samples: int,
    num_landmarks: int = 68,
    num_basis: int = 12,
    noise: float = 0.002,
    seed: int | None = 0,
    dtype: torch.dtype = torch.float64,
) -> SyntheticNRSfM:
    """Draw a random true model and `num_samples` noisy landmark sets from it (module docstring).

    Returns:
        SyntheticNRSfM with landmarks (N, L, 2) and q (N, 8 + K) in `dtype` on the CPU.
    """
    if num_basis > num_landmarks - 4:
        raise ValueError(f"num_basis={num_basis} must be at most L - 4 = {num_landmarks - 4}")
    generator = torch.Generator()
    if seed is not None:
        generator.manual_seed(seed)

    def normal(*size: int) -> torch.Tensor:
        return torch.randn(*size, generator=generator, dtype=torch.float64)

    def uniform(low: float, high: float, *size: int) -> torch.Tensor:
        return low + (high - low) * torch.rand(*size, generator=generator, dtype=torch.float64)

    mean_shape = 0.15 * normal(num_landmarks, 3)
    mean_shape = mean_shape - mean_shape.mean(0)
    nose = nose_tip_index(mean_shape)
    mean_shape[nose, 2] = mean_shape[:, 2].min() - 0.1
    mean_shape = mean_shape - mean_shape.mean(0)
    with_ones = torch.cat((torch.ones(num_landmarks, 1, dtype=torch.float64), normal(num_landmarks, num_basis)), 1)
    basis = torch.linalg.qr(with_ones)[0][:, 1:].T.contiguous()
    directions = torch.nn.functional.normalize(normal(num_basis, 3), dim=-1)
    alpha_std = 0.5 * 0.85 ** torch.arange(num_basis, dtype=torch.float64)
    alpha = alpha_std * normal(num_samples, num_basis)
    limits = torch.tensor(ANGLE_LIMITS_DEG, dtype=torch.float64) * math.pi / 180
    theta = limits * uniform(-1.0, 1.0, num_samples, 3)
    scale = uniform(0.8, 1.2, num_samples, 1)
    camera = torch.cat((scale, torch.zeros_like(scale), scale), 1)
    translation = uniform(0.4, 0.6, num_samples, 2)
    q = torch.cat((camera, theta, alpha, translation), 1)
    dim = 8 + num_basis
    model = NRSfMModel(
        mean_shape,
        directions,
        basis,
        torch.zeros(dim, dtype=torch.float64),
        torch.ones(dim, dtype=torch.float64),
        {"landmarks": "synthetic", "nose_index": nose},
    )
    landmarks = model(q) + noise * normal(num_samples, num_landmarks, 2)
    return SyntheticNRSfM(model.to(dtype), q.to(dtype), landmarks.to(dtype))


@dataclass
class SyntheticDeforming:
    """landmarks (N, L, 2) orthographic views; shapes (N, L, 3) object frame; rotations (N, 3, 3), landmarks = (shapes R^T)[..., :2]."""

    landmarks: torch.Tensor
    shapes: torch.Tensor
    rotations: torch.Tensor


def synthetic_deforming(
    num_samples: int, num_landmarks: int = 30, num_shapes: int = 2, deformation: float = 0.5, seed: int | None = 0
) -> SyntheticDeforming:
    """A strongly deforming point set under uniformly random rotations (any view direction), float64.

    Shapes: a random centred mean shape (L, 3) with unit-variance coordinates plus `num_shapes`
    random full 3 x L basis shapes of relative size `deformation`, coefficients ~ N(0, 1); cameras
    orthographic (scale 1) with rotations uniform on SO(3); no noise.
    """
    generator = torch.Generator()
    if seed is not None:
        generator.manual_seed(seed)

    def normal(*size: int) -> torch.Tensor:
        return torch.randn(*size, generator=generator, dtype=torch.float64)

    mean_shape = normal(num_landmarks, 3) * torch.tensor([1.0, 0.8, 0.6], dtype=torch.float64)
    basis = deformation * normal(num_shapes, num_landmarks, 3)
    shapes = mean_shape + torch.einsum("nj,jla->nla", normal(num_samples, num_shapes), basis)
    shapes = shapes - shapes.mean(1, keepdim=True)
    quaternions = torch.nn.functional.normalize(normal(num_samples, 4), dim=-1)
    w, x, y, z = quaternions.unbind(-1)
    rotations = torch.stack(
        (
            torch.stack((1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)), -1),
            torch.stack((2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)), -1),
            torch.stack((2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)), -1),
        ),
        -2,
    )
    landmarks = (shapes @ rotations.transpose(1, 2))[..., :2]
    return SyntheticDeforming(landmarks, shapes, rotations)
