"""The sampling stage on a small stand-in generator that moves and zooms a crop of a real photo.

The stand-in knows where the astronaut's landmarks land in each crop, so the detection rate and
landmark error printed by the stage can be checked against an independent ground truth.
"""

import contextlib
import hashlib
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data

from backbones.generator import Generator
from backbones.landmarks.dlib import DlibDetector
from common.cli import check_command_line
from common.errors import UserError
from sampling.dataset import merge_datasets, read_samples
from sampling.sample import render_in_workers, sample_dataset, shard_seed_range, summarise

RESOLUTION = 128
FACE_CENTRE = (221.0, 128.0)  # astronaut face, pixels of the 512x512 photo
CROP_SIDE = 190.0


class AstronautCrops(Generator):
    """z (B, 4) -> a 128x128 crop of the astronaut photo; w = tanh(z) shifts (w0, w1) and zooms (w2) it.

    `blank_below` > -1 blanks images whose w3 is below it (no face to find).
    """

    z_dim = w_dim = 4
    num_ws = 2
    img_resolution = RESOLUTION
    name = "astronaut-crops"

    def __init__(self, photo_landmarks: torch.Tensor, blank_below: float = -1.0):
        super().__init__()
        photo = torch.from_numpy(data.astronaut()).permute(2, 0, 1).float() / 127.5 - 1
        self.register_buffer("photo", photo[None])
        self.register_buffer("photo_landmarks", photo_landmarks)
        self.register_buffer("w_avg", torch.zeros(self.w_dim))
        self.blank_below = blank_below

    def mapping(self, z, truncation_psi=1.0):
        w = self.w_avg + truncation_psi * (torch.tanh(z) - self.w_avg)
        return w[:, None, :].expand(-1, self.num_ws, -1)

    def crop(self, ws):
        """Crop centres (B, 2) and sides (B,) in photo pixels."""
        w = ws[:, 0]
        centre = torch.tensor(FACE_CENTRE) + 12.0 * w[:, :2]
        return centre, CROP_SIDE * (1 + 0.15 * w[:, 2])

    def synthesis(self, ws, noise_mode="const"):
        centre, side = self.crop(ws)
        theta = torch.zeros(len(ws), 2, 3)
        theta[:, 0, 0] = theta[:, 1, 1] = side / 512
        theta[:, :, 2] = (2 * centre + 1) / 512 - 1
        grid = F.affine_grid(theta, [len(ws), 3, RESOLUTION, RESOLUTION], align_corners=False)
        images = F.grid_sample(self.photo.expand(len(ws), -1, -1, -1), grid, align_corners=False)
        return torch.where((ws[:, 0, 3] < self.blank_below)[:, None, None, None], -torch.ones_like(images), images)

    def ground_truth(self, ws):
        centre, side = self.crop(ws)
        corner = centre - side[:, None] / 2
        landmarks = (self.photo_landmarks + 0.5 - corner[:, None]) * (RESOLUTION / side[:, None, None]) - 0.5
        w = ws[:, 0]
        return {
            "rotation_deg": torch.zeros(len(ws), 3),
            "expression": w[:, 3:],
            "identity": w[:, 2:3],
            "landmarks": landmarks,
        }


@pytest.fixture(scope="module")
def detector():
    return DlibDetector()


def make_generator(detector):
    photo = torch.from_numpy(data.astronaut()).permute(2, 0, 1)[None].float() / 127.5 - 1
    return AstronautCrops(detector.detect(photo).landmarks[0]).freeze()


@pytest.fixture(scope="module")
def generator(detector):
    return make_generator(detector)


def sample(generator, detector, out, num_samples=12, **kwargs):
    settings = dict(batch_size=4, chunk_size=5, num_workers=0, progress=False) | kwargs
    return sample_dataset(generator, detector, out, 100, num_samples, **settings)


def file_digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_stand_in_sampling_finds_faces_and_matches_its_truth(generator, detector, tmp_path):
    out = sample(generator, detector, tmp_path / "samples.h5")
    samples = read_samples(out)
    assert samples.seeds.tolist() == list(range(100, 112))
    assert samples.z.shape == (12, 4) and samples.w.shape == (12, 4) and samples.ws is None
    assert np.array_equal(samples.z, generator.z_from_seeds(range(100, 112)).numpy())
    assert samples.landmarks.shape == (12, 68, 2) and samples.landmarks.dtype == np.float32
    assert samples.found.all()
    assert ((samples.landmarks > 0) & (samples.landmarks < 1)).all()
    assert samples.truth["landmarks"].shape == (12, 68, 2) and samples.truth["rotation_deg"].shape == (12, 3)
    meta = samples.metadata
    assert meta["generator"] == "astronaut-crops" and meta["generator_checksum"] == generator.checksum()
    assert meta["detector"] == "dlib" and meta["num_landmarks"] == 68 and meta["image_size"] == [128, 128]
    assert meta["seed_start"] == 100 and meta["num_samples"] == 12 and "torch" in meta["versions"]
    summary = summarise(out)
    assert summary["detection_rate"] == 1.0
    # dlib on a 128-pixel crop against dlib on the 512-pixel photo, moved by the known crop.
    assert summary["median_error_px"] < 2.5 and summary["nme"] < 0.06
    assert not (tmp_path / "samples.h5.parts").exists()


