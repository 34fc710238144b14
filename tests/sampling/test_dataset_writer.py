"""Chunk files, the atomic HDF5 writer, block reading and merge checks of `sampling.dataset`."""

import h5py
import numpy as np
import pytest

from common.errors import UserError
from sampling.dataset import (
    iter_row_blocks,
    merge_datasets,
    read_chunk,
    read_samples,
    write_chunk_atomic,
    write_samples_atomic,
)


def rows(start, count, num_landmarks=3):
    generator = np.random.default_rng(start)
    return {
        "seeds": np.arange(start, start + count, dtype=np.int64),
        "z": generator.standard_normal((count, 4)).astype(np.float32),
        "w": generator.standard_normal((count, 4)).astype(np.float32),
        "landmarks": generator.random((count, num_landmarks, 2)).astype(np.float32),
        "found": generator.random(count) > 0.3,
        "score": generator.random(count).astype(np.float32),
        "truth.rotation_deg": generator.standard_normal((count, 3)).astype(np.float32),
    }


def metadata(start, count, **changes):
    return {
        "generator": "g",
        "generator_checksum": "abc",
        "detector": "dlib",
        "seed_start": start,
        "num_samples": count,
        "shard": 0,
        "config": {"shard": 0},
    } | changes


def test_chunk_round_trip_and_fingerprint(tmp_path):
    path = tmp_path / "chunk_00000.npz"
    arrays = rows(0, 5)
    write_chunk_atomic(path, arrays, "fp-1")
    loaded = read_chunk(path, "fp-1")
    assert loaded.keys() == arrays.keys()
    assert all(np.array_equal(loaded[key], arrays[key]) for key in arrays)
    assert read_chunk(path, "fp-2") is None  # made with other settings
    assert read_chunk(tmp_path / "missing.npz", "fp-1") is None
    assert [p.name for p in tmp_path.iterdir()] == ["chunk_00000.npz"]  # no temporary left


def test_samples_file_from_blocks(tmp_path):
    path = tmp_path / "samples.h5"
    blocks = [rows(0, 5), rows(5, 3)]
    write_samples_atomic(path, blocks, 8, metadata(0, 8))
    samples = read_samples(path)
    assert samples.seeds.tolist() == list(range(8))
    assert np.array_equal(samples.landmarks, np.concatenate([b["landmarks"] for b in blocks]))
    assert samples.found.dtype == bool and samples.truth["rotation_deg"].shape == (8, 3)
    assert samples.metadata == metadata(0, 8)
    again = [dict(block) for block in iter_row_blocks(path, rows_per_block=3)]
    assert [len(block["seeds"]) for block in again] == [3, 3, 2]
    assert np.array_equal(
        np.concatenate([block["truth.rotation_deg"] for block in again]), samples.truth["rotation_deg"]
    )


def test_row_count_mismatch_leaves_nothing(tmp_path):
    path = tmp_path / "samples.h5"
    with pytest.raises(ValueError, match="got 5 rows, expected 6"):
        write_samples_atomic(path, [rows(0, 5)], 6, metadata(0, 6))
    assert list(tmp_path.iterdir()) == []


def test_merge_joins_in_seed_order_and_checks_metadata(tmp_path):
    write_samples_atomic(tmp_path / "a.h5", [rows(0, 4)], 4, metadata(0, 4))
    write_samples_atomic(tmp_path / "b.h5", [rows(4, 2)], 2, metadata(4, 2, shard=1, config={"shard": 1}))
    merged = merge_datasets([tmp_path / "b.h5", tmp_path / "a.h5"], tmp_path / "m.h5")
    assert merged["seed_ranges"] == [[0, 4], [4, 6]] and "shard" not in merged
    assert read_samples(tmp_path / "m.h5").seeds.tolist() == list(range(6))
    write_samples_atomic(tmp_path / "c.h5", [rows(6, 2)], 2, metadata(6, 2, detector="fan"))
    with pytest.raises(UserError, match="differs in detector"):
        merge_datasets([tmp_path / "a.h5", tmp_path / "c.h5"], tmp_path / "bad.h5")
    with pytest.raises(UserError, match="overlap in seeds 0..3"):
        merge_datasets([tmp_path / "a.h5", tmp_path / "a.h5"], tmp_path / "bad.h5")
    with pytest.raises(UserError, match="not found"):
        merge_datasets([tmp_path / "a.h5", tmp_path / "nope.h5"], tmp_path / "bad.h5")
    assert not (tmp_path / "bad.h5").exists()


def test_reader_rejects_files_that_are_not_datasets(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["seeds"] = np.arange(3)
    with pytest.raises(UserError, match="lacks z, w, landmarks, found, score"):
        read_samples(path)
    (tmp_path / "junk.h5").write_bytes(b"junk")
    with pytest.raises(UserError, match="not a readable sampling dataset"):
        read_samples(tmp_path / "junk.h5")
