"""The one NME: mean point distance over the reference face's size, in pixels."""

import pytest
import torch

from common.landmarks import face_size, face_size_name, landmark_distances, nme


def ibug_face(width: float = 100.0, height: float = 100.0) -> torch.Tensor:
    """(1, 68, 2) normalised landmarks whose outer eye corners are 50 px apart at width x height."""
    face = torch.full((1, 68, 2), 0.5, dtype=torch.float64)
    face[0, 36], face[0, 45] = torch.tensor([0.5 - 25 / width, 0.5]), torch.tensor([0.5 + 25 / width, 0.5])
    return face


def test_nme_is_the_mean_distance_over_the_outer_eye_corner_distance():
    truth = ibug_face()
    shifted = truth + torch.tensor([0.03, 0.04], dtype=torch.float64)  # 5 px everywhere at 100 x 100
    torch.testing.assert_close(
        landmark_distances(shifted, truth, (100, 100)), torch.full((1, 68), 5.0, dtype=torch.float64)
    )
    torch.testing.assert_close(nme(shifted, truth, (100, 100)), torch.tensor([0.1], dtype=torch.float64))


def test_nme_does_not_depend_on_the_image_aspect_ratio():
    truth = ibug_face(width=200.0, height=100.0)
    shifted = truth + torch.tensor([5 / 200, 0.0], dtype=torch.float64)  # 5 px to the right at 200 wide
    torch.testing.assert_close(nme(shifted, truth, (100, 200)), torch.tensor([0.1], dtype=torch.float64))


def test_other_layouts_use_the_bounding_box_diagonal():
    square = torch.tensor([[[0.0, 0.0], [0.3, 0.0], [0.0, 0.4]]])
    torch.testing.assert_close(face_size(square), torch.tensor([0.5]))
    assert "bounding-box" in face_size_name(3) and "outer eye corners" in face_size_name(68)


def test_the_normaliser_comes_from_the_reference():
    truth, detected = ibug_face(), ibug_face()
    detected[0, 45, 0] += 0.25  # the detection's eyes are 75 px apart, the reference's 50
    assert float(nme(detected, truth, (100, 100))) == pytest.approx(25 / 68 / 50)


def test_mismatched_layouts_are_refused():
    with pytest.raises(ValueError, match="predicted landmarks"):
        nme(torch.zeros(1, 5, 2), ibug_face())
