"""The real dlib detector reads the synthetic faces and agrees with their ground truth."""

import numpy as np
import pytest

from backbones.landmarks.dlib import DlibDetector
from backbones.synthetic import SyntheticGenerator
from backbones.synthetic.detection_check import check_detection


@pytest.fixture(scope="module")
def generator() -> SyntheticGenerator:
    return SyntheticGenerator()


def test_dlib_finds_and_locates_16_faces(generator):
    report = check_detection(generator, DlibDetector(), num_samples=16, seed=100, batch_size=16)
    print(report.summary())
    assert report.found.sum() >= 14
    assert report.nme < 0.07


@pytest.mark.slow
def test_dlib_finds_95_percent_of_1000_faces(generator):
    report = check_detection(generator, DlibDetector(), num_samples=1000, seed=0)
    print(report.summary())
    assert report.detection_rate >= 0.95
    assert report.nme < 0.07
    assert np.isfinite(report.error[report.found]).all()
