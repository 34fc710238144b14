"""The sampling stage: seeds -> latents -> images -> landmarks -> ``samples.h5``.

``python -m sampling.sample generator=synthetic landmarks=dlib num_samples=50000 seed=0``

- Sample i of a run has seed ``seed + i`` and latent ``generator.z_from_seeds([seed + i])``;
  ``shard=s num_shards=n`` takes the s-th of n contiguous, disjoint seed ranges, so the shards of a
  run together hold exactly the seeds of the unsharded run (join them with ``python -m sampling.merge``).
- Batches of `batch_size` seeds are rendered under ``torch.no_grad`` and passed to the detector.
  `num_workers` spawned processes, each with its own detector (and generator), do the work:
  ``render_in=workers`` (``auto`` for CPU generators) lets each worker render and detect whole
  batches so that every core is busy; ``render_in=main`` renders in the main process (a GPU
  generator) and only detects in the workers; ``num_workers=0`` does everything in one process.
  The same settings give bit-identical files whichever mode runs them.
- Crash safety: rows are grouped in chunks of `chunk_size` seeds; each finished chunk is written
  atomically to ``<out>.parts/chunk_<k>.npz`` and skipped when the same command runs again. At the
  end the chunks are assembled into ``<out>`` (temporary name + rename) and the parts are removed.
  A run resumed after a kill therefore ends with the same file as an uninterrupted run.
- At the end it prints the detection rate and, for generators with ``ground_truth``, the median
  landmark error against the truth in pixels and the mean NME (`common.landmarks.nme`),
  and writes ``<out stem>.png``: a 4x4 grid of the first samples with their detected landmarks.
"""

from __future__ import annotations

import importlib.metadata
import logging
import multiprocessing
import shutil
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from backbones.landmarks.base import images_to_uint8
from common.cli import build, check_config_complete, exit_on_user_error, launch
from common.errors import UserError
from common.hashing import config_digest
from common.io import atomic_path
from common.landmarks import landmark_distances, nme
from sampling.dataset import (
    TRUTH_PREFIX,
    read_chunk,
    read_metadata,
    read_samples,
    write_chunk_atomic,
    write_samples_atomic,
)

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
VERSIONED_PACKAGES = ("rankone-edit", "torch", "numpy", "h5py", "dlib-bin", "mediapipe")
# Config entries that change the stored data (or its chunking); the rest (out, num_workers, ...) do not.
DATA_KEYS = (
    "generator",
    "landmarks",
    "num_samples",
    "seed",
    "shard",
    "num_shards",
    "truncation_psi",
    "noise_mode",
    "save_ws",
    "style_mixing",
    "batch_size",
    "chunk_size",
)
# Keys left out of the data config (and so of the cache hash) at this value: datasets made before the key existed keep their names.
DATA_KEY_DEFAULTS = {"style_mixing": 0.0}
PREVIEW_GRID = 4
# Seeds 0..7 calibrate a detector (face size, aligned face box), whatever the run's seeds (shards agree).
CALIBRATION_SEEDS = 8


@dataclass(frozen=True)
class Chunk:
    """Chunk `index`: seeds [start, stop), written to one file."""

    index: int
    start: int
    stop: int


def shard_seed_range(seed: int, num_samples: int, shard: int, num_shards: int) -> tuple[int, int]:
    """[start, stop) seeds of shard `shard` of `num_shards` contiguous shards of seeds seed..seed+num_samples-1."""
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    if not 0 <= shard < num_shards:
        raise ValueError(f"need 0 <= shard < num_shards, got shard={shard} num_shards={num_shards}")
    if num_shards > num_samples:
        raise ValueError(f"num_shards={num_shards} exceeds num_samples={num_samples}; use fewer shards")
    return seed + shard * num_samples // num_shards, seed + (shard + 1) * num_samples // num_shards


