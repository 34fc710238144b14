import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module

from common.errors import UserError
from nrsfm.fit import run
from nrsfm.model import NRSfMModel
from nrsfm.synthetic import synthetic_landmarks

NUM_SAMPLES = 300


def write_dataset(path, num_samples=NUM_SAMPLES, seed=21):
    """A small samples.h5 in the layout of sampling.dataset, landmarks from the synthetic model."""
    data = synthetic_landmarks(num_samples, num_landmarks=68, num_basis=6, noise=0.002, seed=seed, dtype=torch.float32)
    found = np.ones(num_samples, dtype=bool)
    found[[3, 17]] = False
    landmarks = data.landmarks.numpy()
    landmarks[~found] = 0.0
    metadata = {
        "generator": "synthetic-test",
        "generator_checksum": "abc123",
        "detector": "dlib",
        "num_landmarks": 68,
        "image_size": [256, 256],
    }
    with h5py.File(path, "w") as f:
        f["seeds"] = np.arange(100, 100 + num_samples, dtype=np.int64)
        f["z"] = np.zeros((num_samples, 4), np.float32)
        f["w"] = np.zeros((num_samples, 4), np.float32)
        f["landmarks"] = landmarks
        f["found"] = found
        f["score"] = np.ones(num_samples, np.float32)
        f.attrs["metadata"] = json.dumps(metadata)
    return found


def fit_config(data_path, *overrides):
    with initialize_config_module(config_module="conf", version_base="1.3"):
        return compose(
            "fit", overrides=[f"samples={data_path}", "num_basis=6", "nrsfm.num_refine_steps=60", *overrides]
        )


def test_fit_writes_model_attributes_and_plot(tmp_path, capsys):
    data_path = tmp_path / "samples.h5"
    found = write_dataset(data_path)
    result = run(fit_config(data_path))
    assert result["rmse"] <= 0.5 * result["rmse_two_step"]
    assert result["num_found"] == NUM_SAMPLES - 2
    printed = capsys.readouterr().out
    assert "RMSE" in printed and str(tmp_path / "model.npz") in printed

    model = NRSfMModel.load(tmp_path / "model.npz")
    for key in ("landmarks", "num_landmarks", "generator", "generator_checksum", "dataset_checksum"):
        assert key in model.metadata
    assert model.metadata["landmarks"] == "dlib" and model.metadata["generator_checksum"] == "abc123"
    assert model.num_basis == 6 and model.num_landmarks == 68

    with np.load(tmp_path / "attributes.npz", allow_pickle=False) as attributes:
        assert attributes["q"].shape == (NUM_SAMPLES, 14) and attributes["q"].dtype == np.float32
        np.testing.assert_array_equal(attributes["seeds"], np.arange(100, 100 + NUM_SAMPLES))
        np.testing.assert_array_equal(attributes["found"], found)
        assert np.isnan(attributes["q"][~found]).all() and np.isfinite(attributes["q"][found]).all()
        assert json.loads(str(attributes["metadata"]))["dataset_checksum"] == model.metadata["dataset_checksum"]
        with h5py.File(data_path, "r") as f:
            rendered = model(torch.from_numpy(attributes["q"][found]).double()).numpy()
            weights = (model.landmark_weights / model.landmark_weights.mean()).numpy()[:, None]  # the fit's weights
            rmse = np.sqrt(np.mean(weights * (rendered - f["landmarks"][()][found]) ** 2))
        assert rmse == pytest.approx(result["rmse"], rel=1e-3)

    png = (tmp_path / "model.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    assert not list(tmp_path.glob(".*.tmp"))


def test_out_dir_and_float32(tmp_path):
    data_path = tmp_path / "samples.h5"
    write_dataset(data_path)
    result = run(fit_config(data_path, f"out_dir={tmp_path / 'fit'}", "dtype=float32", "plot=false"))
    assert (tmp_path / "fit" / "model.npz").is_file() and result["plot_path"] is None
    assert NRSfMModel.load(tmp_path / "fit" / "model.npz").mean_shape.dtype == torch.float32


def test_missing_dataset_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        run(fit_config(tmp_path / "missing.h5"))


def test_bad_dtype_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="dtype"):
        run(fit_config(tmp_path / "missing.h5", "dtype=float16"))


def test_command_line_prints_one_error_line(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "nrsfm.fit", f"samples={tmp_path / 'missing.h5'}", f"paths.work_dir={tmp_path}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 2
    assert completed.stderr.strip().startswith("error: dataset") and "Traceback" not in completed.stderr
