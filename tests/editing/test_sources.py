"""editing.sources: pictures, folders and videos -> landmarks -> q, on a clip made from skimage's astronaut."""

import logging

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from astronaut_clip import astronaut_clip
from editing_standins import random_nrsfm

from common.errors import UserError
from editing.sources import (
    detect_frames,
    detector_for_model,
    fit_frames,
    landmark_residual,
    pictures_q,
    read_source,
    source_attributes,
    square,
)
from editing.video import FrameRange, write_video

YAWS = (-12.0, -4.0, 4.0, 12.0)


@pytest.fixture(scope="module")
def clip():
    return astronaut_clip(YAWS)


@pytest.fixture(scope="module")
def model68():
    model = random_nrsfm(num_landmarks=68, dtype=torch.float64)
    model.metadata["landmarks"] = "dlib"
    return model


def test_astronaut_video_reads_back_with_its_landmarks(tmp_path, clip, model68):
    frames, truth = clip
    path = write_video(tmp_path / "astronaut.mp4", frames, fps=10)
    source = read_source(path)
    assert (
        source.frames.shape == frames.shape and source.fps == pytest.approx(10) and source.names == ["0", "1", "2", "3"]
    )
    detector = detector_for_model(None, model68)
    detections = detect_frames(detector, source.frames, batch_size=3)
    assert bool(detections.found.all())
    error = (detections.landmarks.double() - torch.from_numpy(truth) / frames.shape[1]).norm(dim=-1).mean(-1)
    assert float(error.max()) < 0.01  # under 2.6 px at 256 px: the detector follows the re-posed face
    attributes = source_attributes(model68, detector, source.frames, str(path))
    assert (
        attributes.num_missing == 0
        and torch.isfinite(attributes.q).all()
        and attributes.q.shape == (4, model68.layout.dim)
    )
    partial = read_source(path, FrameRange(1, 4, 2))
    np.testing.assert_array_equal(partial.frames, source.frames[1:4:2])


def test_folder_skips_and_counts_frames_without_a_face(tmp_path, clip, model68, caplog):
    frames, _ = clip
    for index, frame in enumerate(frames[:3]):
        iio.imwrite(tmp_path / f"frame{index}.png", frame)
    iio.imwrite(tmp_path / "frame3.png", np.full((200, 256, 3), 128, np.uint8))  # no face, and not square
    source = read_source(tmp_path)
    assert source.frames.shape == (4, 256, 256, 3) and source.names[-1] == "frame3.png"
    with caplog.at_level(logging.WARNING), pytest.warns(UserWarning, match="skipped 1 of 4 frames without a face"):
        q = pictures_q(model68, "dlib", source, str(tmp_path))
    assert q.shape == (3, model68.layout.dim) and torch.isfinite(q).all()


def test_one_picture_without_a_face_is_an_error(tmp_path, model68):
    iio.imwrite(tmp_path / "wall.png", np.full((64, 64, 3), 128, np.uint8))
    with pytest.raises(UserError, match="no face found in .*wall.png by the dlib detector"):
        pictures_q(model68, None, read_source(tmp_path / "wall.png"), str(tmp_path / "wall.png"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no images"):
        read_source(tmp_path / "empty")
    (tmp_path / "broken.jpg").write_text("no picture")
    with pytest.raises(UserError, match="cannot read image .*broken.jpg"):
        read_source(tmp_path / "broken.jpg")


def test_detector_with_another_layout_is_refused(model68):
    model20 = random_nrsfm(num_landmarks=20)
    with pytest.raises(UserError, match="detector 'dlib' gives 68 landmarks, but the NRSfM model was fit on 20"):
        detector_for_model("dlib", model20)
    with pytest.raises(UserError, match="unknown landmark detector 'test'.*one of dlib, fan, mediapipe"):
        detector_for_model(None, model20)


def test_square_pads_around_the_centre():
    picture = np.ones((2, 4, 3), np.uint8)
    padded = square(picture)
    assert padded.shape == (4, 4, 3) and padded[1:3].all() and not padded[0].any() and not padded[3].any()


def test_warm_started_fits_are_never_worse_than_cold_ones():
    model = random_nrsfm(num_landmarks=20)
    generator = torch.Generator().manual_seed(4)
    q_true = model.q_mean + model.q_std * torch.randn(6, model.layout.dim, generator=generator, dtype=torch.float64)
    landmarks = model(q_true) + 0.002 * torch.randn(6, 20, 2, generator=generator, dtype=torch.float64)
    found = torch.tensor([True, True, False, True, True, True])
    q = fit_frames(model, landmarks, found)
    assert torch.isnan(q[2]).all() and torch.isfinite(q[found]).all()
    from nrsfm.fit_q import fit_q

    cold = fit_q(model, landmarks[found])
    assert (
        landmark_residual(model, q[found], landmarks[found]) <= landmark_residual(model, cold, landmarks[found]) + 1e-12
    ).all()
