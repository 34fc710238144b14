"""Does the face path recover the head rotations from a dataset's exact landmarks?

    RANKONE_WORK_DIR=<work dir> python -m benchmarks.nrsfm_face_truth [--samples PATH] [--num-basis 12]
        [--initial-cameras rigid corrective]

Fits the rank-one model (the factorizer and options of `conf/nrsfm/`, as `nrsfm.fit` does) to the
generator's exact landmarks (`truth/landmarks`) of every face of a sampling dataset with truth
(default: the first ``samples.h5`` with truth under ``$RANKONE_WORK_DIR/samples``, by path), once
per value of ``initial_cameras``, and prints per fit:
- the slope of the least-squares line of fitted against true angle for pitch, yaw and roll (the
  fitted angles' gauge offset does not matter);
- the median angle between fitted and true rotation matrices after one global rotation (no
  mirror: the face rule fixes the depth reflection);
- the fit's RMSE.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import hydra
import numpy as np
import torch
from hydra import compose, initialize_config_module

from benchmarks.rotation_scale import line_fit
from nrsfm import evaluation
from nrsfm.geometry import euler_angles_to_matrix
from nrsfm.model import AttributeLayout
from sampling.dataset import read_samples

ANGLE_NAMES = ("pitch", "yaw", "roll")


def default_samples() -> Path:
    """The first samples.h5 (by path) with a truth group under $RANKONE_WORK_DIR/samples (default ./artifacts)."""
    root = Path(os.environ.get("RANKONE_WORK_DIR", "artifacts")) / "samples"
    for path in sorted(root.rglob("samples.h5")):
        if read_samples(path).truth:
            return path
    raise SystemExit(f"error: no samples.h5 with truth under {root}; pass --samples PATH or set RANKONE_WORK_DIR")


def median_rotation_error_deg(fitted_deg: np.ndarray, true_deg: np.ndarray) -> float:
    """Median angle between R(fitted) and R(true) (Euler angles (N, 3) in degrees) after one global rotation."""
    return evaluation.median_rotation_error_deg(
        euler_angles_to_matrix(torch.deg2rad(torch.from_numpy(fitted_deg))),
        euler_angles_to_matrix(torch.deg2rad(torch.from_numpy(true_deg))),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=Path, default=None, help="sampling dataset with truth (samples.h5)")
    parser.add_argument("--num-basis", type=int, default=None, help="K (default: conf/fit.yaml's num_basis)")
    parser.add_argument("--initial-cameras", nargs="+", default=["rigid"], choices=["rigid", "corrective"])
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    with initialize_config_module(config_module="conf", version_base="1.3"):
        fit_cfg = compose(config_name="fit", overrides=["samples=unused"])
    num_basis = int(args.num_basis if args.num_basis is not None else fit_cfg.num_basis)
    path = args.samples if args.samples is not None else default_samples()
    samples = read_samples(path)
    if "landmarks" not in samples.truth or "rotation_deg" not in samples.truth:
        raise SystemExit(f"error: {path} has no truth/landmarks and truth/rotation_deg; use a generator dataset")
    landmarks = torch.from_numpy(samples.truth["landmarks"].astype(np.float64))
    true_deg = samples.truth["rotation_deg"].astype(np.float64)
    found = torch.ones(len(landmarks), dtype=torch.bool)
    print(f"{path}: {len(landmarks)} faces, exact landmarks, K={num_basis}\n")
    print("| initial_cameras | pitch slope | yaw slope | roll slope | median rotation error (deg) | rmse |")
    print("|---|---|---|---|---|---|")
    for initial_cameras in args.initial_cameras:
        factorize = hydra.utils.instantiate(fit_cfg.nrsfm, initial_cameras=initial_cameras)
        model, q = factorize(landmarks, found, num_basis=num_basis)
        fitted_deg = AttributeLayout(num_basis).rotation_deg(q).numpy()
        slopes = " | ".join(f"{line_fit(true_deg[:, a], fitted_deg[:, a])[0]:.3f}" for a in range(len(ANGLE_NAMES)))
        error = median_rotation_error_deg(fitted_deg, true_deg)
        print(f"| {initial_cameras} | {slopes} | {error:.3f} | {model.metadata['rmse']:.5f} |", flush=True)


if __name__ == "__main__":
    main()
