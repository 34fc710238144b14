import pytest
import torch

from nrsfm.evaluation import e3d
from nrsfm.known_cameras import fit_shape_basis, held_out_error, rank_one_rows
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


def test_rank_one_rows_unmix_a_basis_of_rank_one_shapes():
    generator = torch.Generator().manual_seed(0)
    rows = torch.linalg.qr(torch.randn(20, 5, generator=generator, dtype=torch.float64))[0].T  # (5, 20) orthonormal
    directions = torch.nn.functional.normalize(torch.randn(5, 3, generator=generator, dtype=torch.float64), dim=-1)
    mixing = torch.randn(5, 5, generator=generator, dtype=torch.float64)
    shape_basis = torch.einsum("jk,kp,ka->jpa", mixing, rows, directions)  # (5, 20, 3) full shapes mixing them
    found = rank_one_rows(shape_basis)
    assert found.shape == (5, 20)
    match = (found @ rows.T).abs()
    assert torch.allclose(match.max(1).values, torch.ones(5, dtype=torch.float64), atol=1e-8)
    assert sorted(match.argmax(1).tolist()) == list(range(5))
