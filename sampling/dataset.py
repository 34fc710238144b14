"""The sampling stage's dataset: latents, detected landmarks and metadata in one HDF5 file.

Layout (N samples, L landmarks; see docs/ARCHITECTURE.md):
- ``seeds`` int64 (N,), ``z`` float32 (N, z_dim), ``w`` float32 (N, w_dim), ``ws`` (N, num_ws, w_dim) optional;
- ``landmarks`` float32 (N, L, 2) normalised by image width/height, zeros where no face was found;
- ``found`` bool (N,), ``score`` float32 (N,);
- group ``truth/`` (optional; generators that know their ground truth);
- attribute ``metadata``: JSON (generator, detector, num_landmarks, image size, versions, config).

Why HDF5: one self-describing file per run holding named, typed arrays plus JSON metadata; rows are
read by slice without loading the rest (``ws`` for 1M samples is ~37 GB); readable from any
language; h5py is a small binary wheel. Crash safety does not rely on HDF5 (whose files can be left
corrupt by a crash mid-write): the sampler writes finished chunks as separate ``.npz`` files by
temporary name + rename (`write_chunk_atomic`), and the final file is assembled under a temporary
name and renamed into place (`write_samples_atomic`), so a file called ``samples.h5`` is complete.
Row order is seed order; truth arrays are stored in chunks under keys ``truth.<name>``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from common.errors import UserError
from common.hashing import array_digest
from common.io import atomic_path, save_npz_atomic

REQUIRED_KEYS = ("seeds", "z", "w", "landmarks", "found", "score")
TRUTH_PREFIX = "truth."
ROWS_PER_BLOCK = 4096


@dataclass
class Samples:
    """Arrays of a dataset held in memory; shapes as in the module docstring."""

    seeds: np.ndarray
    z: np.ndarray
    w: np.ndarray
    landmarks: np.ndarray
    found: np.ndarray
    score: np.ndarray
    metadata: dict[str, Any]
    ws: np.ndarray | None = None
    truth: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.seeds)


def read_samples(path: str | Path) -> Samples:
    """Load a whole dataset; raise UserError naming the fix when it is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"dataset {path} not found; create it with `python -m sampling.sample`")
    try:
        with h5py.File(path, "r") as f:
            missing = [key for key in REQUIRED_KEYS if key not in f]
            if missing:
                raise UserError(
                    f"dataset {path} lacks {', '.join(missing)}; re-create it with `python -m sampling.sample`"
                )
            arrays = {key: f[key][()] for key in REQUIRED_KEYS}
            ws = f["ws"][()] if "ws" in f else None
            truth = {key: f["truth"][key][()] for key in f["truth"]} if "truth" in f else {}
            metadata = json.loads(f.attrs["metadata"])
    except (OSError, KeyError, json.JSONDecodeError) as error:
        raise UserError(
            f"{path} is not a readable sampling dataset ({error}); re-create it with `python -m sampling.sample`"
        ) from error
    arrays["found"] = arrays["found"].astype(bool)
    return Samples(**arrays, metadata=metadata, ws=ws, truth=truth)


def dataset_checksum(seeds: np.ndarray, landmarks: np.ndarray, found: np.ndarray) -> str:
    """The sample set's identity: 16 hex digits over seeds (N,), landmarks (N, L, 2) and found (N,)."""
    return array_digest(seeds.astype(np.int64), landmarks.astype(np.float32), found.astype(bool), length=16)


def write_chunk_atomic(path: str | Path, arrays: Mapping[str, np.ndarray], fingerprint: str) -> None:
    """Save one chunk of rows (named arrays, first axis = samples) as ``.npz``, atomically.

    `fingerprint` identifies the settings that produced the rows; `read_chunk` checks it.
    """
    save_npz_atomic(path, compressed=False, fingerprint=np.array(fingerprint), **arrays)


