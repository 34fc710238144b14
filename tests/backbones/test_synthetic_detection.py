"""The real dlib detector reads the synthetic faces and agrees with their ground truth."""
import numpy as np
import pytest
import torch

from backbones.landmarks.dlib import DlibDetector
from backbones.synthetic import SyntheticGenerator
from backbones.synthetic.detection_check import check_detection, normalised_landmark_error


@pytest.fixture(scope="module")
def generator() -> SyntheticGenerator:
    return SyntheticGenerator()


def test_dlib_finds_and_locates_16_faces(generator):
    report = check_detection(generator, DlibDetector(), num_samples=16, seed=100, batch_size=16)
    print(report.summary())
    assert report.found.sum() >= 14
    assert report.median_error < 0.05


def test_normalised_error_is_relative_to_inter_ocular_distance():
    truth = torch.zeros(1, 68, 2, dtype=torch.float64)
    truth[0, 36:42, 0], truth[0, 42:48, 0] = 10.0, 60.0
    detected = truth + torch.tensor([3.0, 4.0], dtype=torch.float64)
    torch.testing.assert_close(normalised_landmark_error(detected, truth), torch.tensor([0.1], dtype=torch.float64))
    with pytest.raises(ValueError, match="detected"):
        normalised_landmark_error(detected[:, :5], truth)


@pytest.mark.slow
def test_dlib_finds_95_percent_of_1000_faces(generator):
    report = check_detection(generator, DlibDetector(), num_samples=1000, seed=0)
    print(report.summary())
    assert report.detection_rate >= 0.95
    assert report.median_error < 0.05
    assert np.isfinite(report.error[report.found]).all()
