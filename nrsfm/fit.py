"""`python -m nrsfm.fit samples=<samples.h5> num_basis=12`: fit the rank-one NRSfM model to a dataset.

The dataset key is `samples`, not `data` as docs/ARCHITECTURE.md writes: `conf/data/` is a config
group (the regressor's data module), so Hydra reads ``data=...`` as a group choice and refuses it.

Reads the sampling dataset (`sampling.dataset.read_samples`), factorizes the landmarks of the found
samples (`nrsfm.factorize.factorize`, options in `conf/nrsfm/`), and writes atomically into
`out_dir` (default: the dataset's folder), as docs/ARCHITECTURE.md ("NRSfM fit outputs") says:
- ``model.npz``: the NRSfMModel, metadata with landmarks (detector), num_landmarks, generator,
  generator_checksum, dataset_checksum, fit options, RMSE and package versions;
- ``attributes.npz``: seeds (N,), q (N, 8 + K) float32 with NaN rows where no face was found,
  found (N,), and the same metadata JSON string;
- ``model.png``: mean shape from three views and each basis shape's effect (`nrsfm.plot`).
"""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from common.cli import exit_on_user_error, launch
from common.errors import UserError
from common.io import save_npz_atomic
from nrsfm.model import FORMAT_VERSION
from nrsfm.plot import plot_model
from sampling.dataset import dataset_checksum, read_samples

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def run(cfg: DictConfig) -> dict[str, Any]:
    """Fit and write the outputs; return rmse, rmse_two_step, num_found, num_samples and the paths."""
    if cfg.dtype not in DTYPES:
        raise UserError(f"dtype={cfg.dtype} is not supported; use float32 or float64")
    data_path = Path(cfg.samples)
    samples = read_samples(data_path)
    out_dir = Path(cfg.out_dir) if cfg.out_dir is not None else data_path.parent
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device={cfg.device} but no CUDA device is available; use device=cpu")
    landmarks = torch.from_numpy(samples.landmarks).to(device=device, dtype=DTYPES[cfg.dtype])
    found = torch.from_numpy(samples.found).to(device)
    factorize = hydra.utils.instantiate(cfg.nrsfm)
    model, q = factorize(landmarks, found, num_basis=int(cfg.num_basis))

    options = OmegaConf.to_container(cfg.nrsfm, resolve=True)
    options.pop("_target_", None)
    options.pop("_partial_", None)
    model.metadata.update(
        landmarks=samples.metadata.get("detector", "unknown"),
        generator=samples.metadata.get("generator", "unknown"),
        generator_checksum=samples.metadata.get("generator_checksum", "unknown"),
        dataset_checksum=dataset_checksum(samples.seeds, samples.landmarks, samples.found),
        dataset=str(data_path),
        fit_options=dict(options, num_basis=int(cfg.num_basis), dtype=cfg.dtype),
        versions={name: importlib.metadata.version(name) for name in ("torch", "numpy")},
    )
    model_path, attributes_path, plot_path = out_dir / "model.npz", out_dir / "attributes.npz", out_dir / "model.png"
    model.save(model_path)
    metadata_json = json.dumps(dict(model.metadata, format_version=FORMAT_VERSION))
    save_npz_atomic(
        attributes_path,
        seeds=samples.seeds.astype(np.int64),
        q=q.detach().cpu().numpy().astype(np.float32),
        found=samples.found.astype(bool),
        metadata=np.array(metadata_json),
    )
    written = [model_path, attributes_path]
    if cfg.plot:
        plot_model(model, plot_path)
        written.append(plot_path)
    num_found = int(samples.found.sum())
    print(
        f"fitted K={model.num_basis} to {num_found}/{len(samples)} found samples (L={model.num_landmarks}): "
        f"RMSE {model.metadata['rmse']:.6f} (two-step {model.metadata['rmse_two_step']:.6f}) normalised image units"
    )
    print("wrote " + ", ".join(str(path) for path in written))
    return {
        "rmse": model.metadata["rmse"],
        "rmse_two_step": model.metadata["rmse_two_step"],
        "num_found": num_found,
        "num_samples": len(samples),
        "model_path": model_path,
        "attributes_path": attributes_path,
        "plot_path": plot_path if cfg.plot else None,
    }


@hydra.main(version_base="1.3", config_path="../conf", config_name="fit")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error():
        run(cfg)


if __name__ == "__main__":
    launch("nrsfm.fit", "fit")