def test_resume_after_interruption_gives_the_same_file(generator, detector, tmp_path):
    uninterrupted = sample(generator, detector, tmp_path / "a" / "samples.h5")

    def stop_after_two(index):
        if index == 1:
            raise KeyboardInterrupt

    resumed = tmp_path / "b" / "samples.h5"
    with pytest.raises(KeyboardInterrupt):
        sample(generator, detector, resumed, on_chunk_written=stop_after_two)
    parts = sorted(path.name for path in (tmp_path / "b" / "samples.h5.parts").iterdir())
    assert parts == ["chunk_00000.npz", "chunk_00001.npz"] and not resumed.exists()
    written = []
    sample(generator, detector, resumed, on_chunk_written=written.append)
    assert written == [2]  # only the missing chunk was computed
    assert file_digest(resumed) == file_digest(uninterrupted)


def test_worker_processes_give_the_same_file_as_one_process(generator, detector, tmp_path):
    inline = sample(generator, detector, tmp_path / "inline.h5", num_samples=8)
    rendering_workers = sample(
        generator, detector, tmp_path / "a.h5", num_samples=8, num_workers=2, render_in_workers=True
    )
    assert file_digest(rendering_workers) == file_digest(inline)


@pytest.mark.slow
def test_detect_only_workers_give_the_same_file_as_one_process(generator, detector, tmp_path):
    inline = sample(generator, detector, tmp_path / "inline.h5", num_samples=8)
    detecting_workers = sample(
        generator, detector, tmp_path / "b.h5", num_samples=8, num_workers=2, render_in_workers=False
    )
    assert file_digest(detecting_workers) == file_digest(inline)


def test_corrupt_or_foreign_chunk_is_recomputed(generator, detector, tmp_path):
    reference = sample(generator, detector, tmp_path / "ref.h5")
    out = tmp_path / "run" / "samples.h5"
    with pytest.raises(KeyboardInterrupt):
        sample(generator, detector, out, on_chunk_written=lambda index: (_ for _ in ()).throw(KeyboardInterrupt))
    (tmp_path / "run" / "samples.h5.parts" / "chunk_00000.npz").write_bytes(b"truncated")
    written = []
    sample(generator, detector, out, on_chunk_written=written.append)
    assert written == [0, 1, 2] and file_digest(out) == file_digest(reference)


def test_rerun_of_a_finished_dataset_does_nothing_and_other_settings_are_refused(generator, detector, tmp_path):
    out = sample(generator, detector, tmp_path / "samples.h5")
    written = []
    sample(generator, detector, out, on_chunk_written=written.append)
    assert written == []
    with pytest.raises(UserError, match="already holds a different dataset"):
        sample(generator, detector, out, truncation_psi=0.5)


def test_shards_are_disjoint_and_merge_into_the_unsharded_dataset(generator, detector, tmp_path):
    ranges = [shard_seed_range(100, 12, shard, 3) for shard in range(3)]
    assert ranges == [(100, 104), (104, 108), (108, 112)]
    whole = read_samples(sample(generator, detector, tmp_path / "whole.h5", chunk_size=4))
    shards = [
        sample_dataset(
            generator,
            detector,
            tmp_path / f"shard{i}.h5",
            start,
            stop - start,
            batch_size=4,
            chunk_size=4,
            num_workers=0,
            progress=False,
            config={"shard": i},
        )
        for i, (start, stop) in enumerate(ranges)
    ]
    merge_datasets([shards[2], shards[0], shards[1]], tmp_path / "merged.h5")
    merged = read_samples(tmp_path / "merged.h5")
    assert merged.metadata["seed_ranges"] == [[100, 104], [104, 108], [108, 112]]
    for key in ("seeds", "z", "w", "landmarks", "found", "score"):
        assert np.array_equal(getattr(merged, key), getattr(whole, key)), key
    assert np.array_equal(merged.truth["landmarks"], whole.truth["landmarks"])
    with pytest.raises(UserError, match="overlap"):
        merge_datasets([shards[0], shards[0]], tmp_path / "twice.h5")


