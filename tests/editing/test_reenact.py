"""editing.reenact run(cfg) on stand-ins: a tiny generator, a saved regressor over a random NRSfM model and a
20-landmark detector; drivers are videos and latent files the tests render with the tiny generator."""

import csv
import subprocess
import sys

import numpy as np
import pytest
import torch
from editing_standins import TinyGenerator
from hydra import compose, initialize_config_module
from omegaconf import open_dict

from backbones.landmarks.base import images_to_uint8
from common.errors import UserError
from editing import reenact
from editing.attributes import attribute_range
from editing.outputs import save_latents
from editing.smoothing import TemporalFilter
from editing.video import read_video, write_video
from regressor.export import load_attribute_regressor

TINY = {"_target_": "editing_standins.TinyGenerator", "dtype": "float32"}
NUM_FRAMES = 12


def reenact_config(tmp_path, regressor_path, *overrides, detector=None):
    with initialize_config_module(config_module="conf", version_base="1.3"):
        cfg = compose(
            config_name="reenact",
            overrides=[
                "generator=stylegan2",
                f"regressor_path={regressor_path}",
                f"out_dir={tmp_path / 'out'}",
                "edit.num_steps=4",
                "edit.damping=0.01",
                "trajectory.damping=0.01",
                "hold_alpha=fixed",
                "batch_size=5",
                "smooth_latents=false",
                *overrides,
            ],
        )
    with open_dict(cfg):
        cfg.generator = TINY
        cfg.detector = detector or {
            "_target_": "reenact_standins.OracleDetector",
            "regressor_path": str(regressor_path),
        }
    return cfg


def driving_ws(num_frames=NUM_FRAMES):
    """A tiny generator's face moving along a straight latent path: ws (T, 3, 16)."""
    generator = TinyGenerator(dtype=torch.float32)
    z = generator.z_from_seeds([11, 12])
    ws = generator.mapping(z)
    steps = torch.linspace(0, 1, num_frames)[:, None, None]
    return ws[:1] + steps * (ws[1:] - ws[:1])


def within_std(q, target, regressor_path):
    """Largest |q - target| in training std of q."""
    return float(np.abs((q - target) / load_attribute_regressor(regressor_path).nrsfm.q_std.numpy()).max())


@pytest.fixture
def driving_video(tmp_path):
    generator = TinyGenerator(dtype=torch.float32)
    frames = images_to_uint8(generator.synthesis(driving_ws()))
    frames[4] = 0  # a frame without a face (the stand-in detector finds none in dark pictures)
    return write_video(tmp_path / "driver.mp4", frames, fps=10)


def test_reenact_from_a_video_writes_every_output(tmp_path, regressor_path, driving_video, capsys):
    result = reenact.run(reenact_config(tmp_path, regressor_path, f"driving={driving_video}"))
    assert result["num_frames"] == NUM_FRAMES and result["num_interpolated"] == 1 and not bool(result["found"][4])
    video, fps = read_video(result["video"])
    assert video.shape == (NUM_FRAMES, 16, 32, 3) and fps == pytest.approx(10)
    with np.load(result["latents"]) as data:
        assert data["w"].shape == (NUM_FRAMES, 3, 16) and data["w_original"].shape == (1, 3, 16)
        assert within_std(data["q_edit"], data["q_target"], regressor_path) < 0.05
        assert np.isnan(data["q_driving"][4]).all() and np.isfinite(data["q_driving_smoothed"]).all()
    with open(result["csv"]) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == NUM_FRAMES and rows[4]["found"] == "0" and "achieved.yaw[deg]" in rows[0]
    assert "Savitzky-Golay" in capsys.readouterr().out
    assert result["strip"].is_file()


def test_absolute_mode_takes_the_driver_relative_mode_its_motion(tmp_path, regressor_path):
    latents = save_latents(tmp_path / "driver.npz", driving_ws(), {"generator": "tiny"})
    regressor = load_attribute_regressor(regressor_path)
    low, high = attribute_range(regressor.nrsfm)
    absolute = reenact.run(
        reenact_config(tmp_path / "a", regressor_path, f"driving={latents}", "parts=pose", "smoothing.name=none")
    )
    relative = reenact.run(
        reenact_config(
            tmp_path / "r", regressor_path, f"driving={latents}", "parts=pose", "mode=relative", "smoothing.name=none"
        )
    )
    with np.load(absolute["latents"]) as a, np.load(relative["latents"]) as r:
        rotation = slice(3, 6)
        expected = np.clip(a["q_driving"][:, rotation], low[rotation].numpy(), high[rotation].numpy())
        np.testing.assert_allclose(a["q_target"][:, rotation], expected, atol=1e-5)
        with torch.no_grad():
            q0 = regressor(regressor.nrsfm.q_mean.new_tensor(r["w_original"][:, 0]))[0].numpy()
        np.testing.assert_allclose(r["q_target"][0, rotation], q0[rotation], atol=1e-5)
        motion = r["q_driving"][:, rotation] - r["q_driving"][:1, rotation]
        np.testing.assert_allclose(r["q_target"][:, rotation] - q0[rotation], motion, atol=1e-5)
        np.testing.assert_allclose(a["q_target"][:, 6:], np.broadcast_to(q0[6:], a["q_target"][:, 6:].shape), atol=1e-5)


