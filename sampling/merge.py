"""Join the shards of one sampling run: ``python -m sampling.merge inputs=[a.h5,b.h5] out=merged.h5``.

The shards must come from the same run (same generator and checksum, detector, settings) with
disjoint seed ranges; see `sampling.dataset.merge_datasets`. The output is written atomically.
"""

from __future__ import annotations

from typing import Any

import hydra
from omegaconf import DictConfig

from common.cli import exit_on_user_error, launch
from sampling.dataset import merge_datasets


def run(cfg: DictConfig) -> dict[str, Any]:
    """Merge `cfg.inputs` into `cfg.out`; returns the merged metadata."""
    merged = merge_datasets(list(cfg.inputs), cfg.out)
    ranges = ", ".join(f"{start}..{stop - 1}" for start, stop in merged["seed_ranges"])
    print(f"merged {len(cfg.inputs)} datasets, {merged['num_samples']} samples (seeds {ranges}) into {cfg.out}")
    return merged


@hydra.main(version_base="1.3", config_path="../conf", config_name="merge")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error():
        run(cfg)


if __name__ == "__main__":
    launch("sampling.merge", "merge")
