"""How well dlib's face-recognition network tells synthetic identities apart.

Same identity: ws rows 0-1 (identity shape, appearance) kept, rows 2-5 (expression, rotation,
framing, lighting) taken from another seed. Different identities: all pairs of the first set.
Prints median descriptor distances, the fraction of different-identity pairs above dlib's usual
same-person threshold 0.6, and the AUC (probability that a random different-identity pair is
farther apart than a random same-identity pair).

Usage: python -m benchmarks.synthetic_identity [--num-identities 24] [--seed 300]
"""

from __future__ import annotations

import argparse

import dlib
import numpy as np
import torch

from backbones.landmarks.base import images_to_uint8
from backbones.landmarks.boxes import HogFaceFinder
from backbones.landmarks.dlib import PREDICTOR_FILE, face_recognition_models_file
from backbones.synthetic import SyntheticGenerator

RECOGNITION_FILE = "dlib_face_recognition_resnet_model_v1.dat"


def descriptors(images: np.ndarray) -> np.ndarray:
    """(B, H, W, 3) uint8 -> (B, 128) dlib descriptors, NaN rows where no face is found."""
    finder = HogFaceFinder(upsample=1)
    predictor = dlib.shape_predictor(str(face_recognition_models_file(PREDICTOR_FILE)))
    network = dlib.face_recognition_model_v1(str(face_recognition_models_file(RECOGNITION_FILE)))
    rows = []
    for image in images:
        face = finder.find(image)
        if face is None:
            rows.append(np.full(128, np.nan))
            continue
        rows.append(np.array(network.compute_face_descriptor(image, predictor(image, face[0]))))
    return np.stack(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-identities", type=int, default=24)
    parser.add_argument("--seed", type=int, default=300)
    args = parser.parse_args()
    generator = SyntheticGenerator()
    ws = generator.sample(args.num_identities, seed=args.seed)
    conditions = generator.sample(args.num_identities, seed=args.seed + 100_000)
    same_identity = torch.cat([ws[:, :2], conditions[:, 2:]], 1)
    with torch.no_grad():
        first = descriptors(images_to_uint8(generator.synthesis(ws)))
        second = descriptors(images_to_uint8(generator.synthesis(same_identity)))
    same = np.linalg.norm(first - second, axis=1)
    pairs = np.linalg.norm(first[:, None] - first[None], axis=-1)[~np.eye(args.num_identities, dtype=bool)]
    same, different = same[np.isfinite(same)], pairs[np.isfinite(pairs)]
    auc = float((different[:, None] > same[None]).mean())
    print(
        f"{args.num_identities} identities: same identity, new pose/expression/light: median distance {np.median(same):.3f} ({len(same)} pairs)"
    )
    print(
        f"different identities: median distance {np.median(different):.3f}, {np.mean(different > 0.6):.1%} above 0.6 ({len(different)} pairs)"
    )
    print(f"AUC different > same: {auc:.3f}")


if __name__ == "__main__":
    main()
