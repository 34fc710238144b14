"""dlib detector on a real photo, the shared interface, and the optional MediaPipe extra."""

import importlib.util
import pickle

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.utils import instantiate
from skimage import data

from backbones.landmarks import Detections, images_to_uint8
from backbones.landmarks.dlib import DlibDetector
from common.errors import UserError


@pytest.fixture(scope="module")
def astronaut() -> torch.Tensor:
    """(1, 3, 512, 512) in [-1, 1]."""
    return torch.from_numpy(data.astronaut()).permute(2, 0, 1)[None].float() / 127.5 - 1


@pytest.fixture(scope="module")
def dlib_detector() -> DlibDetector:
    return DlibDetector()


def test_images_to_uint8_round_trips():
    pixels = torch.randint(0, 256, (2, 5, 7, 3), dtype=torch.uint8)
    images = pixels.permute(0, 3, 1, 2).float() / 127.5 - 1
    assert np.array_equal(images_to_uint8(images), pixels.numpy())


def test_images_to_uint8_rejects_bad_input():
    with pytest.raises(ValueError, match=r"images must have shape \(B, 3, H, W\)"):
        images_to_uint8(torch.zeros(2, 4, 8, 8))
    with pytest.raises(ValueError, match="NaN"):
        images_to_uint8(torch.full((1, 3, 4, 4), float("nan")))


def test_dlib_finds_the_astronaut_and_keeps_the_best_face(astronaut, dlib_detector):
    # HOG finds two faces here (the real one scores 1.16, a patch of the suit 0.12): the best is kept.
    detections = dlib_detector.detect(astronaut)
    assert isinstance(detections, Detections)
    assert detections.landmarks.shape == (1, 68, 2) and detections.landmarks.dtype == torch.float32
    assert detections.found.tolist() == [True]
    assert detections.score[0] > 1.0
    left_eye, right_eye = detections.landmarks[0, 36], detections.landmarks[0, 45]
    assert 170 < left_eye[0] < right_eye[0] < 280 and 80 < left_eye[1] < 130


def test_dlib_batch_matches_single_and_blank_is_not_found(astronaut, dlib_detector):
    blank = torch.full_like(astronaut, -1.0)
    batch = dlib_detector.detect(torch.cat([blank, astronaut, blank]))
    single = dlib_detector.detect(astronaut)
    assert batch.found.tolist() == [False, True, False]
    assert torch.equal(batch.landmarks[1], single.landmarks[0])
    assert torch.equal(batch.landmarks[0], torch.zeros(68, 2)) and batch.score[0] == 0


def test_dlib_detector_pickles_for_worker_processes(astronaut, dlib_detector):
    copy = pickle.loads(pickle.dumps(dlib_detector))
    assert torch.equal(copy.detect(astronaut).landmarks, dlib_detector.detect(astronaut).landmarks)


def test_dlib_bad_input(tmp_path):
    with pytest.raises(UserError, match="shape predictor .* not found"):
        DlibDetector(predictor_path=str(tmp_path / "missing.dat"))
    corrupt = tmp_path / "corrupt.dat"
    corrupt.write_bytes(b"garbage")
    with pytest.raises(UserError, match="not a dlib shape predictor"):
        DlibDetector(predictor_path=str(corrupt))
    with pytest.raises(ValueError, match="need 0 <= upsample <= max_upsample"):
        DlibDetector(upsample=-1)
    with pytest.raises(ValueError, match="need 0 <= upsample <= max_upsample"):
        DlibDetector(upsample=2, max_upsample=1)
    with pytest.raises(ValueError, match="search_size must be >= 32"):
        DlibDetector(search_size=8)
    with pytest.raises(ValueError, match="face_box must be"):
        DlibDetector(aligned=True, face_box=[0.6, 0.2, 0.4, 0.8])


def test_detect_uint8_rejects_float_arrays(dlib_detector):
    with pytest.raises(ValueError, match="dtype uint8"):
        dlib_detector.detect_uint8(np.zeros((1, 8, 8, 3), np.float32))


def test_every_landmarks_config_composes():
    with initialize_config_module(config_module="conf", version_base="1.3"):
        for name, target in [("dlib", "DlibDetector"), ("mediapipe", "MediaPipeDetector"), ("fan", "FanDetector")]:
            assert compose(config_name=f"landmarks/{name}").landmarks._target_.endswith(target)
        detector = instantiate(compose(config_name="landmarks/dlib").landmarks)
        assert detector.name == "dlib" and detector.num_landmarks == 68


@pytest.mark.skipif(importlib.util.find_spec("mediapipe") is not None, reason="mediapipe is installed")
def test_mediapipe_missing_names_the_extra():
    from backbones.landmarks.mediapipe import MediaPipeDetector

    with pytest.raises(UserError, match=r'pip install -e "\.\[mediapipe\]"'):
        MediaPipeDetector()


def test_mediapipe_finds_the_astronaut(astronaut):
    pytest.importorskip("mediapipe")
    from backbones.landmarks.mediapipe import MediaPipeDetector

    detections = MediaPipeDetector().detect(astronaut)
    assert detections.landmarks.shape == (1, 468, 2) and detections.found.tolist() == [True]
    nose_tip = detections.landmarks[0, 1]
    assert 190 < nose_tip[0] < 260 and 100 < nose_tip[1] < 170
