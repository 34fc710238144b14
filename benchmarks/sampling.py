"""Throughput and accuracy of the sampling stage at several image resolutions and worker counts.

    python -m benchmarks.sampling [override ...] [--resolution 256 512 1024] [--workers 1 2] [--num-samples 96]
                                  [--generator synthetic] [--landmarks dlib] [--render-in workers main]
                                  [--render-ms MS] [--accuracy-only]

Prints one line per (resolution, workers, render_in), for scripts to read:

    resolution=1024 workers=2 render_in=workers render_only_fps=... detect_only_fps=... end_to_end_fps=... end_to_end_steady_fps=... median_px_vs_full=... nme=... nme_full=... median_nme=... median_nme_full=... found=... found_full=... search_factor=... worker_start_s=...

- render_only_fps: `workers` processes render the seeds (and convert them to uint8), nothing else;
- detect_only_fps: `workers` processes detect on the already rendered uint8 images, which each
  received when it started (the detection alone, as when the workers render too);
- end_to_end_fps: the whole stage, `sampling.sample.sample_dataset` with `workers` processes that render
  and detect (``render_in=workers``) or with this process rendering and the workers detecting
  (``render_in=main``, as for a GPU generator), writing the HDF5 file; it includes starting the
  workers, the other two rates do not; end_to_end_steady_fps: the same run from its first finished
  batch to its last (without the start-up), to compare with render_only_fps;
- median_px_vs_full: median over the faces found by both of the mean distance in pixels between the
  configured detector's landmarks and those of the same detector searching the full-resolution
  image (``landmarks.search_size=null landmarks.search_face_px=null``, not aligned);
- nme, nme_full: `nme` against the generator's true landmarks (generators with ``ground_truth``,
  68-point detectors), for the configured and the full-resolution search (median_nme, median_nme_full:
  the medians over faces of the per-face error); found, found_full: detection rates;
- search_factor: how much the box search shrinks these images (after the detector's calibration on
  seeds 0..7, as the sampling stage does it);
- worker_start_s: seconds to start the rendering workers (the end-to-end time includes about as much).
``--accuracy-only`` prints resolution and the accuracy columns only (no worker pools).

``--render-ms MS`` measures the overlap for a generator that is slow to render without using the
CPU, such as one on a GPU: the rates (not the accuracy) then come from `SlowRenderer`, a stand-in that
only exists in this benchmark: each image takes MS milliseconds of sleep and is one of 8 faces
pre-rendered by the configured generator. Every rendering process sleeps on its own, so
render_only_fps is `workers` x 1000 / MS, while one GPU renders for one process: compare
``render_in=main`` (one renderer, ceiling 1000 / MS) with detect_only_fps.
Extra arguments are Hydra overrides of the sample config (e.g. ``landmarks.aligned=true``); give them before
the options that take several values, which would otherwise read them as values.
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_module

from backbones.landmarks.base import images_to_uint8
from common.cli import build
from common.landmarks import nme
from sampling.dataset import TRUTH_PREFIX
from sampling.sample import CALIBRATION_SEEDS, render_batch, sample_dataset

WARM_UP_S = 1.0
NUM_SLOW_FACES = 8
_worker: dict = {}


class SlowRenderer:
    """Benchmark-only stand-in for a generator that renders off the CPU (``--render-ms``), never part of
    the product: `synthesis` sleeps `render_ms` per image and returns `faces` (K, H, W, 3) uint8 in
    turn as (B, 3, H, W) in [-1, 1], whatever the latents; seeds and latents are the wrapped generator's."""

    def __init__(self, generator, faces: np.ndarray, render_ms: float):
        self.generator, self.faces, self.render_ms = generator, torch.from_numpy(faces), float(render_ms)
        self.name, self.img_resolution = f"{generator.name}-slow", generator.img_resolution
        self.z_dim, self.num_ws, self.w_avg = generator.z_dim, generator.num_ws, generator.w_avg

    def checksum(self) -> str:
        return self.generator.checksum()

    def z_from_seeds(self, seeds) -> torch.Tensor:
        return self.generator.z_from_seeds(seeds)

    def mapping(self, z: torch.Tensor, truncation_psi: float = 1.0) -> torch.Tensor:
        return self.generator.mapping(z, truncation_psi)

    def synthesis(self, ws: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        time.sleep(self.render_ms / 1000 * len(ws))
        faces = self.faces[torch.arange(len(ws)) % len(self.faces)]
        return faces.permute(0, 3, 1, 2).float() / 127.5 - 1.0


def per_face_nme(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(N,) the project's NME (`common.landmarks.nme`) of each face; pred, truth (N, 68, 2) pixels."""
    return nme(torch.from_numpy(pred).double(), torch.from_numpy(truth).double()).numpy()


def _start(generator, detector, images) -> None:
    torch.set_num_threads(1)
    _worker.update(generator=generator, detector=detector, images=images)


def _render(seeds: np.ndarray) -> int:
    images_to_uint8(render_batch(_worker["generator"], seeds, 1.0, False)[1])
    return len(seeds)


def _detect(rows: slice) -> int:
    return len(_worker["detector"].detect_uint8(_worker["images"][rows]))


def _wait(seconds: float) -> None:
    time.sleep(seconds)


def pool_rate(
    num_workers: int, function, batches: list, generator=None, detector=None, images=None
) -> tuple[float, float]:
    """(items per second of `function` over `batches` in `num_workers` spawned processes once all have
    started, seconds it took to start them, load their models and receive `images`)."""
    start = time.perf_counter()
    with ProcessPoolExecutor(
        num_workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_start,
        initargs=(generator, detector, images),
    ) as pool:
        list(pool.map(_wait, [WARM_UP_S] * num_workers))  # one each: every worker has started and loaded its models
        start_up_s = time.perf_counter() - start - WARM_UP_S
        start = time.perf_counter()
        count = sum(pool.map(function, batches))
        return count / (time.perf_counter() - start), start_up_s


def end_to_end_rates(generator, detector, args, num_workers: int, render_in: str) -> tuple[float, float]:
    """(faces per second of the whole `sample_dataset` run, faces per second from its first written
    chunk to its last); one chunk per batch, so that the chunks mark the batches as they finish."""
    written = []
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        sample_dataset(
            generator,
            detector,
            Path(folder) / "samples.h5",
            0,
            args.num_samples,
            batch_size=args.batch_size,
            chunk_size=args.batch_size,
            num_workers=num_workers,
            render_in_workers=render_in == "workers",
            progress=False,
            on_chunk_written=lambda _: written.append(time.perf_counter()),
        )
        total_s = time.perf_counter() - start
    first_batch = min(args.batch_size, args.num_samples)
    steady_s = written[-1] - written[0]
    steady_fps = (args.num_samples - first_batch) / steady_s if steady_s > 0 else float("nan")
    return args.num_samples / total_s, steady_fps


def compose_config(args, resolution: int, extra: list[str]):
    overrides = [
        f"generator={args.generator}",
        f"landmarks={args.landmarks}",
        f"++generator.img_resolution={resolution}",
        *args.overrides,
        *extra,
    ]
    with initialize_config_module(config_module="conf", version_base="1.3"):
        return compose(config_name="sample", overrides=overrides)


def calibrated(detector, generator):
    """The detector, calibrated on seeds 0..7 the way `sample_dataset` does it when it needs calibration."""
    if getattr(detector, "needs_calibration", False):
        detector.calibrate(images_to_uint8(render_batch(generator, np.arange(CALIBRATION_SEEDS), 1.0, False)[1]))
    return detector


def full_resolution_overrides(landmarks) -> list[str]:
    """Overrides that make the configured box detector search the full image, without the aligned box."""
    keys = {"search_size": "null", "search_face_px": "null", "aligned": "false"}
    return [f"landmarks.{key}={value}" for key, value in keys.items() if key in landmarks]


def accuracy(detector, reference, images: np.ndarray, truth: np.ndarray | None) -> dict[str, float]:
    """median_px_vs_full, nme, nme_full, their medians over faces, found and found_full of `detector` on uint8 images (N, R, R, 3)."""
    ours, full = detector.detect_uint8(images), reference.detect_uint8(images)
    both = (ours.found & full.found).numpy()
    landmarks, full_landmarks = ours.landmarks.numpy(), full.landmarks.numpy()
    distance = np.linalg.norm(landmarks[both] - full_landmarks[both], axis=-1).mean(-1)
    result = {"median_px_vs_full": float(np.median(distance)) if both.any() else float("nan")}
    if truth is not None and landmarks.shape[1] == 68:
        found, full_found = ours.found.numpy(), full.found.numpy()
        result["nme"] = float(per_face_nme(landmarks[found], truth[found]).mean())
        result["nme_full"] = float(per_face_nme(full_landmarks[full_found], truth[full_found]).mean())
        result["median_nme"] = float(np.median(per_face_nme(landmarks[found], truth[found])))
        result["median_nme_full"] = float(np.median(per_face_nme(full_landmarks[full_found], truth[full_found])))
    return {**result, "found": float(ours.found.float().mean()), "found_full": float(full.found.float().mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--num-samples", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--generator", default="synthetic")
    parser.add_argument("--landmarks", default="dlib")
    parser.add_argument(
        "--render-in",
        choices=["workers", "main"],
        nargs="+",
        default=["workers"],
        help="end to end: workers render and detect, or this process renders and the workers detect",
    )
    parser.add_argument(
        "--render-ms",
        type=float,
        default=None,
        help="rates with a stand-in generator taking this many ms per image off the CPU (see the docstring)",
    )
    parser.add_argument("--accuracy-only", action="store_true", help="print the accuracy columns only, no rates")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the sample config")
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds = np.arange(args.num_samples, dtype=np.int64)
    batches = [seeds[i : i + args.batch_size] for i in range(0, len(seeds), args.batch_size)]
    for resolution in args.resolution:
        cfg = compose_config(args, resolution, [])
        generator = build(cfg.generator, "generator")
        detector = calibrated(build(cfg.landmarks, "landmark detector"), generator)
        reference = detector
        if full_resolution_overrides(cfg.landmarks):
            full = compose_config(args, resolution, full_resolution_overrides(cfg.landmarks))
            reference = build(full.landmarks, "full-resolution detector")
        rendered = [render_batch(generator, batch, 1.0, False) for batch in batches]
        images = np.concatenate([images_to_uint8(batch_images) for _, batch_images in rendered])
        truth = None
        if TRUTH_PREFIX + "landmarks" in rendered[0][0]:
            truth = np.concatenate([rows[TRUTH_PREFIX + "landmarks"] for rows, _ in rendered]) * np.array(
                [resolution, resolution], np.float32
            )
        scores = {
            **{key: f"{value:.4g}" for key, value in accuracy(detector, reference, images, truth).items()},
            "search_factor": detector.search_factor(resolution, resolution)
            if hasattr(detector, "search_factor")
            else 1,
        }
        if args.accuracy_only:
            print(" ".join(f"{key}={value}" for key, value in {"resolution": resolution, **scores}.items()), flush=True)
            continue
        if args.render_ms is not None:
            generator = SlowRenderer(generator, images[:NUM_SLOW_FACES], args.render_ms)
        image_batches = [slice(i, i + args.batch_size) for i in range(0, len(images), args.batch_size)]
        for num_workers in args.workers:
            render_fps, start_up_s = pool_rate(num_workers, _render, batches, generator=generator)
            detect_fps, _ = pool_rate(num_workers, _detect, image_batches, detector=detector, images=images)
            for render_in in args.render_in:
                end_to_end_fps, steady_fps = end_to_end_rates(generator, detector, args, num_workers, render_in)
                fields = {
                    "resolution": resolution,
                    "workers": num_workers,
                    "render_in": render_in,
                    **({"render_ms": f"{args.render_ms:g}"} if args.render_ms is not None else {}),
                    "render_only_fps": f"{render_fps:.2f}",
                    "detect_only_fps": f"{detect_fps:.1f}",
                    "end_to_end_fps": f"{end_to_end_fps:.2f}",
                    "end_to_end_steady_fps": f"{steady_fps:.2f}",
                    **scores,
                    "worker_start_s": f"{start_up_s:.1f}",
                }
                print(" ".join(f"{key}={value}" for key, value in fields.items()), flush=True)


if __name__ == "__main__":
    main()
