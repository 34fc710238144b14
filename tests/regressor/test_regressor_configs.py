"""Compose every option of every config group `train` uses, and instantiate what has a `_target_`."""

from pathlib import Path

import hydra
import pytest
import pytorch_lightning as pl
from omegaconf import open_dict

from regressor.data import load_regression_data
from regressor.datamodule import LatentLandmarkDataModule
from regressor.module import AttributeRegressorModule

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
GROUPS = ("data", "regressor", "trainer", "callbacks", "logger", "experiment", "hparams_search")


def options(group):
    return sorted(path.stem for path in (CONF_DIR / group).glob("*.yaml"))


def test_every_group_has_options():
    for group in GROUPS:
        assert options(group), group


def _instantiate_all(cfg, standin, tmp_path):
    with open_dict(cfg):
        cfg.output_dir = str(tmp_path / "out")
    datamodule = hydra.utils.instantiate(cfg.data)
    assert isinstance(datamodule, LatentLandmarkDataModule) and datamodule.latent_space == cfg.latent_space
    data = load_regression_data(standin.samples, standin.nrsfm_dir, cfg.latent_space)
    module = hydra.utils.instantiate(cfg.regressor, nrsfm=data.nrsfm, latent_dim=data.latents.shape[1])
    assert isinstance(module, AttributeRegressorModule) and len(module.net.hidden_dims) == cfg.regressor.depth
    optimizer = module.configure_optimizers()
    assert optimizer is not None
    callbacks = [hydra.utils.instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    loggers = [hydra.utils.instantiate(c) for c in (cfg.get("logger") or {}).values()]
    assert all(isinstance(c, pl.Callback) for c in callbacks)
    if cfg.trainer.accelerator == "gpu":
        assert cfg.trainer.devices >= 1
        return
    trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    assert isinstance(trainer, pl.Trainer)


@pytest.mark.parametrize("group", [g for g in GROUPS if g != "hparams_search"])
def test_compose_and_instantiate_each_option(group, compose_train, standin, tmp_path):
    for option in options(group):
        cfg = compose_train(f"{group}={option}")
        _instantiate_all(cfg, standin, tmp_path)


def test_experiments_change_what_they_say(compose_train):
    assert compose_train("experiment=paper_wplus").latent_space == "w+"
    paper = compose_train("experiment=paper_w")
    assert (paper.regressor.width, paper.regressor.depth, paper.regressor.activation) == (512, 3, "relu")
    assert compose_train("experiment=smoke").trainer.max_epochs == 3


def test_callbacks_and_loggers_defaults(compose_train):
    cfg = compose_train()
    assert set(cfg.callbacks) == {"model_checkpoint", "early_stopping", "lr_monitor"}
    assert cfg.callbacks.model_checkpoint.save_last and cfg.callbacks.model_checkpoint.monitor == "val/landmark_loss"
    assert set(cfg.logger) == {"csv", "tensorboard"}
    assert not compose_train("callbacks=none").get("callbacks")


def test_optuna_search_composes_and_its_sampler_instantiates(compose_train):
    pytest.importorskip(
        "hydra_plugins.hydra_optuna_sweeper", reason='the optuna extra is not installed: pip install -e ".[optuna]"'
    )
    cfg = compose_train("hparams_search=optuna", return_hydra_config=True)
    assert cfg.optimized_metric == "val/landmark_loss"
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "minimize"
    assert "regressor.optimizer.lr" in sweeper.params
    sampler = hydra.utils.instantiate(sweeper.sampler)
    assert type(sampler).__name__ == "TPESampler"
