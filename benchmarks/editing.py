"""Editing speed: linear edits per second (excluding G) and gradient edit time.

    python -m benchmarks.editing                      # regressor-only numbers, about a minute on 2 cores
    python -m benchmarks.editing --generator-steps 10 # adds gradient steps through the synthetic
                                                      # generator and dlib's identity network
    python -m benchmarks.editing --transfer generator=synthetic regressor_path=<regressor.pt>
                                                      # adds end-to-end `editing.transfer` time

The regressor is an ensemble of `--members` paper-sized AttributeMLPs (512 -> 3 x 512 -> 8 + K,
K = 12, ReLU; 5 as `conf/regressor/mlp.yaml`, 1 the paper's) with random weights over a random
NRSfM model: speed does not depend on training. Each edit asks for
delta.yaw = 10 degrees with everything else held at q0. Prints one line per measurement.
Run it as a module (`-m`): as a script, its own name would hide the `editing` package.
"""

from __future__ import annotations

import argparse
import time

import torch

from editing.attributes import edit_target
from editing.gradient import gradient_edit
from editing.linear import linear_edit
from nrsfm.model import NRSfMModel
from regressor.export import AttributeRegressor
from regressor.mlp import AttributeMLP

LATENT_DIM = 512
NUM_BASIS = 12
NUM_LANDMARKS = 68


def paper_sized_regressor(
    latent_dim: int = LATENT_DIM, num_basis: int = NUM_BASIS, seed: int = 0, num_members: int = 1
) -> AttributeRegressor:
    """Random AttributeRegressor with `num_members` of the paper's MLP over a random NRSfM model (float32)."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.linalg.qr(torch.randn(NUM_LANDMARKS, num_basis, generator=g))[0].T
    directions = torch.nn.functional.normalize(torch.randn(num_basis, 3, generator=g), dim=-1)
    q_dim = 8 + num_basis
    q_mean = torch.zeros(q_dim)
    q_mean[[0, 2]] = 1.0
    nrsfm = NRSfMModel(
        0.3 * torch.randn(NUM_LANDMARKS, 3, generator=g), directions, basis, q_mean, torch.full((q_dim,), 0.3)
    )
    torch.manual_seed(seed)
    mlp = AttributeMLP(latent_dim, q_dim, head_scale=1.0, num_members=num_members)
    return AttributeRegressor(mlp, nrsfm, "w", (latent_dim,)).eval().requires_grad_(False)


def seconds(function, repeats: int) -> float:
    """Median wall time of `repeats` calls after one warm-up call."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def benchmark_linear(regressor: AttributeRegressor, batch_sizes: list[int], repeats: int) -> None:
    for batch in batch_sizes:
        latents = torch.randn(batch, LATENT_DIM)
        target = edit_target(regressor(latents), {"delta.yaw": 10}, regressor.nrsfm)
        spread = torch.diag(torch.linspace(0.1, 2.0, LATENT_DIM))  # a latent metric costs two (P, d) products per step
        for num_steps, metric in ((1, None), (3, None), (3, spread)):
            elapsed = seconds(
                lambda: linear_edit(regressor, latents, target, num_steps=num_steps, damping=0.1, metric=metric),
                repeats,
            )
            label = "spread" if metric is not None else "raw"
            print(
                f"linear  batch={batch:4d} num_steps={num_steps} metric={label:6s}: {batch / elapsed:9.1f} edits/s "
                f"({elapsed * 1e3:.1f} ms per batch, excluding G)"
            )


def benchmark_gradient(regressor: AttributeRegressor, batch_sizes: list[int], num_steps: int) -> None:
    for batch in batch_sizes:
        latents = torch.randn(batch, LATENT_DIM)
        target = edit_target(regressor(latents), {"delta.yaw": 10}, regressor.nrsfm)
        elapsed = seconds(lambda: gradient_edit(regressor, latents, target, num_steps=num_steps, lambda_id=0.0), 1)
        print(
            f"gradient batch={batch:4d} steps={num_steps}: {elapsed:.2f} s per batch (regressor only, lambda_id=0, excluding G)"
        )


def benchmark_gradient_through_generator(batch: int, num_steps: int, resolution: int, num_members: int) -> None:
    from backbones.identity.dlib_identity import DlibIdentity
    from backbones.synthetic.generator import SyntheticGenerator

    generator = SyntheticGenerator(img_resolution=resolution).freeze()
    identity = DlibIdentity(on_missing="centre")
    regressor = paper_sized_regressor(latent_dim=generator.w_dim, num_members=num_members)
    latents = generator.mapping(generator.z_from_seeds(range(batch)))[:, 0]
    target = edit_target(regressor(latents), {"delta.yaw": 10}, regressor.nrsfm)
    start = time.perf_counter()
    gradient_edit(
        regressor, latents, target, num_steps=num_steps, lambda_id=0.01, generator=generator, identity=identity
    )
    elapsed = time.perf_counter() - start
    print(
        f"gradient batch={batch:4d} steps={num_steps}: {elapsed:.2f} s through the synthetic generator ({resolution} px) "
        f"and dlib identity = {elapsed / num_steps:.2f} s per step, {100 * elapsed / num_steps:.0f} s per 100 steps"
    )


def benchmark_transfer(overrides: list[str]) -> None:
    """Wall time of `editing.transfer.run` with conf/transfer.yaml and `overrides` (includes loading,
    the edit, rendering and writing; with no regressor_path it includes building the pipeline)."""
    from hydra import compose, initialize_config_module

    from editing import transfer

    with initialize_config_module(config_module="conf", version_base="1.3"):
        cfg = compose(config_name="transfer", overrides=overrides)
    start = time.perf_counter()
    transfer.run(cfg)
    print(f"transfer end to end ({' '.join(overrides)}): {time.perf_counter() - start:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 256])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--gradient-steps", type=int, default=100, help="gradient steps excluding G (0: skip)")
    parser.add_argument("--generator-steps", type=int, default=0, help="gradient steps through G (0: skip)")
    parser.add_argument("--generator-batch", type=int, default=4)
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument(
        "--transfer", nargs="*", default=None, help="overrides for conf/transfer.yaml; times editing.transfer"
    )
    parser.add_argument(
        "--members", type=int, default=5, help="MLPs in the regressor ensemble (1: the paper's single MLP)"
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads (0: torch's default); 1 is steadier on a shared machine"
    )
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.members} regressor member(s)")
    regressor = paper_sized_regressor(num_members=args.members)
    benchmark_linear(regressor, args.batch_sizes, args.repeats)
    if args.gradient_steps > 0:
        benchmark_gradient(regressor, args.batch_sizes, args.gradient_steps)
    if args.generator_steps > 0:
        benchmark_gradient_through_generator(args.generator_batch, args.generator_steps, args.resolution, args.members)
    if args.transfer is not None:
        benchmark_transfer(args.transfer)


if __name__ == "__main__":
    main()
