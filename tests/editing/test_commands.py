"""editing.edit and editing.transfer run(cfg) on stand-ins: a saved AttributeRegressor over a tiny generator."""

import subprocess
import sys

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from editing_standins import RESOLUTION, TinyGenerator, command_config
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf, open_dict

from backbones.landmarks.base import Detections
from common.errors import UserError
from editing import edit, sample, session, transfer
from editing.attributes import edit_target
from editing.linear import LinearEdit
from editing.outputs import load_latents
from regressor.export import load_attribute_regressor


def test_edit_command_writes_outputs_and_reaches_target(tmp_path, regressor_path, capsys):
    result = edit.run(
        command_config(
            "edit", tmp_path, regressor_path, "faces=[3,4]", "delta.yaw=5", "edit.num_steps=4", "edit.damping=0"
        )
    )
    assert result["max_error_std"] < 1e-3
    assert {"latents", "side_by_side", "trajectory"} <= set(result)
    ws, metadata = load_latents(result["latents"])
    assert ws.shape == (2, 3, 16) and metadata["request"]["changes"] == {"delta.yaw": 5.0}
    with np.load(result["latents"]) as data:
        np.testing.assert_allclose(data["q_edit"][:, 4] - data["q_original"][:, 4], np.radians(5), atol=1e-3)
    assert "wrote side_by_side" in capsys.readouterr().out


def test_edit_command_reports_the_detected_landmarks_against_the_target(tmp_path, regressor_path, capsys):
    cfg = command_config(
        "edit", tmp_path, regressor_path, "faces=[3,4]", "delta.yaw=5", "hold_alpha=fixed", "check_landmarks=true"
    )
    with open_dict(cfg):  # it sees R(phi(w)) of the pictured face
        cfg.detector = {"_target_": "reenact_standins.OracleDetector", "regressor_path": str(regressor_path)}
    result = edit.run(cfg)
    assert result["landmark_error_px"] >= 0
    assert "px from the target ones (mean over points, median over 2 face(s))" in capsys.readouterr().out


class OffsetDetector:
    """Finds, in every image but the last, the landmarks it was given, moved 3 px right and 4 px down."""

    name, num_landmarks = "offset", 20

    def __init__(self, landmarks_px):
        self.landmarks_px = landmarks_px

    def detect(self, images):
        found = torch.ones(len(images), dtype=torch.bool)
        found[-1] = False
        return Detections((self.landmarks_px + torch.tensor([3.0, 4.0])).float(), found, found.float())


def test_landmark_check_measures_detected_against_target_landmarks_in_pixels(regressor_path, monkeypatch):
    regressor = load_attribute_regressor(regressor_path)
    latent = 0.3 * torch.randn(3, 16, generator=torch.Generator().manual_seed(0))
    q = regressor(latent)
    target = edit_target(q, {"delta.yaw": 10}, regressor.nrsfm)
    detector = OffsetDetector(RESOLUTION * regressor.nrsfm(target.q))
    monkeypatch.setattr(session, "detector_for_model", lambda spec, model: detector)
    cfg = OmegaConf.create({"detector": None, "truncation_psi": 1.0})
    check = session.edit_landmark_check(
        cfg, TinyGenerator(dtype=torch.float32), regressor, LinearEdit(latent, q, None), target
    )
    torch.testing.assert_close(check.error_px[:2], torch.full((2,), 5.0))  # a 3-4-5 triangle
    assert check.error_px[2].isnan() and check.found.tolist() == [True, True, False]
    assert check.median_px == pytest.approx(5.0)
    torch.testing.assert_close(check.achieved[2], regressor.nrsfm(q[2]).float())  # not found: R(phi(w_edit)) is drawn
    assert "no face found in 1" in check.summary()


def test_training_attributes_are_sampled_once_per_generator_and_regressor(tmp_path, regressor_path, monkeypatch):
    from editing import session

    calls = []
    sample_once = session.attribute_sample
    monkeypatch.setattr(session, "attribute_sample", lambda *args: calls.append(args) or sample_once(*args))
    session._training_attributes.cache_clear()
    cfg = command_config("edit", tmp_path, regressor_path, "pipeline.num_samples=300")
    generator = session.load_generator(cfg)
    regressor = session.load_regressor(cfg, generator)
    first = session.training_attributes(cfg, generator, regressor)
    assert (
        session.training_attributes(cfg, generator, regressor) is first and len(calls) == 1
    )  # presets and the coupled hold share it
    session.training_attributes(cfg, generator, session.load_regressor(cfg, generator))
    assert len(calls) == 2


def test_gradient_edit_command(tmp_path, regressor_path):
    cfg = command_config(
        "edit",
        tmp_path,
        regressor_path,
        "faces=3",
        "yaw=0",
        "edit=gradient",
        "identity=none",
        "edit.num_steps=200",
        "edit.learning_rate=0.02",
    )
    assert edit.run(cfg)["max_error_std"] < 0.1


