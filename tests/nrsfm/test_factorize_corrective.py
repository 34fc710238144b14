import pytest
import torch

from nrsfm import evaluation
from nrsfm.factorize import factorize
from nrsfm.geometry import euler_angles_to_matrix
from nrsfm.synthetic import synthetic_landmarks


def median_rotation_error_deg(q, true_q):
    return evaluation.median_rotation_error_deg(
        euler_angles_to_matrix(q[:, 3:6]), euler_angles_to_matrix(true_q[:, 3:6])
    )


def fit_model_data(seed, num_refine_steps=200):
    """Noise-free data from the rank-one model (400 samples, 41 points, K = 5), fitted with the corrective start."""
    data = synthetic_landmarks(400, 41, 5, 0.0, seed)
    found = torch.ones(400, dtype=torch.bool)
    model, q = factorize(
        data.landmarks,
        found,
        5,
        initial_cameras="corrective",
        num_refine_steps=num_refine_steps,
        nose_index=data.model.metadata["nose_index"],
    )
    return data, model, q


def test_corrective_start_recovers_noise_free_model_data():
    """Seed 7 is one the rigid rank-3 start loses (its rotations end about 30 degrees off)."""
    data, model, q = fit_model_data(7, num_refine_steps=0)
    assert median_rotation_error_deg(q, data.q) < 0.1
    assert model.metadata["initial_cameras"] == "corrective" and model.metadata["rmse"] < 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(10))
def test_corrective_start_recovers_every_seed(seed):
    data, model, q = fit_model_data(seed)
    assert median_rotation_error_deg(q, data.q) < 0.1
    assert model.metadata["rmse"] <= model.metadata["rmse_two_step"] + 1e-12


def test_generic_mirror_rule_and_bad_options():
    data = synthetic_landmarks(200, 20, 3, 0.0, 0)
    found = torch.ones(200, dtype=torch.bool)
    model, _ = factorize(data.landmarks, found, 3, num_refine_steps=0, mirror_rule="generic")
    assert model.metadata["mirror_rule"] == "generic" and model.metadata["nose_index"] is None
    depth = model.mean_shape[:, 2] - model.mean_shape[:, 2].mean()
    assert depth.pow(3).sum() > 0
    with pytest.raises(ValueError, match="mirror_rule"):
        factorize(data.landmarks, found, 3, mirror_rule="ears")
    with pytest.raises(ValueError, match="initial_cameras"):
        factorize(data.landmarks, found, 3, initial_cameras="guess")
