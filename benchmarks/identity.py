"""Identity networks on CPU: images per second, and same- vs different-person distances.

    python -m benchmarks.identity [--batch 8] [--repeats 3] [--num-pairs 12] [--resolution 256]

Prints (1) dlib identity throughput for `embed` (detection + differentiable chip + ResNet) and for
the ResNet alone on ready chips, with and without a backward pass; (2) 1 - cos distances between
renders of the synthetic generator: same person (same ws except the head-rotation row, i.e. a W+
pose edit) vs different persons (different seeds). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from backbones.identity.dlib_identity import DlibIdentity


def _rate(function, count: int, repeats: int) -> float:
    function()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    return count * repeats / (time.perf_counter() - start)


def _summary(values: np.ndarray) -> str:
    return (
        f"n={len(values)} mean={values.mean():.3f} median={np.median(values):.3f} "
        f"min={values.min():.3f} max={values.max():.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--num-pairs", type=int, default=12)
    parser.add_argument("--resolution", type=int, default=256)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")

    network = DlibIdentity(upsample=1, on_missing="centre")
    from backbones.synthetic import build_synthetic_generator

    generator = build_synthetic_generator(img_resolution=args.resolution)
    ws = generator.sample(max(args.batch, args.num_pairs * 2), seed=0)
    images = generator.synthesis(ws[: args.batch])
    chips = network.chip_pixels(images).detach()

    with torch.no_grad():
        print(
            f"dlib embed (detect + chip + ResNet), {args.resolution}px, batch {args.batch}: "
            f"{_rate(lambda: network.embed(images), args.batch, args.repeats):.1f} images/s"
        )
        print(
            f"dlib ResNet only on 150x150 chips, batch {args.batch}: "
            f"{_rate(lambda: network.network(chips), args.batch, args.repeats):.1f} images/s"
        )

    def forward_backward():
        x = images.clone().requires_grad_(True)
        network.embed(x).sum().backward()

    print(
        f"dlib embed + backward to images, batch {args.batch}: {_rate(forward_backward, args.batch, args.repeats):.1f} images/s"
    )

    # Same person: pose row (3) from another sample; different person: another seed altogether.
    count = args.num_pairs
    base = ws[:count]
    other = ws[count : 2 * count]
    posed = base.clone()
    posed[:, 3] = other[:, 3]
    with torch.no_grad():
        truth_base = generator.ground_truth(base)["rotation_deg"]
        truth_posed = generator.ground_truth(posed)["rotation_deg"]
        frames = generator.synthesis(torch.cat([base, posed, other]))
        points, found = network.detector.detect(frames)
        embeddings = network.embed(frames)
    found = found.view(3, count).all(0)
    e_base, e_posed, e_other = embeddings.view(3, count, -1)
    same = network.distance(e_base, e_posed)[found].numpy()
    different = network.distance(e_base, e_other)[found].numpy()
    yaw_change = (truth_posed - truth_base)[found].abs().max(dim=1).values.numpy()
    print(f"pairs with a face found in all three renders: {int(found.sum())} of {count}")
    print(f"same person, new pose (max |angle change| {_summary(yaw_change)} deg)")
    print(f"  1-cos same person:      {_summary(same)}")
    print(f"  1-cos different person: {_summary(different)}")
    print(f"  fraction of pairs with same < different: {(same < different).mean():.2f}")


if __name__ == "__main__":
    main()
