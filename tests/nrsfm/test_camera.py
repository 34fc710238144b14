import pytest
import torch

from nrsfm.camera import camera_to_intrinsics_rotation, intrinsics_rotation_to_camera, inverse_3x3, nearest_rotation
from nrsfm.geometry import euler_angles_to_matrix

F64 = torch.float64


def random_intrinsics_rotation(num, seed=0):
    g = torch.Generator().manual_seed(seed)
    diagonal = 0.2 + torch.rand(num, 2, generator=g, dtype=F64)
    skew = 0.3 * torch.randn(num, generator=g, dtype=F64)
    intrinsics = torch.zeros(num, 2, 2, dtype=F64)
    intrinsics[:, 0, 0], intrinsics[:, 0, 1], intrinsics[:, 1, 1] = diagonal[:, 0], skew, diagonal[:, 1]
    theta = (torch.rand(num, 3, generator=g, dtype=F64) - 0.5) * torch.tensor([6.0, 3.0, 6.0], dtype=F64)
    return intrinsics, euler_angles_to_matrix(theta)


def test_split_round_trips_from_intrinsics_and_rotation():
    intrinsics, rotation = random_intrinsics_rotation(500)
    camera = intrinsics_rotation_to_camera(intrinsics, rotation)
    intrinsics_back, rotation_back = camera_to_intrinsics_rotation(camera)
    torch.testing.assert_close(intrinsics_back, intrinsics)
    torch.testing.assert_close(rotation_back, rotation)


def test_split_of_any_camera_gives_positive_diagonal_and_proper_rotation():
    camera = torch.randn(1000, 2, 3, dtype=F64, generator=torch.Generator().manual_seed(1))
    intrinsics, rotation = camera_to_intrinsics_rotation(camera)
    torch.testing.assert_close(intrinsics_rotation_to_camera(intrinsics, rotation), camera)
    assert bool((intrinsics[:, 0, 0] > 0).all()) and bool((intrinsics[:, 1, 1] > 0).all())
    assert bool((intrinsics[:, 1, 0] == 0).all())
    eye = torch.eye(3, dtype=F64).expand(1000, 3, 3)
    torch.testing.assert_close(rotation @ rotation.transpose(1, 2), eye)
    torch.testing.assert_close(torch.linalg.det(rotation), torch.ones(1000, dtype=F64))


def test_split_batch_matches_single_and_gradcheck():
    camera = torch.randn(4, 2, 3, dtype=F64, generator=torch.Generator().manual_seed(2))
    intrinsics, rotation = camera_to_intrinsics_rotation(camera)
    single_intrinsics, single_rotation = camera_to_intrinsics_rotation(camera[2])
    torch.testing.assert_close(single_intrinsics, intrinsics[2])
    torch.testing.assert_close(single_rotation, rotation[2])
    camera.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda m: camera_to_intrinsics_rotation(m), (camera,))


def test_split_rejects_rank_deficient_and_wrong_shapes():
    parallel = torch.tensor([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0]], dtype=F64)
    with pytest.raises(ValueError, match="rank < 2"):
        camera_to_intrinsics_rotation(parallel)
    with pytest.raises(ValueError, match="camera must have shape"):
        camera_to_intrinsics_rotation(torch.zeros(3, 3, dtype=F64))


def test_nearest_rotation_is_proper_and_idempotent():
    matrix = torch.randn(200, 3, 3, dtype=F64, generator=torch.Generator().manual_seed(3))
    rotation = nearest_rotation(matrix)
    torch.testing.assert_close(torch.linalg.det(rotation), torch.ones(200, dtype=F64))
    torch.testing.assert_close(nearest_rotation(rotation), rotation)
    _, true_rotation = random_intrinsics_rotation(10)
    torch.testing.assert_close(nearest_rotation(2.5 * true_rotation), true_rotation)


def test_inverse_3x3_matches_linalg():
    matrix = torch.randn(300, 3, 3, dtype=F64, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(inverse_3x3(matrix), torch.linalg.inv(matrix))
