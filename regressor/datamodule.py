"""LightningDataModule over the sampling dataset and its NRSfM fit, held in memory as tensors.

Batches are dicts {"latent" (B, D), "landmarks" (B, L, 2), "q" (B, 8 + K), "seed" (B,)}. The dataset
implements `__getitems__`, so a whole batch is one tensor gather (no per-sample Python work and no
collation); the CPU time goes to the model, which uses torch's intra-op threads. `num_workers`
stays configurable (default 0: with in-memory tensors, worker processes only add copies). Under
DDP Lightning shards the standard samplers as usual.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from regressor.data import RegressionData, load_regression_data


class LatentLandmarkDataset(Dataset):
    """Rows `indices` of a RegressionData; item i is the dict of row i, `__getitems__` gathers a batch."""

    def __init__(self, data: RegressionData, indices: torch.Tensor):
        self.tensors = {
            "latent": data.latents[indices],
            "landmarks": data.landmarks[indices],
            "q": data.q_fit[indices],
            "seed": data.seeds[indices],
        }

    def __len__(self) -> int:
        return len(self.tensors["seed"])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {key: value[index] for key, value in self.tensors.items()}

    def __getitems__(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        rows = torch.as_tensor(indices, dtype=torch.long)
        return {key: value[rows] for key, value in self.tensors.items()}


def keep_batch(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Collate function for batches already gathered by `__getitems__`."""
    return batch


class LatentLandmarkDataModule(pl.LightningDataModule):
    """Train/val/test loaders over `samples` (samples.h5) and `nrsfm_dir` (model.npz, attributes.npz).

    Args:
        samples, nrsfm_dir: input paths.
        latent_space: "z", "w" or "w+" (flattened; see `regressor.data`).
        batch_size: training batch size; evaluation uses `eval_batch_size` (default 4x).
        num_workers: DataLoader worker processes.
        split_fractions, split_seed: the seed-hash split (train, val, test).
    """

    def __init__(
        self,
        samples: str | Path,
        nrsfm_dir: str | Path,
        latent_space: str = "w",
        batch_size: int = 512,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
        split_seed: int = 0,
    ):
        super().__init__()
        if batch_size < 1 or num_workers < 0:
            raise ValueError(f"batch_size must be >= 1 and num_workers >= 0, got {batch_size} and {num_workers}")
        self.samples, self.nrsfm_dir, self.latent_space = samples, nrsfm_dir, latent_space
        self.batch_size, self.num_workers = int(batch_size), int(num_workers)
        self.eval_batch_size = int(eval_batch_size or 4 * batch_size)
        self.split_fractions, self.split_seed = tuple(split_fractions), int(split_seed)
        self.data: RegressionData | None = None

    def setup(self, stage: str | None = None) -> None:
        """Load and check the files once (idempotent); raise UserError on bad input or empty splits."""
        if self.data is not None:
            return
        self.data = load_regression_data(
            self.samples, self.nrsfm_dir, self.latent_space, self.split_fractions, self.split_seed
        )
        empty = [name for name in ("train", "val", "test") if len(self.data.indices(name)) == 0]
        if empty:
            raise ValueError(
                f"the {', '.join(empty)} split of {self.samples} is empty; sample more faces or change data.split_fractions"
            )

    @property
    def loaded(self) -> RegressionData:
        if self.data is None:
            self.setup()
        return self.data

    def dataset(self, split: str) -> LatentLandmarkDataset:
        return LatentLandmarkDataset(self.loaded, self.loaded.indices(split))

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.eval_batch_size, shuffle=False)

    def _loader(self, split: str, batch_size: int, shuffle: bool) -> DataLoader:
        return DataLoader(
            self.dataset(split),
            batch_size=batch_size,
            shuffle=shuffle,
            collate_fn=keep_batch,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )
