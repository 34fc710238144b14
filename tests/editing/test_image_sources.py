"""Photos, folders and videos as the source of editing.transfer and editing.edit (stand-ins: tiny generator,
saved regressor, and the oracle detector whose landmarks are R(phi(w)) of the pictured face)."""

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from editing_standins import TinyGenerator
from editing_standins import command_config as standin_command_config
from omegaconf import open_dict
from reenact_standins import OracleDetector

from backbones.landmarks.base import images_to_uint8
from common.errors import UserError
from editing import edit, transfer
from editing.sources import detect_frames, fit_frames, read_source
from regressor.export import load_attribute_regressor


def command_config(name, tmp_path, regressor_path, *overrides):
    cfg = standin_command_config(
        name,
        tmp_path,
        regressor_path,
        "hold_alpha=fixed",
        "edit.num_steps=4",
        "edit.damping=0.01",
        *overrides,
        num_frames=0,
    )
    with open_dict(cfg):
        cfg.detector = {"_target_": "reenact_standins.OracleDetector", "regressor_path": str(regressor_path)}
    return cfg


def photo(path, seed):
    """Write the tiny generator's face of `seed` as a PNG."""
    generator = TinyGenerator(dtype=torch.float32)
    iio.imwrite(path, images_to_uint8(generator.synthesis(generator.mapping(generator.z_from_seeds([seed]))))[0])


def fitted_q(path, regressor_path):
    """q (1, D) the commands should read from the photo at `path`: the oracle's landmarks fitted with fit_frames."""
    model = load_attribute_regressor(regressor_path).nrsfm
    source = read_source(path)
    detections = detect_frames(OracleDetector(regressor_path), source.frames)
    return fit_frames(model, detections.landmarks, detections.found)


def test_transfer_takes_the_pose_of_a_photo(tmp_path, regressor_path):
    photo(tmp_path / "face.png", 21)
    q_photo = fitted_q(tmp_path / "face.png", regressor_path)
    result = transfer.run(
        command_config(
            "transfer", tmp_path, regressor_path, f"source={tmp_path / 'face.png'}", "target=2", "parts=[rotation]"
        )
    )
    with np.load(result["latents"]) as data:
        np.testing.assert_allclose(
            data["q_target"][0, 3:6], q_photo[0, 3:6].numpy(), atol=1e-4
        )  # the photo's fitted pose
        np.testing.assert_allclose(data["q_edit"][:, 3:6], data["q_target"][:, 3:6], atol=0.01)


def test_transfer_from_a_folder_edits_the_target_once_per_face(tmp_path, regressor_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for index, seed in enumerate((21, 22, 23)):
        photo(folder / f"{index}.png", seed)
    iio.imwrite(folder / "3.png", np.zeros((16, 16, 3), np.uint8))  # no face: skipped and counted
    with pytest.warns(UserWarning, match="skipped 1 of 4 frames without a face"):
        result = transfer.run(
            command_config("transfer", tmp_path, regressor_path, f"source={folder}", "target=2", "parts=[rotation]")
        )
    with np.load(result["latents"]) as data:
        assert data["w"].shape == (3, 3, 16)


def test_edit_takes_the_pose_of_a_photo(tmp_path, regressor_path):
    photo(tmp_path / "face.png", 21)
    q_photo = fitted_q(tmp_path / "face.png", regressor_path)
    result = edit.run(
        command_config("edit", tmp_path, regressor_path, "faces=[3,4]", f"source={tmp_path / 'face.png'}")
    )
    with np.load(result["latents"]) as data:
        np.testing.assert_allclose(data["q_target"][:, 3:6], np.repeat(q_photo[:, 3:6].numpy(), 2, 0), atol=1e-4)


def test_photo_sources_fail_in_one_line(tmp_path, regressor_path):
    iio.imwrite(tmp_path / "dark.png", np.zeros((16, 16, 3), np.uint8))
    with pytest.raises(UserError, match="no face found in .*dark.png"):
        transfer.run(command_config("transfer", tmp_path, regressor_path, f"source={tmp_path / 'dark.png'}"))
    with pytest.raises(UserError, match="missing.jpg not found"):
        edit.run(command_config("edit", tmp_path, regressor_path, f"source={tmp_path / 'missing.jpg'}"))
    with pytest.raises(UserError, match="must be a photo, a folder of photos or a video"):
        edit.run(command_config("edit", tmp_path, regressor_path, "source=5"))
