"""Train phi: `python -m regressor.train data.samples=<samples.h5> data.nrsfm_dir=<fit dir> latent_space=w`.

Outputs go to `output_dir` (default `default_regressor_path(cfg).parent`, a folder under
`${paths.work_dir}/regressor/` named from the inputs and hyper-parameters): `checkpoints/`
(best + last), `logs/` (CSV and TensorBoard), and after training `regressor.pt` (the export),
`report.json` and `report.png` (test-split metrics, see `regressor.report`; W+ regressors also get
`rows.png`, which rows of ws phi reads each attribute from). A run that finds
`checkpoints/last.ckpt` in its output folder resumes from it (`resume=false` to start over);
`ckpt_path=<file>` resumes from any checkpoint. `run(cfg)` returns the metrics; `main` returns
`cfg.optimized_metric` (validation landmark loss) for the Optuna sweeper.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf, open_dict

from common.cli import exit_on_user_error, launch
from common.errors import UserError
from common.hashing import config_digest
from regressor.data import detector_name
from regressor.export import save_attribute_regressor
from regressor.report import evaluate_regressor, format_report, plot_report, plot_row_importance, write_report

EXPORT_NAME = "regressor.pt"


def quiet_lightning() -> None:
    """Drop two messages Lightning prints on every run that no user of ours can act on: an advert for
    its cloud logger and a deprecation warning raised inside Lightning itself (torch's tree specs).
    Calling it again adds nothing."""
    logger = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    if _without_litlogger_tip not in logger.filters:
        logger.addFilter(_without_litlogger_tip)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")


def _without_litlogger_tip(record: logging.LogRecord) -> bool:
    return "litlogger" not in record.getMessage()


def default_regressor_path(cfg: DictConfig) -> Path:
    """`${paths.work_dir}/regressor/<samples stem>-<latent space>-<width>x<depth>-<hash>/regressor.pt`.

    The hash covers the absolute input paths, the latent space, the `regressor` and split
    settings, the batch size and the seed, so different trainings never share a folder.
    Reads cfg.paths.work_dir, cfg.data.{samples, nrsfm_dir, batch_size, split_fractions, split_seed},
    cfg.latent_space, cfg.regressor and cfg.seed.
    """
    samples = Path(cfg.data.samples).resolve()
    regressor = OmegaConf.to_container(cfg.regressor, resolve=True)
    key = {
        "samples": str(samples),
        "nrsfm_dir": str(Path(cfg.data.nrsfm_dir).resolve()),
        "latent_space": cfg.latent_space,
        "regressor": regressor,
        "batch_size": cfg.data.batch_size,
        "split": [list(cfg.data.split_fractions), cfg.data.split_seed],
        "seed": cfg.seed,
    }
    digest = config_digest(key, 10)
    name = f"{samples.stem}-{cfg.latent_space.replace('+', 'plus')}-{regressor['width']}x{regressor['depth']}-{digest}"
    return Path(cfg.paths.work_dir) / "regressor" / name / EXPORT_NAME


def run(cfg: DictConfig) -> dict[str, Any]:
    """Train, test, export and report; returns {"val/landmark_loss" (of the best checkpoint), "test/landmark_loss", ..., "export"}."""
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.output_dir = str(Path(cfg.output_dir) if cfg.get("output_dir") else default_regressor_path(cfg).parent)
    output_dir = Path(cfg.output_dir)
    if cfg.seed is not None:
        pl.seed_everything(cfg.seed, workers=True)

    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    data = datamodule.loaded
    module = instantiate(cfg.regressor, nrsfm=data.nrsfm, latent_dim=data.latents.shape[1])
    module.net.set_input_statistics(data.latents[data.indices("train")])

    quiet_lightning()
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    trainer: pl.Trainer = instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False, default_root_dir=str(output_dir)
    )
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume_checkpoint(cfg, output_dir))
    metrics = {key: float(value) for key, value in trainer.callback_metrics.items()}

    checkpoint = trainer.checkpoint_callback
    best = checkpoint.best_model_path if checkpoint is not None else ""
    if best and not trainer.fast_dev_run:
        module.load_state_dict(torch.load(best, map_location="cpu", weights_only=True)["state_dict"])
        metrics.update(best_checkpoint=best, **{checkpoint.monitor: float(checkpoint.best_model_score)})
    metrics.update(
        {
            key: float(value)
            for results in trainer.test(module, datamodule=datamodule, verbose=False)
            for key, value in results.items()
        }
    )
    if cfg.export and trainer.is_global_zero:
        regressor = module.to_attribute_regressor(data.latent_space, data.latent_shape, export_metadata(cfg, data))
        export_path = save_attribute_regressor(output_dir / EXPORT_NAME, regressor)
        report = evaluate_regressor(regressor, data, "test")
        write_report(report, output_dir / "report.json")
        plot_report(regressor, data, report, output_dir / "report.png")
        if "row_importance" in report:
            plot_row_importance(report, output_dir / "rows.png")
        print(format_report(report))
        print(f"exported {export_path}")
        metrics.update(export=str(export_path), report=report)
    return metrics


def instantiate(node: DictConfig, **kwargs: Any) -> Any:
    """`hydra.utils.instantiate`, re-raising a constructor's ValueError or UserError unwrapped (one-line errors)."""
    try:
        return hydra.utils.instantiate(node, **kwargs)
    except InstantiationException as error:
        if isinstance(error.__cause__, (ValueError, UserError)):
            raise error.__cause__ from None
        raise


def resume_checkpoint(cfg: DictConfig, output_dir: Path) -> str | None:
    """cfg.ckpt_path if given (must exist), else output_dir/checkpoints/last.ckpt when cfg.resume and it exists."""
    if cfg.get("ckpt_path"):
        path = Path(cfg.ckpt_path)
        if not path.is_file():
            raise UserError(f"checkpoint {path} not found; pass an existing ckpt_path= or leave it out")
        return str(path)
    last = output_dir / "checkpoints" / "last.ckpt"
    return str(last) if cfg.get("resume") and last.is_file() else None


def export_metadata(cfg: DictConfig, data) -> dict[str, Any]:
    """What the editing stage needs to know about this regressor."""
    meta = data.samples_metadata
    return {
        "latent_space": data.latent_space,
        "generator": meta.get("generator", data.nrsfm.metadata.get("generator")),
        "generator_checksum": meta.get("generator_checksum", data.nrsfm.metadata.get("generator_checksum")),
        "landmarks": detector_name(meta) or data.nrsfm.metadata.get("landmarks"),
        "num_landmarks": data.nrsfm.num_landmarks,
        "truncation_psi": meta.get("truncation_psi"),
        "dataset_checksum": data.dataset_checksum,
        "nrsfm_dataset_checksum": data.nrsfm.metadata.get("dataset_checksum"),
        "samples": str(Path(cfg.data.samples).resolve()),
        "nrsfm_dir": str(Path(cfg.data.nrsfm_dir).resolve()),
        "config": OmegaConf.to_container(cfg, resolve=True),
        "versions": {"torch": torch.__version__, "pytorch_lightning": pl.__version__},
    }


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    with exit_on_user_error():
        metrics = run(cfg)
        return metrics.get(cfg.get("optimized_metric"))


if __name__ == "__main__":
    launch("regressor.train", "train")
