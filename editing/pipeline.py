"""Make sure the dataset, the NRSfM model and the regressor an edit needs exist, building what is missing.

`ensure_regressor(cfg)` returns the path of ``regressor.pt``: `cfg.regressor_path` when it is set, else
the cached result of sample -> fit -> train for the edit's generator. Each stage runs through its
own ``run(cfg)`` with its own config (conf/sample.yaml, conf/fit.yaml, conf/train.yaml) composed
with the overrides in `cfg.pipeline`, and each artifact sits under a path derived from every
parameter, so a second call (or a call after a crash; the stages resume) rebuilds nothing:
- dataset: `sampling.sample.default_dataset_path` (generator name and checksum, detector, N, seed, ...);
- NRSfM model: ``<dataset folder>/fit-K<K>-<hash of the resolved fit options>/model.npz``;
- regressor: `regressor.train.default_regressor_path` (inputs, latent space, hyper-parameters).

`cfg.pipeline` holds ``landmarks`` (detector config name), ``num_samples``, ``seed``,
``num_basis``, ``style_mixing`` (W+ datasets only) and lists of extra overrides ``sample``, ``fit``, ``train`` for the three stages.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf, open_dict

from common.hashing import config_digest
from nrsfm import fit
from regressor import train
from sampling import sample

logger = logging.getLogger(__name__)


def compose_stage(config_name: str, overrides: Sequence[str]) -> DictConfig:
    """conf/<config_name>.yaml composed with `overrides`, inside a Hydra app or outside one."""
    if GlobalHydra.instance().is_initialized():
        return compose(config_name=config_name, overrides=list(overrides))
    with initialize_config_module(config_module="conf", version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides))


def sample_config(cfg: DictConfig) -> DictConfig:
    """The sampling stage's config for the edit's generator (`cfg.generator`) and `cfg.pipeline`; for
    ``latent_space=w+`` it stores ws and mixes styles (``pipeline.style_mixing``), so that the W+
    regressor sees rows that differ."""
    pipeline = cfg.pipeline
    overrides = [
        "~generator",
        f"paths.work_dir={cfg.paths.work_dir}",
        f"landmarks={pipeline.landmarks}",
        f"num_samples={pipeline.num_samples}",
        f"seed={pipeline.seed}",
    ]
    if cfg.latent_space == "w+":
        overrides += ["save_ws=true", f"style_mixing={float(pipeline.style_mixing)}"]
    overrides += list(pipeline.sample)
    sample_cfg = compose_stage("sample", overrides)
    with open_dict(sample_cfg):
        sample_cfg.generator = OmegaConf.to_container(cfg.generator, resolve=True)
    return sample_cfg


def fit_dir_for(samples: Path, fit_cfg: DictConfig) -> Path:
    """``<dataset folder>/fit-K<K>-<hash>``: one folder per fit configuration of a dataset, hashed
    over every option that changes the fit (so a changed default never reuses an old model)."""
    resolved = OmegaConf.to_container(fit_cfg, resolve=True)
    options = {key: resolved[key] for key in ("nrsfm", "num_basis", "dtype")}
    digest = config_digest(options, 8)
    return samples.parent / f"fit-K{fit_cfg.num_basis}-{digest}"


def fit_config(cfg: DictConfig, samples: Path) -> DictConfig:
    """The fit stage's config for the dataset `samples` and `cfg.pipeline`, with its cached `out_dir`."""
    fit_cfg = compose_stage(
        "fit",
        [
            f"paths.work_dir={cfg.paths.work_dir}",
            f"samples={samples}",
            f"num_basis={cfg.pipeline.num_basis}",
            *cfg.pipeline.fit,
        ],
    )
    with open_dict(fit_cfg):
        fit_cfg.out_dir = str(fit_dir_for(samples, fit_cfg))
    return fit_cfg


def ensure_regressor(cfg: DictConfig) -> Path:
    """Path of the regressor for `cfg` (see the module docstring), running missing stages first."""
    if cfg.regressor_path is not None:
        return Path(cfg.regressor_path)
    pipeline = cfg.pipeline
    sample_cfg = sample_config(cfg)
    samples = Path(sample_cfg.out) if sample_cfg.out is not None else sample.default_dataset_path(sample_cfg)
    if not samples.is_file():
        logger.info(f"building the sampling dataset {samples} (python -m sampling.sample)")
        sample.run(sample_cfg)
    fit_cfg = fit_config(cfg, samples)
    fit_dir = Path(fit_cfg.out_dir)
    if not ((fit_dir / "model.npz").is_file() and (fit_dir / "attributes.npz").is_file()):
        logger.info(f"fitting the NRSfM model into {fit_dir} (python -m nrsfm.fit)")
        fit.run(fit_cfg)
    train_cfg = compose_stage(
        "train",
        [
            f"paths.work_dir={cfg.paths.work_dir}",
            f"data.samples={samples}",
            f"data.nrsfm_dir={fit_dir}",
            f"latent_space={cfg.latent_space}",
            *pipeline.train,
        ],
    )
    path = train.default_regressor_path(train_cfg)
    if not path.is_file():
        logger.info(f"training the regressor into {path.parent} (python -m regressor.train)")
        train.run(train_cfg)
    return path
