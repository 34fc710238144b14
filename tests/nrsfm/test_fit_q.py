import math

import pytest
import torch

from nrsfm.fit_q import fit_q
from nrsfm.synthetic import synthetic_landmarks

F64 = torch.float64


@pytest.fixture(scope="module")
def clean():
    return synthetic_landmarks(40, num_landmarks=68, num_basis=6, noise=0.0, seed=11)


def test_recovers_q_from_noise_free_landmarks(clean):
    q = fit_q(clean.model, clean.landmarks)
    torch.testing.assert_close(q, clean.q, atol=1e-7, rtol=0)


def test_warm_start_converges_from_a_perturbed_q(clean):
    start = clean.q + 0.05 * torch.randn(clean.q.shape, dtype=F64, generator=torch.Generator().manual_seed(0))
    q = fit_q(clean.model, clean.landmarks, q_init=start, num_steps=15)
    torch.testing.assert_close(q, clean.q, atol=1e-7, rtol=0)


def test_batch_matches_single(clean):
    batch = fit_q(clean.model, clean.landmarks[:6])
    single = fit_q(clean.model, clean.landmarks[3:4])
    torch.testing.assert_close(single[0], batch[3], atol=1e-9, rtol=0)


def test_noisy_float32_468_landmarks_fit_to_noise_level():
    data = synthetic_landmarks(30, num_landmarks=468, num_basis=12, noise=0.002, seed=12, dtype=torch.float32)
    q = fit_q(data.model, data.landmarks)
    assert q.dtype == torch.float32
    rmse = (data.model(q) - data.landmarks).square().mean().sqrt()
    assert float(rmse) < 0.002
    rotation_error = (q[:, 3:6] - data.q[:, 3:6]).abs().max()
    assert float(rotation_error) < math.radians(1.0)


def test_result_is_canonical(clean):
    equivalent = clean.q.clone()  # -K with roll + 180 deg renders the same landmarks
    equivalent[:, 0:3] = -equivalent[:, 0:3]
    equivalent[:, 5] = equivalent[:, 5] + math.pi
    torch.testing.assert_close(clean.model(equivalent), clean.landmarks)
    q = fit_q(clean.model, clean.landmarks, q_init=equivalent, num_steps=2)
    torch.testing.assert_close(q, clean.q, atol=1e-9, rtol=0)


def test_bad_inputs(clean):
    with pytest.raises(ValueError, match="landmarks must have shape"):
        fit_q(clean.model, clean.landmarks[:, :10])
    with pytest.raises(ValueError, match="NaN or infinite"):
        fit_q(clean.model, clean.landmarks.index_put((torch.tensor([0]),), torch.tensor(math.nan, dtype=F64)))
    with pytest.raises(ValueError, match="q_init must have shape"):
        fit_q(clean.model, clean.landmarks, q_init=clean.q[:, :5])