def test_merge_refuses_shards_of_different_runs(generator, detector, tmp_path):
    first = sample_dataset(generator, detector, tmp_path / "a.h5", 0, 4, batch_size=4, num_workers=0, progress=False)
    other = sample_dataset(
        generator, detector, tmp_path / "b.h5", 4, 4, batch_size=4, num_workers=0, progress=False, truncation_psi=0.7
    )
    with pytest.raises(UserError, match="differs in truncation_psi"):
        merge_datasets([first, other], tmp_path / "merged.h5")
    assert not (tmp_path / "merged.h5").exists()


def test_zero_faces_in_a_chunk_is_a_clear_error(detector, generator, tmp_path):
    blank = AstronautCrops(generator.photo_landmarks, blank_below=2.0).freeze()  # every image blank
    with pytest.raises(
        UserError, match=r"no face found in any of the 5 images of seeds 100\.\.104: .*weights and truncation_psi"
    ):
        sample(blank, detector, tmp_path / "samples.h5")
    assert not (tmp_path / "samples.h5").exists()
    assert list((tmp_path / "samples.h5.parts").iterdir()) == []


def test_unwritable_output_folder(generator, detector, tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    with pytest.raises(UserError, match="cannot create .*; choose a writable out="):
        sample(generator, detector, not_a_folder / "sub" / "samples.h5")


def run_in_child_process(check, tmp_path):
    """Run `check(tmp_path)` from this module in a fresh interpreter and fail if it fails.

    HDF5 keeps library-wide state that a failed write can leave broken, so that a later, unrelated
    h5py call in the same process crashes; a real disk-full ends the command, so only tests need this.
    """
    code = (
        f"import sys, pathlib; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
        f"import {Path(__file__).stem} as t; t.{check.__name__}(pathlib.Path({str(tmp_path)!r}))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


@contextlib.contextmanager
def file_size_limit(num_bytes):
    """Writes past `num_bytes` fail with EFBIG (as on a full disk) inside the block."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (num_bytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def check_disk_full_while_writing_chunks(tmp_path):
    detector = DlibDetector()
    generator = make_generator(detector)
    with file_size_limit(2000), pytest.raises(UserError, match="could not write .*chunk_00000.npz .*free disk space"):
        sample(generator, detector, tmp_path / "samples.h5")
    assert not (tmp_path / "samples.h5").exists()
    assert list((tmp_path / "samples.h5.parts").iterdir()) == []


def check_disk_full_while_assembling(tmp_path):
    detector = DlibDetector()
    generator = make_generator(detector)
    reference = sample(generator, detector, tmp_path / "reference.h5")
    out = tmp_path / "run" / "samples.h5"
    with file_size_limit(reference.stat().st_size // 2):  # chunks fit, the dataset does not
        with pytest.raises(UserError, match=r"could not write .*samples\.h5 .*free disk space"):
            sample(generator, detector, out)
    assert sorted(path.name for path in out.parent.iterdir()) == ["samples.h5.parts"]
    os._exit(0)  # the failed write left HDF5 unusable in this process: skip its clean-up at exit


def test_disk_full_leaves_no_dataset_that_looks_complete(tmp_path):
    run_in_child_process(check_disk_full_while_writing_chunks, tmp_path)


def test_disk_full_while_assembling_keeps_the_chunks_for_a_rerun(generator, detector, tmp_path):
    run_in_child_process(check_disk_full_while_assembling, tmp_path)
    written = []
    out = sample(generator, detector, tmp_path / "run" / "samples.h5", on_chunk_written=written.append)
    assert written == [] and file_digest(out) == file_digest(tmp_path / "reference.h5")


def test_bad_settings():
    with pytest.raises(ValueError, match="0 <= shard < num_shards"):
        shard_seed_range(0, 10, 2, 2)
    with pytest.raises(ValueError, match="num_samples must be >= 1"):
        shard_seed_range(0, 0, 0, 1)
    with pytest.raises(UserError, match="unknown landmarks 'nope'; choose one of: dlib, fan, mediapipe"):
        check_command_line("sample", ["landmarks=dlib,nope"])


def test_render_in_modes(generator):
    assert render_in_workers("auto", generator) and render_in_workers("workers", generator)
    assert not render_in_workers("main", generator)
    with pytest.raises(ValueError, match="render_in must be auto, main or workers"):
        render_in_workers("gpu", generator)
