import pytest
import torch

from nrsfm.evaluation import e3d
from nrsfm.known_cameras import fit_shape_basis, held_out_error
from nrsfm.synthetic import synthetic_deforming


@pytest.fixture(scope="module")
def data():
    return synthetic_deforming(80, num_landmarks=15, num_shapes=2, deformation=0.5, seed=3)


def test_structure_from_the_true_cameras_is_exact(data):
    centred = data.landmarks - data.landmarks.mean(1, keepdim=True)
    basis, coefficients = fit_shape_basis(centred, data.rotations[:, :2], num_shapes=2, num_iterations=300)
    assert basis.shape == (3, 15, 3) and coefficients.shape == (80, 2)
    shapes = basis[0] + torch.einsum("nj,jla->nla", coefficients, basis[1:])
    assert e3d(shapes, data.shapes) < 1e-6


def test_held_out_error_drops_at_the_true_number_of_shapes(data):
    centred = data.landmarks - data.landmarks.mean(1, keepdim=True)
    errors = [held_out_error(centred, data.rotations[:, :2], k, num_iterations=300) for k in (1, 2)]
    assert errors[1] < 0.01 * errors[0]


def test_bad_number_of_shapes_is_a_value_error(data):
    with pytest.raises(ValueError, match="num_shapes"):
        fit_shape_basis(data.landmarks, data.rotations[:, :2], num_shapes=80)