def test_transfer_command_moves_parts(tmp_path, regressor_path):
    cfg = command_config(
        "transfer",
        tmp_path,
        regressor_path,
        "source=1",
        "target=[2,5]",
        "parts=[rotation]",
        "hold_alpha=fixed",
        "edit.num_steps=6",
        "edit.damping=0",
    )
    result = transfer.run(cfg)
    with np.load(result["latents"]) as data:
        np.testing.assert_allclose(data["q_edit"][:, 3:6], data["q_target"][:, 3:6], atol=1e-3)
        np.testing.assert_allclose(data["q_edit"][:, 6:], data["q_original"][:, 6:], atol=1e-3)
        assert not np.allclose(data["q_original"][:, 3:6], data["q_target"][:, 3:6])
    side = iio.imread(result["side_by_side"])  # source | target | result | result with landmarks, a row per target
    assert side.shape[0] == 2 * side.shape[1] // 4
    np.testing.assert_array_equal(
        side[: side.shape[0] // 2, : side.shape[1] // 4], side[side.shape[0] // 2 :, : side.shape[1] // 4]
    )


def test_coupled_alphas_follow_the_transferred_turn(tmp_path, regressor_path):
    cfg = command_config(
        "transfer",
        tmp_path,
        regressor_path,
        "source=1",
        "target=[2,5]",
        "parts=[rotation]",
        "hold_alpha=coupled",
        "edit.num_steps=6",
        "edit.damping=0",
        "pipeline.num_samples=300",
    )
    result = transfer.run(cfg)
    with np.load(result["latents"]) as data:
        alpha = slice(6, data["q_target"].shape[1] - 2)
        assert np.abs(data["q_target"][:, alpha] - data["q_original"][:, alpha]).max() > 1e-3  # moved with the turn
        np.testing.assert_allclose(data["q_edit"][:, 3:-2], data["q_target"][:, 3:-2], atol=1e-3)


def test_conditional_sampling_command(tmp_path, regressor_path):
    cfg = command_config(
        "conditional",
        tmp_path,
        regressor_path,
        "preset=frontal",
        "n=3",
        "seed=10",
        "edit.num_steps=6",
        "edit.damping=0",
    )
    result = sample.run(cfg)
    with np.load(result["latents"]) as data:
        assert data["w"].shape == (3, 3, 16)
        np.testing.assert_allclose(data["q_edit"][:, 3:6], 0, atol=1e-3)


def test_command_errors(tmp_path, regressor_path):
    with pytest.raises(UserError, match="nothing to change"):
        edit.run(command_config("edit", tmp_path, regressor_path))
    with pytest.raises(UserError, match="regressor file .* not found"):
        edit.run(command_config("edit", tmp_path, tmp_path / "missing.pt", "yaw=3"))
    with pytest.raises(UserError, match="latent_metric must be one of spread, euclidean, got 'cosine'"):
        edit.run(command_config("edit", tmp_path, regressor_path, "yaw=3", "latent_metric=cosine"))
    with pytest.raises(UserError, match="hold_alpha must be one of fixed, coupled, got 'loose'"):
        edit.run(command_config("edit", tmp_path, regressor_path, "yaw=3", "hold_alpha=loose"))
    with pytest.raises(UserError, match="unknown attribute 'frown'; valid: pitch, yaw"):
        edit.run(command_config("edit", tmp_path, regressor_path, "+frown=3"))
    with pytest.raises(ValueError, match="latent space 'w', not 'z'"):
        edit.run(command_config("edit", tmp_path, regressor_path, "yaw=3", "latent_space=z"))
    with pytest.raises(ValueError, match="unknown attribute 'face'"):
        transfer.run(command_config("transfer", tmp_path, regressor_path, "parts=[face]"))
    with pytest.raises(UserError, match="n must be at least 1"):
        sample.run(command_config("conditional", tmp_path, regressor_path, "n=0"))
    with pytest.raises(ValueError, match="outside the training range"):
        edit.run(command_config("edit", tmp_path, regressor_path, "yaw=80", "strict=true"))


def test_every_key_of_the_edit_config_is_a_change_or_a_setting():
    with initialize_config_module(config_module="conf", version_base="1.3"):
        keys = set(compose(config_name="edit").keys())
    assert keys <= set(edit.CHANGE_KEYS + edit.SETTING_KEYS)


def test_command_line_errors_are_one_line(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "editing.edit", "generator=stylegan2", "yaw=3", f"paths.work_dir={tmp_path}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines() == [
        "error: config value generator.path is missing; set it on the command line (generator.path=...)"
    ]


def test_bad_faces_fail_before_the_pipeline_builds_anything(tmp_path, monkeypatch):
    def refuse(cfg):
        raise AssertionError("the pipeline must not run before the faces are checked")

    monkeypatch.setattr("editing.session.ensure_regressor", refuse)
    cfg = command_config("transfer", tmp_path, "null", f"source={tmp_path / 'missing.npz'}", "target=2")
    with pytest.raises(UserError, match="missing.npz not found"):
        transfer.run(cfg)
    with pytest.raises(UserError, match="hold_alpha must be one of fixed, coupled, got 'loose'"):
        transfer.run(command_config("transfer", tmp_path, "null", "hold_alpha=loose"))
    with pytest.raises(UserError, match=r"rows=\[3\] restricts an edit to rows of ws, so it needs latent_space=w\+"):
        transfer.run(command_config("transfer", tmp_path, "null", "rows=[3]"))
