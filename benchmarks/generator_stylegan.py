"""StyleGAN2 / StyleGAN3-T / StyleGAN3-R synthesis throughput on this machine (images per second).

    python -m benchmarks.generator_stylegan [--batches 1 8] [--repeats 2] [--resolution 256]
        [--channel-base 16384] [--channel-max 512] [--skip-large] [--device cpu] [--threads N]

Rows: the tiny NVIDIA reference networks (32x32, from tests/backbones/data/stylegan or
../shared/fixtures/stylegan; skipped when absent) and random-weight networks at --resolution with
NVIDIA's channel schedule (channel_base / channel_max; 16384 / 512 is NVIDIA's 256x256 setting for
StyleGAN2 and StyleGAN3-T; StyleGAN3-R uses twice the channel base and max, as NVIDIA's
train.py does), z_dim = w_dim = 512. Each row: mapping + synthesis (noise const), no gradients,
one warm-up call then --repeats timed calls; wall-clock images/s and CPU seconds per image. Also prints the max abs error of the tiny networks
against NVIDIA's stored images. Nothing is asserted. On a CPU shared with other jobs, --threads 1
avoids the large slowdowns of contended intra-op thread pools.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from backbones.stylegan import StyleGAN2Generator, StyleGAN3Generator
from backbones.stylegan.nvidia import build_generator, generator_kwargs
from backbones.stylegan.safe_pickle import PersistentRecord

REPOSITORY = Path(__file__).resolve().parents[1]
FIXTURE_DIRS = [
    REPOSITORY / "tests" / "backbones" / "data" / "stylegan",
    REPOSITORY.parent / "shared" / "fixtures" / "stylegan",
]


def throughput(generator, batch: int, repeats: int) -> str:
    """'batch B: X img/s (Y CPU s/img)': wall-clock rate and this process's CPU time per image
    (the CPU time stays meaningful when other jobs share the cores)."""
    z = generator.z_from_seeds(range(batch))
    with torch.no_grad():
        generator(z)
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(repeats):
            generator(z)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    num_images = batch * repeats
    return f"batch {batch}: {num_images / wall:8.3f} img/s ({cpu / num_images:7.3f} CPU s/img)"


def fixture_generator(name: str):
    """(generator, fixture arrays) of a tiny NVIDIA reference network, or None when absent."""
    for folder in FIXTURE_DIRS:
        path = folder / name
        if path.is_file():
            with np.load(path, allow_pickle=False) as arrays:
                fixture = {key: arrays[key] for key in arrays.files}
            init_kwargs = json.loads(str(fixture["init_kwargs_json"]))
            architecture = "stylegan3" if "networks_stylegan3" in str(fixture["class_name"]) else "stylegan2"
            record = PersistentRecord("Generator", 6, "", {"_init_kwargs": init_kwargs})
            state = {
                k.removeprefix("state/"): torch.from_numpy(v) for k, v in fixture.items() if k.startswith("state/")
            }
            return build_generator(architecture, generator_kwargs(record, architecture), state), fixture
    return None


def random_generators(resolution: int, channel_base: int, channel_max: int) -> dict:
    torch.manual_seed(0)
    return {
        "stylegan2": StyleGAN2Generator(512, 512, resolution, channel_base=channel_base, channel_max=channel_max),
        "stylegan3-t": StyleGAN3Generator(512, 512, resolution, channel_base=channel_base, channel_max=channel_max),
        "stylegan3-r": StyleGAN3Generator(
            512,
            512,
            resolution,
            channel_base=2 * channel_base,
            channel_max=2 * channel_max,
            conv_kernel=1,
            use_radial_filters=True,
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--channel-base", type=int, default=16384)
    parser.add_argument("--channel-max", type=int, default=512)
    parser.add_argument("--skip-large", action="store_true", help="only the tiny reference networks")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}")

    for name in ("sg2_tiny.npz", "sg3t_tiny.npz", "sg3r_tiny.npz"):
        loaded = fixture_generator(name)
        if loaded is None:
            print(f"{name}: fixture absent, skipped")
            continue
        generator, fixture = loaded
        generator = generator.freeze().to(args.device)
        with torch.no_grad():
            images = generator.synthesis(torch.from_numpy(fixture["ws"]).to(args.device)).cpu()
        error = float((images - torch.from_numpy(fixture["img"])).abs().max())
        rates = ", ".join(throughput(generator, b, args.repeats) for b in args.batches)
        print(
            f"tiny {generator.name:12s} 32x32  num_ws={generator.num_ws:2d}  max|ours - NVIDIA| = {error:.2e}  {rates}"
        )

    if args.skip_large:
        return
    for name, generator in random_generators(args.resolution, args.channel_base, args.channel_max).items():
        generator = generator.freeze().to(args.device)
        num_params = sum(p.numel() for p in generator.parameters())
        rates = ", ".join(throughput(generator, b, args.repeats) for b in args.batches)
        print(
            f"random {name:12s} {args.resolution}x{args.resolution}  params={num_params / 1e6:5.1f}M  {rates}",
            flush=True,
        )


if __name__ == "__main__":
    main()