def data_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config entries that determine the dataset (see DATA_KEYS)."""
    container = OmegaConf.to_container(cfg, resolve=True)
    return {
        key: container[key]
        for key in DATA_KEYS
        if key not in DATA_KEY_DEFAULTS or container[key] != DATA_KEY_DEFAULTS[key]
    }


def default_dataset_path(cfg: DictConfig, generator=None) -> Path:
    """Where `cfg` (a sample config) writes its dataset when ``out`` is null.

    ``<work_dir>/samples/<generator>-<checksum>/<detector>/n<N>-seed<S>-psi<psi>-r<res>[-ws][-mix<p>][-shard<s>of<n>]-<hash>/samples.h5``
    where <hash> covers every other data-changing setting (detector options, batch and chunk size).
    Pass an already built `generator` to avoid building it again.
    """
    generator = generator if generator is not None else build(cfg.generator, "generator")
    detector_name = get_class(cfg.landmarks._target_).name
    tag = f"n{cfg.num_samples}-seed{cfg.seed}-psi{float(cfg.truncation_psi):g}-r{generator.img_resolution}"
    tag += "-ws" if cfg.save_ws else ""
    tag += f"-mix{float(cfg.style_mixing):g}" if cfg.style_mixing else ""
    tag += f"-shard{cfg.shard}of{cfg.num_shards}" if cfg.num_shards > 1 else ""
    digest = config_digest(data_config(cfg), 8)
    return (
        Path(cfg.paths.work_dir)
        / "samples"
        / f"{generator.name}-{generator.checksum()}"
        / detector_name
        / f"{tag}-{digest}"
        / "samples.h5"
    )


def package_versions() -> dict[str, str]:
    """Versions of the installed packages that shape the data."""
    versions = {}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def dataset_metadata(
    generator,
    detector,
    seed_start: int,
    num_samples: int,
    truncation_psi: float,
    noise_mode: str,
    save_ws: bool,
    style_mixing: float,
    config: Mapping[str, Any],
) -> dict[str, Any]:
    """The ``metadata`` attribute of a dataset (also the fingerprint of its chunks); ``style_mixing`` only when it is used."""
    metadata = {
        "format_version": FORMAT_VERSION,
        "generator": generator.name,
        "generator_checksum": generator.checksum(),
        "truncation_psi": float(truncation_psi),
        "noise_mode": noise_mode,
        "detector": detector.name,
        "num_landmarks": detector.num_landmarks,
        "image_size": [generator.img_resolution, generator.img_resolution],
        "seed_start": int(seed_start),
        "num_samples": int(num_samples),
        "latents": ["z", "w", "ws"] if save_ws else ["z", "w"],
        "has_truth": callable(getattr(generator, "ground_truth", None)),
        "versions": package_versions(),
        "config": dict(config),
    }
    return {**metadata, "style_mixing": float(style_mixing)} if style_mixing else metadata


# ---------------------------------------------------------------------------------------------
# Worker processes. Each spawned process unpickles the detector (and, when it renders too, the
# generator) once in `_start_worker`; `_detect_in_worker` / `_render_and_detect_in_worker` then use
# them for every batch. Detections travel as numpy arrays (landmarks (B, L, 2) pixels, found, score).
_worker_state: dict[str, Any] = {}


def _start_worker(detector, generator, render_options: Mapping[str, Any]) -> None:
    torch.set_num_threads(1)
    _worker_state.update(detector=detector, generator=generator, render_options=dict(render_options))


def detect_arrays(detector, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(B, H, W, 3) uint8 -> landmarks (B, L, 2) pixels, found (B,), score (B,) as numpy arrays."""
    detections = detector.detect_uint8(images)
    return detections.landmarks.numpy(), detections.found.numpy(), detections.score.numpy()


def _detect_in_worker(images: np.ndarray):
    return detect_arrays(_worker_state["detector"], images)


def _render_and_detect_in_worker(seeds: np.ndarray):
    rows, images = render_batch(_worker_state["generator"], seeds, **_worker_state["render_options"])
    return rows, detect_arrays(_worker_state["detector"], images_to_uint8(images))


