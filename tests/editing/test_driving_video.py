"""editing.driving_video: the scripted trajectory and its rendering to MP4 with per-frame truth."""

import numpy as np
import pytest
import torch
from editing_standins import TinyGenerator

from backbones.synthetic.face_model import EXPRESSION_NAMES
from backbones.synthetic.generator import SyntheticGenerator
from editing.driving_video import render_driving_video, scripted_trajectory, write_driving_video
from editing.video import read_video


def test_trajectory_sweeps_yaw_nods_and_smiles():
    trajectory = scripted_trajectory(120, yaw=25, pitch=10)
    yaw, pitch = trajectory["rotation_deg"][:, 1], trajectory["rotation_deg"][:, 0]
    assert yaw[0] == pytest.approx(-25) and yaw[-1] == pytest.approx(25) and bool((yaw.diff() >= 0).all())
    assert float(pitch.abs().max()) == pytest.approx(10, abs=0.05) and float(pitch.min()) < -9.9
    smile = trajectory["expression"][:, EXPRESSION_NAMES.index("smile")]
    assert smile[0] == 0 and float(smile.max()) == pytest.approx(0.8, abs=1e-3)
    with pytest.raises(ValueError, match="num_frames must be at least 2"):
        scripted_trajectory(1)


def test_rendered_video_and_truth_follow_the_trajectory(tmp_path):
    generator = SyntheticGenerator(img_resolution=64)
    video, truth_path = write_driving_video(tmp_path / "driver.mp4", generator, seed=3, num_frames=5, fps=5)
    frames, fps = read_video(video)
    assert frames.shape == (5, 64, 64, 3) and fps == pytest.approx(5)
    truth = np.load(truth_path)
    expected = scripted_trajectory(5)
    np.testing.assert_allclose(truth["rotation_deg"], expected["rotation_deg"].numpy(), atol=1e-5)
    np.testing.assert_allclose(truth["expression"], expected["expression"].numpy(), atol=1e-6)
    assert truth["identity"].shape == (5, 16) and np.ptp(truth["identity"], axis=0).max() == 0  # one face throughout
    assert truth["landmarks"].shape == (5, 68, 2) and (truth["landmarks"] > 0).all() and (truth["landmarks"] < 64).all()
    nose = truth["landmarks"][:, 30, 0]
    assert abs(nose[-1] - nose[0]) > 6  # the nose tip crosses the face as the head turns from -25 to +25 degrees yaw


def test_driving_video_needs_the_synthetic_generator():
    with pytest.raises(ValueError, match="needs the synthetic generator"):
        render_driving_video(TinyGenerator(dtype=torch.float32), 1, scripted_trajectory(3))