def read_chunk(path: str | Path, fingerprint: str) -> dict[str, np.ndarray] | None:
    """Arrays of a chunk written by `write_chunk_atomic`, or None when it is unreadable or was made
    with other settings (a different `fingerprint`), so that the caller recomputes it."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["fingerprint"]) != fingerprint:
                return None
            return {key: data[key] for key in data.files if key != "fingerprint"}
    except (OSError, KeyError, ValueError, EOFError):
        return None


def write_samples_atomic(
    path: str | Path, blocks: Iterable[Mapping[str, np.ndarray]], num_samples: int, metadata: Mapping[str, Any]
) -> None:
    """Write the HDF5 dataset from consecutive row blocks, under a temporary name, then rename.

    Args:
        path: the final ``samples.h5``.
        blocks: dicts of arrays (rows first) with the keys of the layout; ``truth.<name>`` keys go
            to the ``truth/`` group. Every block has the same keys; rows add up to `num_samples`.
        num_samples: N.
        metadata: JSON-serialisable; stored as the ``metadata`` attribute.
    Nothing is left at `path` unless the whole file was written; write errors become a UserError.
    """
    with atomic_path(path) as tmp, h5py.File(tmp, "w", track_order=False) as f:
        written = 0
        for block in blocks:
            rows = len(block["seeds"])
            for key, values in block.items():
                name = key.replace(TRUTH_PREFIX, "truth/", 1) if key.startswith(TRUTH_PREFIX) else key
                if name not in f:
                    f.create_dataset(
                        name, shape=(num_samples, *values.shape[1:]), dtype=values.dtype, track_times=False
                    )
                f[name][written : written + rows] = values
            written += rows
        if written != num_samples:
            raise ValueError(f"{path}: got {written} rows, expected {num_samples}")
        f.attrs["metadata"] = json.dumps(metadata, sort_keys=True)


def read_metadata(path: str | Path) -> dict[str, Any]:
    """Only the metadata of a dataset; UserError when the file is missing or not a dataset."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"dataset {path} not found; create it with `python -m sampling.sample`")
    try:
        with h5py.File(path, "r") as f:
            return json.loads(f.attrs["metadata"])
    except (OSError, KeyError, json.JSONDecodeError) as error:
        raise UserError(
            f"{path} is not a readable sampling dataset ({error}); re-create it with `python -m sampling.sample`"
        ) from error


def iter_row_blocks(path: str | Path, rows_per_block: int = ROWS_PER_BLOCK) -> Iterator[dict[str, np.ndarray]]:
    """Consecutive row blocks of a dataset as dicts (truth arrays under ``truth.<name>``)."""
    with h5py.File(path, "r") as f:
        names = [key for key in f if isinstance(f[key], h5py.Dataset)]
        names += [f"truth/{key}" for key in f["truth"]] if "truth" in f else []
        num_rows = len(f["seeds"])
        for start in range(0, num_rows, rows_per_block):
            yield {name.replace("truth/", TRUTH_PREFIX, 1): f[name][start : start + rows_per_block] for name in names}


# Metadata entries that differ between shards of one sampling run; everything else must agree.
SHARD_KEYS = ("seed_start", "num_samples", "shard", "seed_ranges", "merged_from")


def seed_ranges(metadata: Mapping[str, Any]) -> list[list[int]]:
    """The [start, stop) seed ranges a dataset holds, in row order."""
    if "seed_ranges" in metadata:
        return [list(range_) for range_ in metadata["seed_ranges"]]
    return [[metadata["seed_start"], metadata["seed_start"] + metadata["num_samples"]]]


def merge_datasets(inputs: Sequence[str | Path], out: str | Path) -> dict[str, Any]:
    """Join shards of one sampling run into one dataset at `out`.

    Shards must agree on everything but their seed ranges (generator and checksum, detector,
    image size, truncation, arrays stored, ...), and their seed ranges must not overlap. Inputs
    are joined in the order of their first seed, so merging all shards of a run gives rows in
    seed order. Returns the merged metadata (``seed_ranges``: the [start, stop) ranges joined).
    """
    if len(inputs) == 0:
        raise UserError("merge needs inputs: inputs=[a/samples.h5,b/samples.h5] out=merged.h5")
    metas = [read_metadata(path) for path in inputs]
    reference = _shared_metadata(metas[0])
    for path, meta in zip(inputs[1:], metas[1:]):
        differing = sorted(
            key
            for key in set(reference) | set(_shared_metadata(meta))
            if reference.get(key) != _shared_metadata(meta).get(key)
        )
        if differing:
            raise UserError(
                f"{path} does not come from the same sampling run as {inputs[0]} (differs in {', '.join(differing)}); merge only shards of one run"
            )
    order = sorted(range(len(inputs)), key=lambda index: seed_ranges(metas[index])[0][0])
    ranges = [range_ for index in order for range_ in seed_ranges(metas[index])]
    by_start = sorted(ranges)
    for (_, stop_a), (start_b, _) in zip(by_start, by_start[1:]):
        if start_b < stop_a:
            raise UserError(f"inputs overlap in seeds {start_b}..{stop_a - 1}; merge each shard once")
    num_samples = sum(meta["num_samples"] for meta in metas)
    merged = dict(
        metas[0],
        seed_start=ranges[0][0],
        num_samples=num_samples,
        seed_ranges=ranges,
        merged_from=[str(inputs[index]) for index in order],
    )
    merged.pop("shard", None)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    blocks = (block for index in order for block in iter_row_blocks(inputs[index]))
    write_samples_atomic(out, blocks, num_samples, merged)
    return merged


def _shared_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Metadata without the entries that legitimately differ between shards."""
    shared = {key: value for key, value in metadata.items() if key not in SHARD_KEYS}
    if isinstance(shared.get("config"), dict):
        shared["config"] = {key: value for key, value in shared["config"].items() if key != "shard"}
    return shared
