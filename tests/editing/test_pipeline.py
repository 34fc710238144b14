"""editing.pipeline on the regressor stage's stand-in dataset: trains once, then reuses the cache."""

import shutil
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from omegaconf import open_dict

from editing.pipeline import ensure_regressor, fit_config, sample_config
from regressor import train
from regressor.export import load_attribute_regressor
from regressor.standin import write_standin


@pytest.fixture
def pipeline_config(tmp_path):
    standin = write_standin(tmp_path / "standin", num_samples=200, z_dim=16, num_ws=4)
    with initialize_config_module(config_module="conf", version_base="1.3"):
        cfg = compose(
            config_name="edit",
            overrides=["generator=stylegan2", f"paths.work_dir={tmp_path / 'work'}", "pipeline.num_basis=4"],
        )
    with open_dict(cfg):
        cfg.pipeline.sample = [f"out={standin.samples}"]
        cfg.pipeline.train = [
            "regressor.width=32",
            "regressor.depth=2",
            "data.batch_size=64",
            "trainer.fast_dev_run=true",
            "trainer.enable_progress_bar=false",
        ]
    fit_dir = Path(fit_config(cfg, standin.samples).out_dir)
    fit_dir.mkdir(parents=True)
    for name in ("model.npz", "attributes.npz"):
        shutil.copy(standin.nrsfm_dir / name, fit_dir / name)
    return cfg


def test_builds_the_regressor_once_then_reuses_it(pipeline_config, monkeypatch):
    path = ensure_regressor(pipeline_config)
    regressor = load_attribute_regressor(path)
    assert regressor.latent_space == "w" and regressor.nrsfm.num_basis == 4
    assert path.is_relative_to(pipeline_config.paths.work_dir)
    stamp = path.stat().st_mtime_ns

    def refuse(cfg):
        raise AssertionError("the cached regressor should have been reused")

    monkeypatch.setattr(train, "run", refuse)
    assert ensure_regressor(pipeline_config) == path and path.stat().st_mtime_ns == stamp
    with open_dict(pipeline_config):
        pipeline_config.latent_space = "w+"
    with pytest.raises(AssertionError, match="should have been reused"):
        ensure_regressor(pipeline_config)


def test_explicit_regressor_path_skips_the_stages(pipeline_config, tmp_path):
    with open_dict(pipeline_config):
        pipeline_config.regressor_path = str(tmp_path / "given.pt")
    assert ensure_regressor(pipeline_config) == tmp_path / "given.pt"


def test_w_plus_datasets_store_ws_and_mix_styles(pipeline_config):
    with open_dict(pipeline_config):
        pipeline_config.pipeline.sample = []
    plain = sample_config(pipeline_config)
    assert not plain.save_ws and plain.style_mixing == 0
    with open_dict(pipeline_config):
        pipeline_config.latent_space = "w+"
        pipeline_config.pipeline.style_mixing = 0.3
    mixed = sample_config(pipeline_config)
    assert mixed.save_ws and mixed.style_mixing == 0.3
