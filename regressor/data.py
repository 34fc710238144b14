"""Everything the regressor trains on, read from the sampling dataset and the NRSfM fit, and checked.

Latent spaces (rows of the dataset, N samples):
- "z": `z` (N, z_dim); "w": `w` (N, w_dim);
- "w+": `ws` (N, num_ws, w_dim), flattened to (N, num_ws * w_dim) for the MLP (row-major, layer first);
  `latent_shape` keeps (num_ws, w_dim) so the exported regressor takes (B, num_ws, w_dim) latents.

Only samples with a detected face (`found`) are kept. The split (0 train, 1 val, 2 test) of a
sample depends only on its seed and `split_seed` (a 64-bit hash), never on N or the file order.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.errors import UserError
from common.shapes import check_finite
from nrsfm.model import NRSfMModel
from sampling.dataset import Samples, dataset_checksum, read_samples

LATENT_SPACES = ("z", "w", "w+")
SPLIT_NAMES = ("train", "val", "test")


@dataclass
class RegressionData:
    """The found samples of one dataset with their NRSfM fit; N rows, float32 tensors.

    seeds (N,) int64; latents (N, D); landmarks (N, L, 2) normalised; q_fit (N, 8 + K) the
    factorizer's q; split (N,) int64 in {0, 1, 2}; rotation_truth_deg (N, 3) (pitch, yaw, roll) or None.
    """

    seeds: torch.Tensor
    latents: torch.Tensor
    landmarks: torch.Tensor
    q_fit: torch.Tensor
    split: torch.Tensor
    rotation_truth_deg: torch.Tensor | None
    nrsfm: NRSfMModel
    latent_space: str
    latent_shape: tuple[int, ...]
    samples_metadata: dict[str, Any]
    dataset_checksum: str

    def indices(self, split: str) -> torch.Tensor:
        """(n,) row indices of split "train", "val" or "test"."""
        return torch.nonzero(self.split == SPLIT_NAMES.index(split)).squeeze(1)

    @property
    def image_size(self) -> tuple[int, int] | None:
        """(height, width) of the rendered images, from the dataset metadata, or None if it lacks them."""
        return image_size_of(self.samples_metadata)


def load_regression_data(
    samples_path: str | Path,
    nrsfm_dir: str | Path,
    latent_space: str = "w",
    split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
    split_seed: int = 0,
) -> RegressionData:
    """Read `samples_path` (samples.h5) and `nrsfm_dir`/{model,attributes}.npz; refuse mismatched pairs."""
    if latent_space not in LATENT_SPACES:
        raise UserError(f"unknown latent_space {latent_space!r}; use one of {', '.join(LATENT_SPACES)}")
    samples = read_samples(samples_path)
    nrsfm_dir = Path(nrsfm_dir)
    model = NRSfMModel.load(nrsfm_dir / "model.npz")
    attributes = read_attributes(nrsfm_dir / "attributes.npz", model.layout.dim)
    check_dataset_matches_fit(samples, model, attributes, samples_path, nrsfm_dir)

    latents, latent_shape = select_latents(samples, latent_space, samples_path)
    found = samples.found
    q_fit = attributes["q"][found]
    check_finite(q_fit, f"q of found samples in {nrsfm_dir / 'attributes.npz'}")
    check_finite(latents[found], f"{latent_space} latents of found samples in {samples_path}")
    check_finite(samples.landmarks[found], f"landmarks of found samples in {samples_path}")
    if found.sum() < 3:
        raise UserError(
            f"{samples_path} has {int(found.sum())} samples with a face; sample more with `python -m sampling.sample`"
        )
    truth = samples.truth.get("rotation_deg")
    return RegressionData(
        seeds=torch.from_numpy(samples.seeds[found].astype(np.int64)),
        latents=torch.from_numpy(latents[found].astype(np.float32)),
        landmarks=torch.from_numpy(samples.landmarks[found].astype(np.float32)),
        q_fit=torch.from_numpy(q_fit.astype(np.float32)),
        split=torch.from_numpy(split_of_seeds(samples.seeds[found], split_fractions, split_seed)),
        rotation_truth_deg=None if truth is None else torch.from_numpy(truth[found].astype(np.float32)),
        nrsfm=model.float(),
        latent_space=latent_space,
        latent_shape=latent_shape,
        samples_metadata=samples.metadata,
        dataset_checksum=samples_checksum(samples),
    )


def read_attributes(path: Path, q_dim: int) -> dict[str, np.ndarray]:
    """attributes.npz -> {"seeds" (N,), "q" (N, q_dim), "found" (N,), "metadata" dict}; UserError when unusable."""
    if not path.is_file():
        raise UserError(
            f"NRSfM attributes {path} not found; create them with `python -m nrsfm.fit samples=<samples.h5>`"
        )
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in ("seeds", "q", "found")}
            metadata = json.loads(str(data["metadata"])) if "metadata" in data else {}
    except (OSError, KeyError, ValueError) as error:
        raise UserError(
            f"{path} is not an NRSfM attributes file ({error}); re-create it with `python -m nrsfm.fit`"
        ) from error
    if arrays["q"].ndim != 2 or arrays["q"].shape[1] != q_dim:
        raise UserError(
            f"{path}: q has shape {arrays['q'].shape}, the model next to it needs (N, {q_dim}); re-run `python -m nrsfm.fit`"
        )
    return dict(arrays, found=arrays["found"].astype(bool), metadata=metadata)


def check_dataset_matches_fit(samples: Samples, model: NRSfMModel, attributes: dict, samples_path, nrsfm_dir) -> None:
    """Raise UserError when the NRSfM fit was made for another landmark type or another sample set."""
    fix = f"re-run `python -m nrsfm.fit samples={samples_path}` or point data.nrsfm_dir at the fit of this dataset"
    detector = detector_name(samples.metadata)
    model_detector = _name(model.metadata.get("landmarks"))
    if detector is not None and model_detector is not None and detector != model_detector:
        raise UserError(
            f"landmark type mismatch: {samples_path} has {detector} landmarks but {nrsfm_dir} was fitted to {model_detector}; {fix}"
        )
    num_landmarks = samples.landmarks.shape[1]
    if model.num_landmarks != num_landmarks:
        raise UserError(
            f"landmark count mismatch: {samples_path} has {num_landmarks} landmarks per face but {nrsfm_dir} has {model.num_landmarks}; {fix}"
        )
    facts = {"generator": lambda m: _name(m.get("generator")), "generator checksum": _checksum}
    for fact, read in facts.items():
        ours, theirs = read(samples.metadata), read(model.metadata)
        if ours not in (None, "unknown") and theirs not in (None, "unknown") and ours != theirs:
            raise UserError(f"{fact} mismatch: {samples_path} has {ours} but {nrsfm_dir} was fitted to {theirs}; {fix}")
    fitted_to = model.metadata.get("dataset_checksum")
    if fitted_to is not None and fitted_to != samples_checksum(samples):
        raise UserError(
            f"sample set mismatch: {nrsfm_dir} was fitted to dataset {fitted_to}, {samples_path} is dataset "
            f"{samples_checksum(samples)}; {fix}"
        )
    if len(attributes["seeds"]) != len(samples) or not np.array_equal(attributes["seeds"], samples.seeds):
        raise UserError(
            f"sample set mismatch: the seeds of {nrsfm_dir / 'attributes.npz'} differ from those of {samples_path}; {fix}"
        )
    if not np.array_equal(attributes["found"], samples.found):
        raise UserError(
            f"sample set mismatch: `found` of {nrsfm_dir / 'attributes.npz'} differs from {samples_path}; {fix}"
        )


def select_latents(samples: Samples, latent_space: str, samples_path) -> tuple[np.ndarray, tuple[int, ...]]:
    """(N, D) latents of `latent_space` and their per-sample shape ((D,) or (num_ws, w_dim))."""
    if latent_space != "w+" and samples.metadata.get("style_mixing"):
        raise UserError(
            f"{samples_path} was sampled with style mixing, so its z and w do not describe its images; "
            f"train with latent_space=w+ or on a dataset sampled with style_mixing=0"
        )
    if latent_space == "z":
        return samples.z, samples.z.shape[1:]
    if latent_space == "w":
        return samples.w, samples.w.shape[1:]
    if samples.ws is None:
        raise UserError(f"{samples_path} has no `ws`; re-sample with w+ latents stored or train with latent_space=w")
    return samples.ws.reshape(len(samples.ws), -1), samples.ws.shape[1:]


def split_of_seeds(seeds: np.ndarray, fractions: Sequence[float] = (0.8, 0.1, 0.1), split_seed: int = 0) -> np.ndarray:
    """(N,) seeds -> (N,) int64 split ids (0 train, 1 val, 2 test) from a splitmix64 hash of (seed, split_seed)."""
    fractions = np.asarray(fractions, dtype=np.float64)
    if fractions.shape != (3,) or (fractions < 0).any() or fractions[0] <= 0 or not np.isclose(fractions.sum(), 1.0):
        raise ValueError(
            f"split_fractions must be three non-negative numbers (train > 0) summing to 1, got {fractions.tolist()}"
        )
    with np.errstate(over="ignore"):
        x = seeds.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15) * np.uint64(split_seed + 1)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    uniform = (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return np.searchsorted(np.cumsum(fractions)[:2], uniform, side="right").astype(np.int64)


def samples_checksum(samples: Samples) -> str:
    """The sample set's identity as `nrsfm.fit` records it in model.npz ("dataset_checksum")."""
    return dataset_checksum(samples.seeds, samples.landmarks, samples.found)


def detector_name(metadata: dict[str, Any]) -> str | None:
    """The landmark detector's name in a dataset's metadata ("detector" or "landmarks" key)."""
    return _name(metadata.get("detector", metadata.get("landmarks")))


def image_size_of(metadata: dict[str, Any]) -> tuple[int, int] | None:
    """(height, width) from metadata "image_size" ([H, W] or one int) or "height"/"width"; None if absent."""
    size = metadata.get("image_size")
    if size is None and "height" in metadata and "width" in metadata:
        size = (metadata["height"], metadata["width"])
    if size is None:
        return None
    size = [int(s) for s in np.atleast_1d(size)]
    return (size[0], size[-1])


def _name(value: Any) -> str | None:
    """A name given as a string or as a dict's "name"."""
    return value.get("name") if isinstance(value, dict) else value


def _checksum(metadata: dict[str, Any]) -> str | None:
    """The generator checksum: "generator_checksum" (or "generator": {"checksum": ...})."""
    generator = metadata.get("generator")
    return generator.get("checksum") if isinstance(generator, dict) else metadata.get("generator_checksum")
