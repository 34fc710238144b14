"""`python -m sampling.sample` end to end with the synthetic generator, and its one-line errors."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from PIL import Image

from common.cli import build
from sampling.dataset import read_samples
from sampling.sample import default_dataset_path, run

REPOSITORY = Path(__file__).resolve().parents[2]


def sample_config(work_dir, *overrides):
    with initialize_config_module(config_module="conf", version_base="1.3"):
        return compose(
            config_name="sample",
            overrides=[
                "generator=synthetic",
                "++generator.img_resolution=128",
                "landmarks=dlib",
                f"paths.work_dir={work_dir}",
                "num_samples=6",
                "chunk_size=3",
                "batch_size=3",
                "num_workers=0",
                "progress=false",
                *overrides,
            ],
        )


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return build(sample_config(tmp_path_factory.mktemp("unused")).generator, "generator")


def test_synthetic_end_to_end_prints_detection_rate_and_error(tmp_path, capsys, synthetic):
    cfg = sample_config(tmp_path)
    summary = run(cfg)
    path = default_dataset_path(cfg, synthetic)
    assert summary["path"] == str(path) and path.is_file() and str(path).startswith(str(tmp_path))
    samples = read_samples(path)
    assert samples.seeds.tolist() == list(range(6))
    assert samples.metadata["generator"] == "synthetic" and samples.metadata["config"]["num_samples"] == 6
    assert set(samples.truth) >= {"rotation_deg", "expression", "identity", "landmarks"}
    assert summary["num_found"] >= 3  # the synthetic faces are mostly found by dlib
    assert summary["nme"] < 0.15
    printed = capsys.readouterr().out
    assert "detection rate:" in printed and "landmark error vs ground truth:" in printed
    assert Image.open(summary["preview"]).size == (4 * 128, 4 * 128)


def test_default_path_changes_with_every_data_setting(tmp_path, synthetic):
    base = default_dataset_path(sample_config(tmp_path), synthetic)
    assert base.name == "samples.h5" and "synthetic-" in str(base) and "/dlib/" in str(base)
    changed = [
        default_dataset_path(sample_config(tmp_path, override), synthetic)
        for override in (
            "seed=1",
            "num_samples=7",
            "truncation_psi=0.7",
            "landmarks.threshold=0.5",
            "save_ws=true",
            "shard=1",
            "num_shards=2",
            "chunk_size=4",
        )
    ]
    assert len({base, *changed}) == 1 + len(changed)
    for override in ("num_workers=2", "progress=true", "preview=false"):
        assert default_dataset_path(sample_config(tmp_path, override), synthetic) == base


def run_cli(*arguments, **environment):
    env = dict(os.environ, RANKONE_WORK_DIR=str(environment.pop("work_dir")), **environment)
    return subprocess.run(
        [sys.executable, "-m", "sampling.sample", *arguments],
        cwd=REPOSITORY,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_unknown_detector_is_one_line(tmp_path):
    result = run_cli("landmarks=nope", work_dir=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: unknown landmarks 'nope'; choose one of: dlib, fan, mediapipe"
    ]


def test_cli_missing_fan_weights_is_one_line(tmp_path):
    result = run_cli("landmarks=fan", "num_samples=2", work_dir=tmp_path, TORCH_HOME=str(tmp_path / "torch"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    if importlib.util.find_spec("face_alignment") is None:
        assert lines[0].startswith("error: landmarks=fan needs the face-alignment package") and ".[fan]" in lines[0]
    else:
        assert lines[0].startswith("error: FAN weights not found: put 2DFAN4-11f355bf06.pth.tar")
        assert f"{tmp_path}/torch/hub/checkpoints/" in lines[0]
    assert not list(tmp_path.rglob("*.h5"))