@pytest.mark.parametrize("method", ["joint", "frames"])
def test_results_reach_their_targets_and_do_not_depend_on_the_batch_size(tmp_path, regressor_path, method):
    latents = save_latents(tmp_path / "driver.npz", driving_ws(), {"generator": "tiny"})
    settings = (f"driving={latents}", "mode=relative", f"trajectory.method={method}")
    one = reenact.run(reenact_config(tmp_path / "one", regressor_path, *settings, "batch_size=1"))
    many = reenact.run(reenact_config(tmp_path / "many", regressor_path, *settings, "batch_size=5"))
    with np.load(one["latents"]) as a, np.load(many["latents"]) as b:
        assert within_std(a["q_edit"], a["q_target"], regressor_path) < 0.02
        np.testing.assert_allclose(a["w"], b["w"], atol=1e-4)
        steps = np.linalg.norm(np.diff(a["w"][:, 0], axis=0), axis=-1)
        assert steps.max() < 3 * np.median(steps) + 1e-6  # frame to frame, the result moves smoothly


def test_smoothed_latents_are_the_filtered_per_frame_edits(tmp_path, regressor_path):
    latents = save_latents(tmp_path / "driver.npz", driving_ws(), {"generator": "tiny"})
    raw = reenact.run(reenact_config(tmp_path / "raw", regressor_path, f"driving={latents}", "smoothing.window=5"))
    smooth = reenact.run(
        reenact_config(
            tmp_path / "smooth", regressor_path, f"driving={latents}", "smoothing.window=5", "smooth_latents=true"
        )
    )
    expected = TemporalFilter(window=5).smooth(raw["latents_array"])
    torch.testing.assert_close(smooth["latents_array"], expected, atol=1e-5, rtol=0)


def test_bad_input_is_one_line_each(tmp_path, regressor_path, driving_video):
    notes = tmp_path / "notes.mp4"
    notes.write_text("not a video")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    dark = write_video(tmp_path / "dark.mp4", np.zeros((4, 16, 16, 3), np.uint8), fps=10)
    foreign = save_latents(tmp_path / "foreign.npz", torch.zeros(1, 3, 16), {"generator": "synthetic"})
    cases = [
        ((f"driving={notes}",), "cannot read video .*notes.mp4: ffmpeg could not decode it"),
        ((f"driving={empty}",), "empty.mp4 is empty"),
        ((f"driving={dark}",), "no face found in any of the 4 frames of .*dark.mp4"),
        ((f"driving={driving_video}", f"target={foreign}"), "holds latents of generator 'synthetic', not 'tiny'"),
        (
            (f"driving={driving_video}", "frames.start=40"),
            r"frames.start=40 is outside video .* which has 12 frame\(s\)",
        ),
        ((f"driving={driving_video}", "parts=face"), "parts must be one of pose, expression, both"),
        ((f"driving={driving_video}", "smoothing.window=4"), "odd window"),
        ((f"driving={driving_video}", "trajectory.method=spline"), "trajectory.method must be one of joint, frames"),
        ((f"driving={driving_video}", "trajectory.damping=0"), "trajectory needs num_steps >= 1, damping > 0"),
        ((f"driving={driving_video}", "target=[1,2]"), "target must be one face"),
        (("driving=???",), "config value driving is missing"),
    ]
    for overrides, message in cases:
        with pytest.raises((UserError, ValueError), match=message):
            reenact.run(reenact_config(tmp_path, regressor_path, *overrides))
    with pytest.raises(UserError, match="detector 'dlib' gives 68 landmarks, but the NRSfM model was fit on 20"):
        reenact.run(reenact_config(tmp_path, regressor_path, f"driving={driving_video}", detector="dlib"))


def test_command_line_error_is_one_line(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "editing.reenact", "target=2", f"paths.work_dir={tmp_path}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines() == [
        "error: config value driving is missing; set it on the command line (driving=...)"
    ]
