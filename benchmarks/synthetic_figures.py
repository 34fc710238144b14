"""Make the README figures of the synthetic generator (`generator=synthetic`):
docs/synthetic_grid.png (16 samples, seeds 0-15, truncation 1) and docs/synthetic_yaw_sweep.png (one
face turned from -40 to +40 degrees yaw; bottom row: the ground-truth 68 landmarks in green).

Usage: python -m benchmarks.synthetic_figures [--out docs] [--sweep-seed 3]
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from backbones.synthetic import SyntheticGenerator

SWEEP_YAWS_DEG = (-40.0, -30.0, -20.0, -10.0, 0.0, 10.0, 20.0, 30.0, 40.0)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [-1, 1] -> (B, H, W, 3) uint8."""
    return ((images.clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def tile(images: np.ndarray, num_rows: int) -> np.ndarray:
    """(B, H, W, 3) with B = num_rows * num_cols -> (num_rows * H, num_cols * W, 3)."""
    num_images, height, width, _ = images.shape
    num_cols = num_images // num_rows
    return (
        images.reshape(num_rows, num_cols, height, width, 3)
        .transpose(0, 2, 1, 3, 4)
        .reshape(num_rows * height, num_cols * width, 3)
    )


def draw_landmarks(images: np.ndarray, landmarks: torch.Tensor) -> np.ndarray:
    """Green 3x3 dots: images (B, H, W, 3) uint8, landmarks (B, L, 2) pixels -> a copy."""
    drawn = images.copy()
    num_images, height, width, _ = images.shape
    points = landmarks.round().long()
    batch = torch.arange(num_images)[:, None].expand_as(points[..., 0])
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            x = (points[..., 0] + dx).clamp(0, width - 1)
            y = (points[..., 1] + dy).clamp(0, height - 1)
            drawn[batch.numpy(), y.numpy(), x.numpy()] = (40, 255, 40)
    return drawn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--sweep-seed", type=int, default=3)
    args = parser.parse_args()
    generator = SyntheticGenerator()
    with torch.no_grad():
        grid = to_uint8(generator.synthesis(generator.sample(16, seed=0)))
        params = generator.scene(generator.sample(1, seed=args.sweep_seed).expand(len(SWEEP_YAWS_DEG), -1, -1))
        rotation = torch.zeros(len(SWEEP_YAWS_DEG), 3)
        rotation[:, 1] = torch.tensor(SWEEP_YAWS_DEG)
        params = dataclasses.replace(params, rotation_deg=rotation)
        sweep = to_uint8(generator.render(params))
        _, screen = generator.posed_vertices(params)
    args.out.mkdir(parents=True, exist_ok=True)
    Image.fromarray(tile(grid, 4)).save(args.out / "synthetic_grid.png", optimize=True)
    rows = np.concatenate([sweep, draw_landmarks(sweep, screen[:, :68])])
    Image.fromarray(tile(rows, 2)).save(args.out / "synthetic_yaw_sweep.png", optimize=True)
    print(f"wrote {args.out / 'synthetic_grid.png'} and {args.out / 'synthetic_yaw_sweep.png'}")


if __name__ == "__main__":
    main()
