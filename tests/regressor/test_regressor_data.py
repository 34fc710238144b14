import json
import shutil

import h5py
import numpy as np
import pytest

from common.errors import UserError
from nrsfm.model import NRSfMModel
from regressor.data import load_regression_data, split_of_seeds
from regressor.standin import write_standin


def test_split_depends_only_on_seed():
    seeds = np.arange(20000, dtype=np.int64)
    split = split_of_seeds(seeds, (0.8, 0.1, 0.1), split_seed=0)
    fractions = np.bincount(split, minlength=3) / len(seeds)
    np.testing.assert_allclose(fractions, [0.8, 0.1, 0.1], atol=0.01)
    order = np.random.default_rng(0).permutation(len(seeds))[:5000]
    np.testing.assert_array_equal(split_of_seeds(seeds[order]), split[order])
    assert (split_of_seeds(seeds, split_seed=1) != split).mean() > 0.1


def test_bad_split_fractions():
    with pytest.raises(ValueError, match="split_fractions must be"):
        split_of_seeds(np.arange(5), (0.5, 0.6, 0.1))


def test_load_keeps_found_rows_and_latent_spaces(standin):
    data = load_regression_data(standin.samples, standin.nrsfm_dir, "w")
    with h5py.File(standin.samples) as f:
        found = f["found"][()]
        w = f["w"][()]
        ws = f["ws"][()]
    assert len(data.seeds) == found.sum() < len(found)
    np.testing.assert_array_equal(data.latents.numpy(), w[found])
    assert data.landmarks.shape == (found.sum(), 68, 2) and data.q_fit.shape == (found.sum(), 12)
    assert data.image_size == (256, 256) and data.rotation_truth_deg.shape == (found.sum(), 3)
    plus = load_regression_data(standin.samples, standin.nrsfm_dir, "w+")
    assert plus.latent_shape == (4, 16)
    np.testing.assert_array_equal(plus.latents.numpy(), ws[found].reshape(-1, 64))
    with pytest.raises(UserError, match="unknown latent_space"):
        load_regression_data(standin.samples, standin.nrsfm_dir, "s")


def _copy(standin, tmp_path):
    shutil.copytree(standin.nrsfm_dir, tmp_path / "nrsfm")
    return tmp_path / "nrsfm"


def test_other_landmark_type_is_refused(standin, tmp_path):
    nrsfm_dir = _copy(standin, tmp_path)
    model = NRSfMModel.load(nrsfm_dir / "model.npz")
    model.metadata["landmarks"] = "mediapipe"
    model.save(nrsfm_dir / "model.npz")
    with pytest.raises(UserError, match="landmark type mismatch: .* has standin68 landmarks but .* mediapipe"):
        load_regression_data(standin.samples, nrsfm_dir)


def test_other_landmark_count_is_refused(standin, tmp_path):
    other = write_standin(tmp_path / "other", num_samples=50, z_dim=16, num_landmarks=30, detector="standin68")
    with pytest.raises(UserError, match="landmark count mismatch"):
        load_regression_data(standin.samples, other.nrsfm_dir)


def test_other_sample_set_is_refused(standin, tmp_path):
    other = write_standin(tmp_path / "other", num_samples=400, z_dim=16, seed=3)
    with pytest.raises(UserError, match="sample set mismatch: .* was fitted to dataset"):
        load_regression_data(standin.samples, other.nrsfm_dir)
    nrsfm_dir = _copy(other, tmp_path)
    model = NRSfMModel.load(nrsfm_dir / "model.npz")
    del model.metadata["dataset_checksum"]
    model.save(nrsfm_dir / "model.npz")
    with pytest.raises(UserError, match="sample set mismatch: the seeds"):
        load_regression_data(standin.samples, nrsfm_dir)


def test_nan_q_for_a_found_face_and_missing_files(standin, tmp_path):
    nrsfm_dir = _copy(standin, tmp_path)
    with np.load(nrsfm_dir / "attributes.npz") as data:
        arrays = dict(data)
    first_found = int(np.flatnonzero(arrays["found"])[0])
    arrays["q"][first_found, 3] = np.nan
    np.savez(nrsfm_dir / "attributes.npz", **arrays)
    with pytest.raises(ValueError, match="q of found samples .* NaN"):
        load_regression_data(standin.samples, nrsfm_dir)
    (nrsfm_dir / "attributes.npz").unlink()
    with pytest.raises(UserError, match="attributes .* not found; create them with `python -m nrsfm.fit"):
        load_regression_data(standin.samples, nrsfm_dir)
    with pytest.raises(UserError, match="dataset .* not found"):
        load_regression_data(tmp_path / "nope.h5", standin.nrsfm_dir)


def test_w_plus_needs_ws(standin, tmp_path):
    samples = tmp_path / "samples.h5"
    shutil.copy(standin.samples, samples)
    with h5py.File(samples, "a") as f:
        del f["ws"]
        assert json.loads(f.attrs["metadata"])["detector"] == "standin68"
    with pytest.raises(UserError, match="has no `ws`"):
        load_regression_data(samples, standin.nrsfm_dir, "w+")


def test_style_mixed_samples_train_only_w_plus(standin, tmp_path):
    samples = tmp_path / "samples.h5"
    shutil.copy(standin.samples, samples)
    with h5py.File(samples, "a") as f:
        f.attrs["metadata"] = json.dumps({**json.loads(f.attrs["metadata"]), "style_mixing": 0.5})
    for space in ("z", "w"):
        with pytest.raises(UserError, match="sampled with style mixing.*latent_space=w\\+"):
            load_regression_data(samples, standin.nrsfm_dir, space)
