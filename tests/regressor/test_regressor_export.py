import argparse

import pytest
import torch

from common.errors import UserError
from regressor.data import load_regression_data
from regressor.export import AttributeRegressor, load_attribute_regressor, save_attribute_regressor
from regressor.mlp import AttributeMLP


def _regressor(standin, latent_space, num_members=1):
    data = load_regression_data(standin.samples, standin.nrsfm_dir, latent_space)
    mlp = AttributeMLP(data.latents.shape[1], data.nrsfm.layout.dim, [32, 32], num_members=num_members)
    mlp.set_input_statistics(data.latents)
    meta = {"latent_space": latent_space, "generator": "standin", "generator_checksum": "x", "landmarks": "standin68"}
    return AttributeRegressor(mlp, data.nrsfm, latent_space, data.latent_shape, meta), data


@pytest.mark.parametrize("latent_space, num_members", [("w", 1), ("w+", 1), ("w", 3)])
def test_round_trip_without_lightning(standin, tmp_path, latent_space, num_members):
    regressor, data = _regressor(standin, latent_space, num_members)
    path = save_attribute_regressor(tmp_path / "regressor.pt", regressor)
    assert not list(tmp_path.glob(".*.tmp"))
    payload = torch.load(path, weights_only=True)
    assert payload["latent_space"] == latent_space
    loaded = load_attribute_regressor(path)
    latents = data.latents[:7].reshape(7, *data.latent_shape)
    q = loaded(latents)
    assert q.shape == (7, 12)
    torch.testing.assert_close(q, regressor(latents))
    torch.testing.assert_close(q, data.nrsfm.q_mean + data.nrsfm.q_std * loaded.mlp(data.latents[:7]))
    assert loaded.landmarks(latents).shape == (7, 68, 2)
    assert loaded.latent_space == latent_space and loaded.metadata["landmarks"] == "standin68"
    assert loaded.nrsfm.metadata == data.nrsfm.metadata
    assert not loaded.training and len(loaded.mlp.members) == num_members


def test_latent_of_wrong_shape_is_refused(standin):
    regressor, _ = _regressor(standin, "w+")
    with pytest.raises(ValueError, match="w\\+ latent must have shape"):
        regressor(torch.zeros(2, 64))


def test_missing_and_unsafe_files_are_refused(tmp_path):
    with pytest.raises(UserError, match="regressor file .* not found; train one with `python -m regressor.train"):
        load_attribute_regressor(tmp_path / "regressor.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="is not a readable regressor file"):
        load_attribute_regressor(tmp_path / "garbage.pt")
    torch.save(
        {"format_version": 1, "object": argparse.Namespace(code="would run on a plain pickle.load")},
        tmp_path / "pickled.pt",
    )
    with pytest.raises(UserError, match="is not a readable regressor file"):
        load_attribute_regressor(tmp_path / "pickled.pt")
    torch.save({"format_version": 99}, tmp_path / "future.pt")
    with pytest.raises(UserError, match="format version 99"):
        load_attribute_regressor(tmp_path / "future.pt")
