import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from regressor.export import load_attribute_regressor
from regressor.train import default_regressor_path, main, quiet_lightning, run

TINY = ["regressor.width=32", "regressor.depth=2", "data.batch_size=64"]


def test_fast_dev_run_trains_tests_exports_and_reports(compose_train):
    cfg = compose_train(*TINY, "trainer.fast_dev_run=true")
    metrics = run(cfg)
    assert metrics["test/landmark_loss"] > 0
    export = Path(metrics["export"])
    assert export == default_regressor_path(cfg)
    regressor = load_attribute_regressor(export)
    assert regressor.latent_space == "w" and regressor.metadata["landmarks"] == "standin68"
    assert regressor.metadata["generator"] == "standin" and regressor.metadata["generator_checksum"] == "standin-v1"
    report = json.loads((export.parent / "report.json").read_text())
    assert report["landmark_loss"] == pytest.approx(metrics["report"]["landmark_loss"])
    assert (export.parent / "report.png").stat().st_size > 10_000


def test_checkpoints_logs_and_resume(compose_train):
    metrics = run(compose_train(*TINY, "trainer.max_epochs=2", "latent_space=w+"))
    out = Path(metrics["export"]).parent
    assert (out / "checkpoints" / "last.ckpt").is_file() and Path(metrics["best_checkpoint"]).is_file()
    assert list((out / "logs" / "tensorboard").rglob("events.out.tfevents.*"))
    first_log = (out / "logs" / "csv" / "version_0" / "metrics.csv").read_text()
    assert "val/landmark_loss" in first_log and "lr-Adam" in first_log
    rows = [line.split(",") for line in first_log.splitlines()]
    column = rows[0].index("val/landmark_loss")
    val_losses = [float(row[column]) for row in rows[1:] if row[column]]
    assert len(val_losses) == 2 and metrics["val/landmark_loss"] == pytest.approx(min(val_losses))
    regressor = load_attribute_regressor(out / "regressor.pt")
    assert regressor.latent_shape == (4, 16) and regressor(torch.zeros(3, 4, 16)).shape == (3, 12)
    assert len(metrics["report"]["row_importance"]["yaw"]) == 4 and (out / "rows.png").is_file()

    run(compose_train(*TINY, "trainer.max_epochs=3", "latent_space=w+"))
    resumed_log = (out / "logs" / "csv" / "version_1" / "metrics.csv").read_text().splitlines()
    header = resumed_log[0].split(",")
    epochs = {row.split(",")[header.index("epoch")] for row in resumed_log[1:]}
    assert "2" in epochs and not {"0", "1"} & epochs, "the second run must continue at epoch 2, not start over"


def test_explicit_missing_checkpoint_and_mismatch_end_in_one_error_line(
    compose_train, standin, tmp_path, monkeypatch, capsys
):
    from regressor.standin import write_standin

    other = write_standin(tmp_path / "other", num_samples=60, z_dim=16, detector="mediapipe468")
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "regressor.train",
            f"data.samples={standin.samples}",
            f"data.nrsfm_dir={other.nrsfm_dir}",
            f"paths.work_dir={tmp_path / 'work'}",
            f"hydra.run.dir={tmp_path / 'hydra'}",
        ],
    )
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: landmark type mismatch") and "standin68" in err[0]

    from common.errors import UserError
    from regressor.train import run as run_training

    with pytest.raises(UserError, match="checkpoint .* not found"):
        run_training(compose_train(*TINY, f"ckpt_path={tmp_path / 'missing.ckpt'}"))
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        run_training(compose_train("data.batch_size=0"))
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        run_training(compose_train("regressor.activation=swish"))


@pytest.mark.slow
def test_ddp_on_two_cpu_processes(standin, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "regressor.train",
            f"data.samples={standin.samples}",
            f"data.nrsfm_dir={standin.nrsfm_dir}",
            f"paths.work_dir={tmp_path}",
            "trainer=ddp",
            "trainer.max_epochs=2",
            "trainer.enable_progress_bar=false",
            *TINY,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 0, result.stderr[-3000:]
    exports = list(tmp_path.rglob("regressor.pt"))
    assert len(exports) == 1 and load_attribute_regressor(exports[0]).latent_space == "w"


@pytest.mark.slow
def test_grid_and_optuna_sweeps(standin, tmp_path):
    common = [
        sys.executable,
        "-m",
        "regressor.train",
        f"data.samples={standin.samples}",
        f"data.nrsfm_dir={standin.nrsfm_dir}",
        f"paths.work_dir={tmp_path}",
        "trainer.max_epochs=2",
        "trainer.enable_progress_bar=false",
        *TINY,
    ]
    repo = Path(__file__).resolve().parents[2]
    grid = subprocess.run(
        [*common[:3], "-m", *common[3:], "regressor.optimizer.lr=0.001,0.003", "regressor.width=16,32"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=repo,
    )
    assert grid.returncode == 0, grid.stderr[-3000:]
    assert len(list((tmp_path / "regressor").rglob("regressor.pt"))) == 4
    optuna = subprocess.run(
        [*common, "hparams_search=optuna", "hydra.sweeper.n_trials=2", "hydra.sweeper.sampler.n_startup_trials=2"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=repo,
    )
    assert optuna.returncode == 0, optuna.stderr[-3000:]
    best = list((tmp_path / "multirun").rglob("optimization_results.yaml"))
    assert len(best) == 1 and "best_value" in best[0].read_text()


def test_quiet_lightning_drops_only_the_litlogger_tip(caplog):
    quiet_lightning()
    quiet_lightning()
    log = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    assert len(log.filters) == len(set(log.filters))
    with caplog.at_level(logging.INFO, logger="pytorch_lightning.utilities.rank_zero"):
        log.info("Tip: try installing [litlogger](https://pypi.org/project/litlogger/)")
        log.info("GPU available: False")
    assert [record.getMessage() for record in caplog.records] == ["GPU available: False"]
