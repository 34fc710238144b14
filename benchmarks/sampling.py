"""Throughput of the sampling stage: samples per second at 256x256 with 1 and 2 detection workers.

    python benchmarks/sampling.py [--num-samples 96] [--generator synthetic] [--landmarks dlib]

Prints, for the configured generator and detector: rendering alone, detection alone in the main
process, and the whole stage (`sampling.sample.sample_dataset`: render + detect + chunk writes + HDF5
assembly) all in the main process, and with 1 and 2 spawned workers that render and detect, and with
2 workers that only detect (start-up of the workers included).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_module

from backbones.landmarks.base import images_to_uint8
from sampling.dataset import read_samples
from common.cli import build
from sampling.sample import render_batch, sample_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-samples", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--generator", default="synthetic")
    parser.add_argument("--landmarks", default="dlib")
    parser.add_argument("--resolution", type=int, default=256)
    args = parser.parse_args()
    with initialize_config_module(config_module="conf", version_base="1.3"):
        overrides = [f"generator={args.generator}", f"landmarks={args.landmarks}", f"++generator.img_resolution={args.resolution}"]
        cfg = compose(config_name="sample", overrides=overrides)
    generator = build(cfg.generator, "generator")
    detector = build(cfg.landmarks, "landmark detector")
    seeds = np.arange(args.num_samples, dtype=np.int64)
    print(f"generator={generator.name} ({generator.img_resolution}x{generator.img_resolution}) landmarks={detector.name} samples={args.num_samples} batch={args.batch_size}")

    start = time.perf_counter()
    images = [render_batch(generator, seeds[i : i + args.batch_size], 1.0, False)[1] for i in range(0, len(seeds), args.batch_size)]
    render_s = time.perf_counter() - start
    print(f"render only (main process):  {args.num_samples / render_s:7.2f} samples/s")

    pixels = np.concatenate([images_to_uint8(batch) for batch in images])
    start = time.perf_counter()
    found = detector.detect_uint8(pixels).found
    detect_s = time.perf_counter() - start
    print(f"detect only (main process):  {args.num_samples / detect_s:7.2f} samples/s  (found {found.float().mean():.1%})")

    for num_workers, in_workers in ((0, False), (1, True), (2, True), (2, False)):
        with tempfile.TemporaryDirectory() as folder:
            out = Path(folder) / "samples.h5"
            start = time.perf_counter()
            sample_dataset(generator, detector, out, 0, args.num_samples, batch_size=args.batch_size, chunk_size=args.num_samples,
                           num_workers=num_workers, render_in_workers=in_workers, progress=False)
            total_s = time.perf_counter() - start
            rate = read_samples(out).found.mean()
        where = "all in the main process" if num_workers == 0 else f"{num_workers} worker(s), render in {'workers' if in_workers else 'main'}"
        print(f"whole stage, {where:<34} {args.num_samples / total_s:7.2f} samples/s  (found {rate:.1%}, {total_s:.1f} s)")

if __name__ == "__main__":
    main()
