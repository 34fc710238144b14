"""Throughput and accuracy of the sampling stage at several image resolutions and worker counts.

    python -m benchmarks.sampling [--resolution 256 512 1024] [--workers 1 2] [--num-samples 96]
                                  [--generator synthetic] [--landmarks dlib] [--render-in workers|main] [override ...]

Prints one line per (resolution, workers), for scripts to read:

    resolution=1024 workers=2 render_only_fps=... detect_only_fps=... end_to_end_fps=... median_px_vs_full=... nme=... nme_full=... median_nme=... median_nme_full=... found=... worker_start_s=...

- render_only_fps: `workers` processes render the seeds (and convert them to uint8), nothing else;
- detect_only_fps: `workers` processes detect on the already rendered uint8 images, which each
  received when it started (the detection alone, as when the workers render too);
- end_to_end_fps: the whole stage, `sampling.sample.sample_dataset` with `workers` processes that render
  and detect (``--render-in main``: this process renders, the workers detect), writing the HDF5
  file; it includes starting the workers, the other two rates do not;
- median_px_vs_full: median over the faces found by both of the mean distance in pixels between the
  configured detector's landmarks and those of the same detector searching the full-resolution
  image (``landmarks.search_size=null``);
- nme, nme_full: `nme` against the generator's true landmarks (generators with ``ground_truth``,
  68-point detectors), for the configured and the full-resolution search (median_nme, median_nme_full:
  the medians over faces of the per-face error); found: detection rate;
- worker_start_s: seconds to start the rendering workers (the end-to-end time includes about as much).
Extra arguments are Hydra overrides of the sample config (e.g. ``landmarks.aligned=true``).
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
_worker: dict = {}


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
    """The detector, with its face box estimated the way `sample_dataset` does when it is an aligned one."""
    if getattr(detector, "needs_calibration", False):
        detector.calibrate(images_to_uint8(render_batch(generator, np.arange(CALIBRATION_SEEDS), 1.0, False)[1]))
    return detector


def accuracy(detector, reference, images: np.ndarray, truth: np.ndarray | None) -> dict[str, float]:
    """median_px_vs_full, nme, nme_full, their medians over faces and found of `detector` on uint8 images (N, R, R, 3)."""
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
    return {**result, "found": float(ours.found.float().mean())}


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
        default="workers",
        help="end to end: workers render and detect, or this process renders and the workers detect",
    )
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
        if "search_size" in cfg.landmarks:
            full = ["landmarks.search_size=null"] + (["landmarks.aligned=false"] if "aligned" in cfg.landmarks else [])
            reference = build(compose_config(args, resolution, full).landmarks, "full-resolution detector")
        rendered = [render_batch(generator, batch, 1.0, False) for batch in batches]
        images = np.concatenate([images_to_uint8(batch_images) for _, batch_images in rendered])
        truth = None
        if TRUTH_PREFIX + "landmarks" in rendered[0][0]:
            truth = np.concatenate([rows[TRUTH_PREFIX + "landmarks"] for rows, _ in rendered]) * np.array(
                [resolution, resolution], np.float32
            )
        scores = accuracy(detector, reference, images, truth)
        image_batches = [slice(i, i + args.batch_size) for i in range(0, len(images), args.batch_size)]
        for num_workers in args.workers:
            render_fps, start_up_s = pool_rate(num_workers, _render, batches, generator=generator)
            detect_fps, _ = pool_rate(num_workers, _detect, image_batches, detector=detector, images=images)
            with tempfile.TemporaryDirectory() as folder:
                start = time.perf_counter()
                sample_dataset(
                    generator,
                    detector,
                    Path(folder) / "samples.h5",
                    0,
                    args.num_samples,
                    batch_size=args.batch_size,
                    chunk_size=args.num_samples,
                    num_workers=num_workers,
                    render_in_workers=args.render_in == "workers",
                    progress=False,
                )
                end_to_end_fps = args.num_samples / (time.perf_counter() - start)
            fields = {
                "resolution": resolution,
                "workers": num_workers,
                "render_only_fps": f"{render_fps:.2f}",
                "detect_only_fps": f"{detect_fps:.1f}",
                "end_to_end_fps": f"{end_to_end_fps:.2f}",
                **{key: f"{value:.4g}" for key, value in scores.items()},
                "worker_start_s": f"{start_up_s:.1f}",
            }
            print(" ".join(f"{key}={value}" for key, value in fields.items()), flush=True)


if __name__ == "__main__":
    main()
