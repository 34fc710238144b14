import logging

import pytest
import torch

from nrsfm.deforming import estimate_cameras, factorize_deforming
from nrsfm.evaluation import e3d, median_rotation_error_deg
from nrsfm.facing import generic_mirror_rule
from nrsfm.geometry import euler_angles_to_matrix
from nrsfm.synthetic import synthetic_deforming


@pytest.fixture(scope="module")
def deforming():
    """Noise-free strongly deforming points (two full basis shapes) under rotations uniform on SO(3)."""
    return synthetic_deforming(120, num_landmarks=16, num_shapes=2, deformation=0.5, seed=0)


def test_recovers_structure_and_rotations_under_any_view(deforming):
    model, q = factorize_deforming(deforming.landmarks, num_shapes=2, camera_shapes=2)
    assert model.num_basis == 6
    assert e3d(model.model_frame_shapes(q), deforming.shapes) < 0.02
    assert median_rotation_error_deg(euler_angles_to_matrix(q[:, 3:6]), deforming.rotations, allow_mirror=True) < 1.0
    assert (model(q) - deforming.landmarks).abs().max() < 0.05
    assert model.metadata["mirror_rule"].startswith("generic")
    assert generic_mirror_rule(model.mean_shape)


@pytest.mark.slow
def test_held_out_rule_finds_the_number_of_shapes(deforming):
    model, _ = factorize_deforming(deforming.landmarks, max_shapes=3)
    assert model.metadata["num_shapes"] == 2 and model.metadata["camera_shapes"] == 2
    for errors in (model.metadata["held_out_errors"], model.metadata["camera_held_out_errors"]):
        assert len(errors) == 3 and errors[1] < 0.1 * errors[0]


@pytest.mark.slow
def test_fit_is_deterministic_and_respects_found(deforming):
    found = torch.ones(len(deforming.landmarks), dtype=torch.bool)
    found[[3, 50]] = False
    landmarks = deforming.landmarks.clone()
    landmarks[3] = float("nan")
    _, first = factorize_deforming(landmarks, found, num_shapes=2, camera_shapes=2)
    _, second = factorize_deforming(landmarks, found, num_shapes=2, camera_shapes=2)
    assert torch.allclose(first[found], second[found], rtol=0, atol=1e-9)
    assert torch.isnan(first[[3, 50]]).all() and not torch.isnan(first[found]).any()


def test_degenerate_views_fall_back_with_a_warning(caplog):
    data = synthetic_deforming(30, num_landmarks=12, num_shapes=1, seed=2)
    single_view = data.shapes[..., :2]  # every sample seen from the same direction: no rotation to recover
    with caplog.at_level(logging.WARNING, logger="nrsfm.deforming"):
        cameras = estimate_cameras(single_view - single_view.mean(1, keepdim=True), 1)
    assert torch.isfinite(cameras).all() and cameras.shape == (30, 2, 3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_shapes": 9}, "num_shapes"),
        ({"camera_shapes": 0}, "camera_shapes"),
        ({"temporal_widths": (-1.0,)}, "temporal_widths"),
        ({"found": torch.zeros(120, dtype=torch.bool)}, "samples"),
    ],
)
def test_bad_inputs_are_value_errors(deforming, kwargs, message):
    with pytest.raises(ValueError, match=message):
        factorize_deforming(deforming.landmarks, **kwargs)


def test_temporal_smoothing_is_chosen_for_a_smooth_sequence_and_not_for_independent_samples(deforming):
    """The held-out error picks the smoothing where the coefficients vary smoothly from frame to frame."""
    time = torch.linspace(0, 3, 120, dtype=torch.float64)
    coefficients = torch.stack((torch.sin(time), torch.cos(2 * time)), -1)
    offsets = deforming.shapes[:2] - deforming.shapes.mean(0)  # two deformations of the mean shape
    shapes = deforming.shapes.mean(0) + torch.einsum("nj,jla->nla", coefficients, offsets)
    generator = torch.Generator().manual_seed(0)
    landmarks = (shapes @ deforming.rotations.transpose(1, 2))[..., :2]
    landmarks = landmarks + 0.1 * torch.randn(landmarks.shape, generator=generator, dtype=torch.float64)
    widths = (0.0, 2.0)
    sequence, _ = factorize_deforming(landmarks, num_shapes=2, camera_shapes=2, temporal_widths=widths)
    independent, _ = factorize_deforming(deforming.landmarks, num_shapes=2, camera_shapes=2, temporal_widths=widths)
    assert sequence.metadata["temporal_width"] == 2.0
    assert independent.metadata["temporal_width"] == 0.0