def can_spawn_workers() -> bool:
    """False inside a joblib (loky) launcher job, whose processes cannot spawn plain multiprocessing
    children; there each shard works in its own process and the launcher runs shards in parallel."""
    if multiprocessing.get_start_method(allow_none=True) in (None, "spawn", "fork", "forkserver"):
        return True
    logger.info("running inside a joblib job: working in this process (parallelism comes from the shards)")
    return False


def completed(value) -> Future:
    future: Future = Future()
    future.set_result(value)
    return future


class BatchRunner:
    """Turns a batch of seeds into (rows, detections), in this process or in `num_workers` spawned ones.

    With `render_in_workers` each worker renders and detects whole batches (both CPU cores busy on
    a CPU generator); otherwise this process renders (e.g. on the GPU) and the workers detect.
    `submit(seeds)` returns (rows or None, future): with None the future yields (rows, detections).
    """

    def __init__(
        self, generator, detector, render_options: Mapping[str, Any], num_workers: int, render_in_workers: bool
    ):
        self.generator, self.detector, self.render_options = generator, detector, dict(render_options)
        self.render_in_workers = render_in_workers and num_workers > 0
        self.pool = None
        if num_workers > 0:
            shipped_generator = generator if self.render_in_workers else None
            self.pool = ProcessPoolExecutor(
                num_workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker,
                initargs=(detector, shipped_generator, self.render_options),
            )

    def submit(self, seeds: np.ndarray) -> tuple[dict[str, np.ndarray] | None, Future]:
        if self.render_in_workers:
            return None, self.pool.submit(_render_and_detect_in_worker, seeds)
        rows, images = render_batch(self.generator, seeds, **self.render_options)
        pixels = images_to_uint8(images)
        if self.pool is None:
            return rows, completed(detect_arrays(self.detector, pixels))
        return rows, self.pool.submit(_detect_in_worker, pixels)

    def shutdown(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


# ---------------------------------------------------------------------------------------------
def mix_styles(
    generator, seeds: np.ndarray, ws: torch.Tensor, truncation_psi: float, probability: float
) -> torch.Tensor:
    """StyleGAN's style mixing, per row: ws (B, num_ws, w_dim) of seeds (B,) -> a copy in which each row,
    independently with `probability`, holds the w of a partner latent instead. The partner z and the
    rows it takes continue the seed's own random stream (after its z), so a seed always gets the same mix."""
    if probability == 0:
        return ws
    partner_z, take = [], []
    for seed in seeds:
        stream = np.random.RandomState(int(seed))
        stream.randn(generator.z_dim)  # the seed's own z
        partner_z.append(stream.randn(generator.z_dim))
        take.append(stream.random_sample(generator.num_ws) < probability)
    partner_ws = generator.mapping(
        torch.from_numpy(np.stack(partner_z).astype(np.float32)).to(ws.device), truncation_psi
    )
    return torch.where(torch.from_numpy(np.stack(take))[..., None].to(ws.device), partner_ws, ws)


def render_batch(
    generator,
    seeds: np.ndarray,
    truncation_psi: float,
    save_ws: bool,
    noise_mode: str = "const",
    style_mixing: float = 0.0,
) -> tuple[dict[str, np.ndarray], torch.Tensor]:
    """Seeds (B,) -> (rows without detections: seeds, z (B, z_dim), w (B, w_dim)[, ws][, truth.*]; images (B, 3, R, R)).

    With `style_mixing` > 0 the images come from `mix_styles`; z and w are then the seed's own
    (unmixed) latents and only ws (which `save_ws` must keep) describes the image."""
    with torch.no_grad():
        z = generator.z_from_seeds(seeds)
        own_ws = generator.mapping(z, truncation_psi)
        ws = mix_styles(generator, seeds, own_ws, truncation_psi, style_mixing)
        images = generator.synthesis(ws, noise_mode=noise_mode)
        rows = {"seeds": seeds.astype(np.int64), "z": z.cpu().numpy(), "w": own_ws[:, 0].cpu().numpy()}
        if save_ws:
            rows["ws"] = ws.cpu().numpy()
        if callable(getattr(generator, "ground_truth", None)):
            size = torch.tensor([images.shape[-1], images.shape[-2]], dtype=torch.float32)
            for key, value in generator.ground_truth(ws).items():
                value = value.float().cpu() / size if key == "landmarks" else value.float().cpu()
                rows[TRUTH_PREFIX + key] = value.numpy()
    return rows, images


def finish_chunk(chunk: Chunk, parts: list[tuple[dict, tuple]], image_size: tuple[int, int]) -> dict[str, np.ndarray]:
    """Join the batches of one chunk and add the detections (landmarks normalised to [0, 1])."""
    rows = {key: np.concatenate([batch[key] for batch, _ in parts]) for key in parts[0][0]}
    landmarks, found, score = (np.concatenate(arrays) for arrays in zip(*(result for _, result in parts)))
    height, width = image_size
    rows["landmarks"] = (landmarks / np.array([width, height], np.float32)).astype(np.float32)
    rows["found"], rows["score"] = found.astype(bool), score.astype(np.float32)
    if not rows["found"].any():
        raise UserError(
            f"no face found in any of the {chunk.stop - chunk.start} images of seeds {chunk.start}..{chunk.stop - 1}: "
            "the generator's images probably show no faces (check its weights and truncation_psi) or the detector threshold is too strict"
        )
    return rows


def load_chunk(path: Path, fingerprint: str) -> dict[str, np.ndarray]:
    """A finished chunk's arrays; UserError when it disappeared or was damaged since it was written."""
    arrays = read_chunk(path, fingerprint)
    if arrays is None:
        raise UserError(f"chunk {path} is missing or damaged; run the same command again to recompute it")
    return arrays


def sample_dataset(
    generator,
    detector,
    out: str | Path,
    seed_start: int,
    num_samples: int,
    *,
    truncation_psi: float = 1.0,
    noise_mode: str = "const",
    save_ws: bool = False,
    style_mixing: float = 0.0,
    batch_size: int = 16,
    chunk_size: int = 500,
    num_workers: int = 2,
    render_in_workers: bool = True,
    config: Mapping[str, Any] | None = None,
    progress: bool = True,
    on_chunk_written: Callable[[int], None] | None = None,
) -> Path:
    """Write the dataset of seeds [seed_start, seed_start + num_samples) to `out` (resumable).

    Args:
        generator: a `backbones.generator.Generator`.
        detector: a `backbones.landmarks.LandmarkDetector` (picklable when num_workers > 0); one with
            `needs_calibration` is calibrated on the images of seeds 0..7 first (whatever the run's seeds).
        out: the final ``.h5`` path; chunks go to ``<out>.parts/``.
        num_workers: spawned worker processes (0: everything in this process).
        render_in_workers: workers render and detect (CPU generators); False: this process renders
            and the workers only detect (a GPU generator).
        style_mixing: probability that a row of ws comes from a partner latent (`mix_styles`); needs
            `save_ws`, since only ws then describes the images.
        config: the data-changing settings to record in the metadata.
        on_chunk_written: called with the chunk index after each chunk is safely on disk.
    Returns:
        `out`. When `out` already holds this very dataset nothing is recomputed.
    """
    if batch_size < 1 or chunk_size < 1 or num_workers < 0:
        raise ValueError(
            f"need batch_size >= 1, chunk_size >= 1, num_workers >= 0; got {batch_size}, {chunk_size}, {num_workers}"
        )
    if not 0.0 <= style_mixing <= 1.0:
        raise UserError(f"style_mixing is a probability in [0, 1], got {style_mixing}")
    if style_mixing > 0 and not save_ws:
        raise UserError("style_mixing > 0 mixes the rows of ws, so only ws describes the images; add save_ws=true")
    out = Path(out)
    metadata = dataset_metadata(
        generator, detector, seed_start, num_samples, truncation_psi, noise_mode, save_ws, style_mixing, config or {}
    )
    fingerprint = config_digest(metadata)
    if out.exists():
        if read_metadata(out) == metadata:
            shutil.rmtree(Path(f"{out}.parts"), ignore_errors=True)
            return out
        raise UserError(f"{out} already holds a different dataset; delete it or choose another out=")
    parts_dir = Path(f"{out}.parts")
    try:
        parts_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(
            f"cannot create {parts_dir} ({error.strerror or error}); choose a writable out= or paths.work_dir"
        ) from error
    chunks = [
        Chunk(index, start, min(start + chunk_size, seed_start + num_samples))
        for index, start in enumerate(range(seed_start, seed_start + num_samples, chunk_size))
    ]
    chunk_paths = [parts_dir / f"chunk_{chunk.index:05d}.npz" for chunk in chunks]
    todo = [chunk for chunk, path in zip(chunks, chunk_paths) if read_chunk(path, fingerprint) is None]
    image_size = (generator.img_resolution, generator.img_resolution)
    done = num_samples - sum(chunk.stop - chunk.start for chunk in todo)
    bar = tqdm(
        total=num_samples,
        initial=done,
        unit="img",
        desc=f"sampling {detector.name}",
        disable=not progress,
        dynamic_ncols=True,
    )
    num_workers = num_workers if todo and (num_workers == 0 or can_spawn_workers()) else 0
    if todo and getattr(detector, "needs_calibration", False):  # before the workers receive their copies
        detector.calibrate(
            images_to_uint8(render_batch(generator, np.arange(CALIBRATION_SEEDS), truncation_psi, False, noise_mode)[1])
        )
    runner = BatchRunner(
        generator,
        detector,
        dict(truncation_psi=truncation_psi, save_ws=save_ws, noise_mode=noise_mode, style_mixing=style_mixing),
        num_workers,
        render_in_workers,
    )
    window = 2 * max(num_workers, 1)
    pending: deque = deque()
    collected: dict[int, list] = {}
    counts = {"seen": 0, "found": 0}

    def collect() -> None:
        chunk, rows, future = pending.popleft()
        result = future.result()
        if rows is None:
            rows, result = result
        collected.setdefault(chunk.index, []).append((rows, result))
        counts["seen"] += len(result[1])
        counts["found"] += int(result[1].sum())
        bar.update(len(result[1]))
        bar.set_postfix(found=f"{counts['found'] / counts['seen']:.1%}")
        if sum(len(part[0]["seeds"]) for part in collected[chunk.index]) == chunk.stop - chunk.start:
            write_chunk_atomic(
                chunk_paths[chunk.index], finish_chunk(chunk, collected.pop(chunk.index), image_size), fingerprint
            )
            if on_chunk_written is not None:
                on_chunk_written(chunk.index)

    try:
        for chunk in todo:
            for start in range(chunk.start, chunk.stop, batch_size):
                seeds = np.arange(start, min(start + batch_size, chunk.stop), dtype=np.int64)
                pending.append((chunk, *runner.submit(seeds)))
                while len(pending) > window:
                    collect()
        while pending:
            collect()
    except BrokenProcessPool as error:
        raise UserError(
            f"a detection worker died ({error}); re-run with num_workers=0 to see the detector's own error"
        ) from error
    finally:
        runner.shutdown()
        bar.close()
    write_samples_atomic(out, (load_chunk(path, fingerprint) for path in chunk_paths), num_samples, metadata)
    shutil.rmtree(parts_dir, ignore_errors=True)
    return out


# ---------------------------------------------------------------------------------------------
def summarise(path: Path) -> dict[str, Any]:
    """Detection rate and, where the dataset holds ``truth/landmarks`` for 68 points, median errors."""
    samples = read_samples(path)
    summary: dict[str, Any] = {
        "path": str(path),
        "num_samples": len(samples),
        "num_found": int(samples.found.sum()),
        "detection_rate": float(samples.found.mean()),
    }
    truth = samples.truth.get("landmarks")
    if truth is not None and samples.landmarks.shape[1] == truth.shape[1] and samples.found.any():
        detected, true = torch.from_numpy(samples.landmarks[samples.found]), torch.from_numpy(truth[samples.found])
        image_size = tuple(samples.metadata["image_size"])
        summary.update(
            median_error_px=float(landmark_distances(detected, true, image_size).mean(-1).median()),
            nme=float(nme(detected, true, image_size).mean()),
        )
    return summary


def save_preview(generator, path: Path, dataset: Path, truncation_psi: float, noise_mode: str = "const") -> Path:
    """A 4x4 grid of the dataset's first samples with their detected landmarks (green dots; red frame: no face), as PNG."""
    from PIL import Image, ImageDraw

    samples = read_samples(dataset)
    count = min(PREVIEW_GRID * PREVIEW_GRID, len(samples))
    _, images = render_batch(generator, samples.seeds[:count], truncation_psi, False, noise_mode)
    tiles = images_to_uint8(images)
    tile_size = min(256, tiles.shape[1])
    grid = Image.new("RGB", (PREVIEW_GRID * tile_size, PREVIEW_GRID * tile_size))
    for index in range(count):
        tile = Image.fromarray(tiles[index]).resize((tile_size, tile_size))
        draw = ImageDraw.Draw(tile)
        if samples.found[index]:
            for x, y in samples.landmarks[index] * tile_size:
                draw.ellipse((x - 1.5, y - 1.5, x + 1.5, y + 1.5), fill=(0, 255, 0))
        else:
            draw.rectangle((0, 0, tile_size - 1, tile_size - 1), outline=(255, 0, 0), width=3)
            draw.text((6, 6), "no face", fill=(255, 0, 0))
        grid.paste(tile, ((index % PREVIEW_GRID) * tile_size, (index // PREVIEW_GRID) * tile_size))
    with atomic_path(path) as tmp:
        grid.save(tmp, format="PNG")
    return path


def render_in_workers(render_in: str, generator) -> bool:
    """`render_in` "workers" | "main" | "auto" (workers when the generator lives on the CPU)."""
    if render_in not in ("auto", "main", "workers"):
        raise ValueError(f"render_in must be auto, main or workers, got {render_in!r}")
    if render_in == "auto":
        return generator.w_avg.device.type == "cpu"
    return render_in == "workers"


def run(cfg: DictConfig) -> dict[str, Any]:
    """Sample the dataset `cfg` describes (see conf/sample.yaml); returns `summarise`'s numbers."""
    check_config_complete(cfg)
    seed_start, seed_stop = shard_seed_range(cfg.seed, cfg.num_samples, cfg.shard, cfg.num_shards)
    detector = build(cfg.landmarks, "landmark detector")
    generator = build(cfg.generator, "generator")
    out = Path(cfg.out) if cfg.out is not None else default_dataset_path(cfg, generator)
    sample_dataset(
        generator,
        detector,
        out,
        seed_start,
        seed_stop - seed_start,
        truncation_psi=cfg.truncation_psi,
        noise_mode=cfg.noise_mode,
        save_ws=cfg.save_ws,
        style_mixing=float(cfg.style_mixing),
        batch_size=cfg.batch_size,
        chunk_size=cfg.chunk_size,
        num_workers=cfg.num_workers,
        render_in_workers=render_in_workers(cfg.render_in, generator),
        config=data_config(cfg),
        progress=cfg.progress,
    )
    summary = summarise(out)
    if cfg.preview:
        summary["preview"] = str(
            save_preview(generator, out.with_suffix(".png"), out, cfg.truncation_psi, cfg.noise_mode)
        )
    print(format_summary(summary))
    return summary


def format_summary(summary: Mapping[str, Any]) -> str:
    """Human-readable lines of `summarise`'s numbers."""
    lines = [
        f"dataset: {summary['path']}",
        f"detection rate: {summary['detection_rate']:.2%} ({summary['num_found']} of {summary['num_samples']})",
    ]
    if "median_error_px" in summary:
        lines.append(
            f"landmark error vs ground truth: median {summary['median_error_px']:.2f} px, NME {summary['nme']:.2%}"
        )
    if "preview" in summary:
        lines.append(f"preview: {summary['preview']}")
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path="../conf", config_name="sample")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error():
        run(cfg)


if __name__ == "__main__":
    launch("sampling.sample", "sample")
