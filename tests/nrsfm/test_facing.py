import math

import pytest
import torch

from nrsfm.facing import faces_camera, nose_tip_index
from nrsfm.model import AttributeLayout

F64 = torch.float64


def test_known_landmark_sets_use_their_nose_tip():
    assert nose_tip_index(torch.zeros(68, 3, dtype=F64)) == 30
    assert nose_tip_index(torch.zeros(468, 3, dtype=F64)) == 1


def test_other_counts_use_the_landmark_nearest_the_image_plane_centroid():
    shape = torch.randn(25, 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    shape[:, :2] -= shape[:, :2].mean(0)
    shape[7, :2] = 0.0
    shape[:, :2] -= shape[:, :2].mean(0)
    assert nose_tip_index(shape) == 7
    assert nose_tip_index(shape, nose_index=3) == 3


def test_faces_camera_compares_nose_depth_with_centroid():
    shape = torch.zeros(68, 3, dtype=F64)
    shape[30, 2] = -0.1
    assert faces_camera(shape)
    shape[30, 2] = 0.1
    assert not faces_camera(shape)


def test_bad_nose_index_is_a_value_error():
    with pytest.raises(ValueError, match="nose_index=70 is outside"):
        nose_tip_index(torch.zeros(68, 3, dtype=F64), nose_index=70)
    with pytest.raises(ValueError, match="mean_shape must have shape"):
        nose_tip_index(torch.zeros(68, 2, dtype=F64))


def test_rotation_deg_reads_pitch_yaw_roll():
    layout = AttributeLayout(2)
    q = torch.zeros(3, layout.dim, dtype=F64)
    q[:, layout.rotation] = torch.tensor([math.pi / 6, -math.pi / 4, math.pi / 9], dtype=F64)
    torch.testing.assert_close(layout.rotation_deg(q), torch.tensor([[30.0, -45.0, 20.0]] * 3, dtype=F64))
    with pytest.raises(ValueError, match="q must have shape"):
        layout.rotation_deg(torch.zeros(3, 5, dtype=F64))
