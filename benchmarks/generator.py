"""Images per second of the synthetic generator (`generator=synthetic`) on this machine.

Usage: python -m benchmarks.generator [--resolution 256] [--batch-sizes 1 32] [--repeats 3] [--threads N]
Prints one line per batch size: forward (no gradients) images/s (mean over the repeats after a
warm-up), and the time of one forward + backward to w for the same batch. The machine's load
average is printed too: on a shared CPU, `--threads 1` avoids torch's threads waiting on each other.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from backbones.synthetic import SyntheticGenerator


def images_per_second(generator: SyntheticGenerator, batch_size: int, repeats: int) -> tuple[float, float]:
    """(forward images/s, seconds of one forward + backward) for `batch_size` images."""
    ws = generator.sample(batch_size, seed=0)
    with torch.no_grad():
        generator.synthesis(ws)  # warm-up
        start = time.perf_counter()
        for _ in range(repeats):
            generator.synthesis(ws)
        forward = (time.perf_counter() - start) / repeats
    latent = ws.clone().requires_grad_(True)
    start = time.perf_counter()
    generator.synthesis(latent).square().mean().backward()
    backward = time.perf_counter() - start
    return batch_size / forward, backward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    generator = SyntheticGenerator(img_resolution=args.resolution)
    print(
        f"synthetic generator {args.resolution}x{args.resolution}, {generator.vertices.shape[0]} vertices, "
        f"{generator.faces.shape[0]} triangles, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    for batch_size in args.batch_sizes:
        rate, backward = images_per_second(generator, batch_size, args.repeats)
        print(f"batch {batch_size:3d}: {rate:7.1f} images/s forward; forward+backward to w {backward:.3f} s")


if __name__ == "__main__":
    main()
