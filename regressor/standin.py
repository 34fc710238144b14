"""A stand-in for the sampling and fitting stages, with known ground truth, for tests and benchmarks.

It writes the three files the regressor reads, in the layouts of docs/ARCHITECTURE.md:
`samples.h5` (latents, landmarks, found, truth/rotation_deg), `model.npz` (an `NRSfMModel`) and
`attributes.npz` (the "factorizer's" q). Nothing here renders images or detects landmarks:
latents map to q through a fixed random smooth map, and landmarks are R(q) plus Gaussian noise.

The NRSfM model is stored in a frame rotated by a fixed random rotation H against the ground truth
(as a real factorizer's frame is defined only up to a global rotation): the stored shape is
p' = H p, the stored rotations R' = R_true H^T, so R' p' = R_true p and R_true = R' H.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from common.io import save_npz_atomic
from nrsfm.geometry import euler_angles_to_matrix, matrix_to_euler_angles
from nrsfm.model import AttributeLayout, NRSfMModel
from sampling.dataset import dataset_checksum


@dataclass(frozen=True)
class StandinPaths:
    samples: Path
    nrsfm_dir: Path


def write_standin(
    out_dir: str | Path,
    num_samples: int = 512,
    z_dim: int = 32,
    num_ws: int = 4,
    num_landmarks: int = 68,
    num_basis: int = 4,
    noise: float = 1e-3,
    miss_fraction: float = 0.05,
    image_size: tuple[int, int] = (256, 256),
    detector: str = "standin68",
    store_ws: bool = True,
    seed: int = 0,
) -> StandinPaths:
    """Write `samples.h5`, `model.npz` and `attributes.npz` under `out_dir`.

    Latents: z (N, z_dim) standard normal; w = 2 tanh(z A) + c (N, z_dim); ws (N, num_ws, z_dim) = w
    plus a small per-layer offset. Attributes q (N, 8 + K) = mu + sigma * tanh(w B) (plus a quadratic
    term), landmarks (N, L, 2) = R(q) + noise, with `miss_fraction` of rows marked not found.
    `store_ws=False` leaves out `ws` (as the sampler does unless asked).
    """
    rng = np.random.default_rng(seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    layout = AttributeLayout(num_basis)

    z = rng.standard_normal((num_samples, z_dim))
    w = 2.0 * np.tanh(z @ rng.standard_normal((z_dim, z_dim)) / np.sqrt(z_dim)) + rng.standard_normal(z_dim)
    ws = w[:, None, :] + 0.05 * rng.standard_normal((1, num_ws, z_dim))
    features = np.tanh(w @ rng.standard_normal((z_dim, layout.dim)) / np.sqrt(z_dim))
    features = features + 0.3 * features**2
    q_center = np.zeros(layout.dim)
    q_center[[0, 2]] = 1.0
    q_center[layout.translation] = 0.5
    q_scale = np.full(layout.dim, 0.02)
    q_scale[layout.camera] = [0.05, 0.01, 0.05]
    q_scale[layout.rotation] = np.radians([10.0, 25.0, 8.0])
    q_scale[layout.alpha] = 0.03
    q_true = torch.from_numpy(q_center + q_scale * features)

    mean_shape = rng.standard_normal((num_landmarks, 3)) * np.array([0.15, 0.18, 0.08])
    basis = np.linalg.qr(rng.standard_normal((num_landmarks, num_basis)))[0].T
    directions = rng.standard_normal((num_basis, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    true_model = NRSfMModel(
        torch.from_numpy(mean_shape),
        torch.from_numpy(directions),
        torch.from_numpy(basis),
        torch.zeros(layout.dim, dtype=torch.float64),
        torch.ones(layout.dim, dtype=torch.float64),
    )
    landmarks = true_model(q_true).numpy() + noise * rng.standard_normal((num_samples, num_landmarks, 2))
    found = rng.random(num_samples) >= miss_fraction
    landmarks[~found] = 0.0

    frame = euler_angles_to_matrix(torch.from_numpy(rng.uniform(-0.4, 0.4, 3)))
    q_fit = q_true.clone()
    q_fit[:, layout.rotation] = matrix_to_euler_angles(euler_angles_to_matrix(q_true[:, layout.rotation]) @ frame.T)
    q_fit = q_fit.numpy()
    q_fit[~found] = np.nan

    seeds = np.arange(num_samples, dtype=np.int64) + 1000 * seed
    generator = {"generator": "standin", "generator_checksum": "standin-v1"}
    samples_meta = dict(
        generator, detector=detector, num_landmarks=num_landmarks, image_size=list(image_size), truncation_psi=1.0
    )
    samples_path = out_dir / "samples.h5"
    with h5py.File(samples_path, "w") as f:
        f["seeds"] = seeds
        f["z"] = z.astype(np.float32)
        f["w"] = w.astype(np.float32)
        if store_ws:
            f["ws"] = ws.astype(np.float32)
        f["landmarks"] = landmarks.astype(np.float32)
        f["found"] = found
        f["score"] = found.astype(np.float32)
        f["truth/rotation_deg"] = np.degrees(q_true[:, layout.rotation].numpy()).astype(np.float32)
        f.attrs["metadata"] = json.dumps(samples_meta)

    model_meta = dict(
        generator,
        landmarks=detector,
        num_landmarks=num_landmarks,
        dataset_checksum=dataset_checksum(seeds, landmarks, found),
    )
    valid = q_fit[found]
    fitted = NRSfMModel(
        torch.from_numpy(mean_shape) @ frame.T,
        torch.from_numpy(directions) @ frame.T,
        torch.from_numpy(basis),
        torch.from_numpy(valid.mean(0)),
        torch.from_numpy(valid.std(0)),
        model_meta,
    )
    nrsfm_dir = out_dir / "nrsfm"
    fitted.save(nrsfm_dir / "model.npz")
    save_npz_atomic(
        nrsfm_dir / "attributes.npz",
        seeds=seeds,
        q=q_fit.astype(np.float32),
        found=found,
        metadata=np.array(json.dumps(model_meta)),
    )
    return StandinPaths(samples=samples_path, nrsfm_dir=nrsfm_dir)
