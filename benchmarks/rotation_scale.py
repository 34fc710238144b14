"""Does a fitted degree equal a true degree? Fitted against true head angles on the default generator.

    python -m benchmarks.rotation_scale [--num-faces 2000] [--seed 0] [--num-basis 12] [override ...]
    python -m benchmarks.rotation_scale --samples <samples.h5> [--num-basis 12]   # refit a kept dataset

Samples `--num-faces` faces of the generator with its landmark detector (`sampling.sample.run`, the
default sampling settings: dlib, 2 workers), fits the rank-one model (the factorizer and options of
`conf/nrsfm/`, as `nrsfm.fit` does) once to the detected landmarks of the found faces and once to
the generator's exact landmarks (`truth/landmarks`) of all faces, and prints in markdown:
- per landmark source and angle (pitch, yaw, roll): the slope of the least-squares line of fitted
  against true angle and their correlation (the fitted angles' gauge offset does not matter);
- the nose-tip ratio: the least-squares slope of the detected nose tip (point 30) relative to the
  midpoint of the eye centres (means of points 36-41 and 42-47) against the true one, in x (the
  turn) and y (the nod), over the found faces;
- the detection rate, overall, beyond +-30 deg of true yaw and per band of |yaw|.
Extra arguments are Hydra overrides of the sampling config (e.g. ``generator.img_resolution=256``).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import hydra
import numpy as np
import torch
from hydra import compose, initialize_config_module

from nrsfm.model import AttributeLayout
from sampling.dataset import read_samples
from sampling.sample import run as run_sampling

ANGLE_NAMES = ("pitch", "yaw", "roll")
NOSE_TIP = 30
EYES = (slice(36, 42), slice(42, 48))
WIDE_YAW_DEG = 30.0
YAW_BINS_DEG = (0.0, 10.0, 20.0, 30.0, 90.0)


def line_fit(true: np.ndarray, fitted: np.ndarray) -> tuple[float, float]:
    """(slope, correlation) of the least-squares line fitted = a * true + b; true, fitted (N,)."""
    true_centred, fitted_centred = true - true.mean(), fitted - fitted.mean()
    slope = float((true_centred * fitted_centred).sum() / (true_centred**2).sum())
    return slope, float(np.corrcoef(true, fitted)[0, 1])


def nose_offset(landmarks: np.ndarray) -> np.ndarray:
    """Nose tip relative to the midpoint of the eye centres: landmarks (N, 68, 2) -> (N, 2)."""
    eyes = (landmarks[:, EYES[0]].mean(1) + landmarks[:, EYES[1]].mean(1)) / 2.0
    return landmarks[:, NOSE_TIP] - eyes


def fitted_angles_deg(factorize, landmarks: np.ndarray, found: np.ndarray, num_basis: int) -> np.ndarray:
    """Fit the model and return (pitch, yaw, roll) in degrees (N, 3), NaN where not found."""
    _, q = factorize(torch.from_numpy(landmarks).double(), torch.from_numpy(found), num_basis=num_basis)
    return AttributeLayout(num_basis).rotation_deg(q).numpy()


def angle_rows(label: str, fitted: np.ndarray, true: np.ndarray, used: np.ndarray) -> str:
    """One markdown row: slope (correlation) per angle over the `used` (N,) faces."""
    cells = [
        f"{slope:.3f} ({correlation:.3f})"
        for slope, correlation in (line_fit(true[used, a], fitted[used, a]) for a in range(3))
    ]
    return f"| {label} | {int(used.sum())} | " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-faces", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-basis", type=int, default=None, help="K (default: conf/fit.yaml's num_basis)")
    parser.add_argument(
        "--work-dir", type=Path, default=None, help="keep the dataset here (default: a temporary folder)"
    )
    parser.add_argument(
        "--samples", type=Path, default=None, help="fit this existing dataset (with truth) instead of sampling"
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the sampling config")
    args = parser.parse_args()
    with initialize_config_module(config_module="conf", version_base="1.3"):
        fit_cfg = compose(config_name="fit", overrides=["samples=unused"])
        sample_overrides = [f"num_samples={args.num_faces}", f"seed={args.seed}", "preview=false", "progress=false"]
        sample_cfg = compose(config_name="sample", overrides=sample_overrides + list(args.overrides))
    num_basis = int(args.num_basis if args.num_basis is not None else fit_cfg.num_basis)
    factorize = hydra.utils.instantiate(fit_cfg.nrsfm)
    if args.samples is not None:
        samples = read_samples(args.samples)
    else:
        with tempfile.TemporaryDirectory() as folder:
            work_dir = args.work_dir if args.work_dir is not None else Path(folder)
            work_dir.mkdir(parents=True, exist_ok=True)
            sample_cfg.out = str(work_dir / "samples.h5")
            run_sampling(sample_cfg)
            samples = read_samples(sample_cfg.out)
    true_angles = samples.truth["rotation_deg"].astype(np.float64)
    truth_landmarks = samples.truth["landmarks"].astype(np.float64)
    found = samples.found
    everyone = np.ones_like(found)
    fitted = {
        samples.metadata["detector"]: (fitted_angles_deg(factorize, samples.landmarks, found, num_basis), found),
        "exact": (fitted_angles_deg(factorize, truth_landmarks, everyone, num_basis), everyone),
    }
    wide = np.abs(true_angles[:, 1]) > WIDE_YAW_DEG
    seeds = samples.seeds
    print(
        f"\n{len(found)} faces, seeds {seeds.min()}..{seeds.max()}, K={num_basis}; true angle std "
        + ", ".join(f"{name} {true_angles[:, a].std():.1f} deg" for a, name in enumerate(ANGLE_NAMES))
    )
    print(
        f"detection rate {found.mean():.1%}; beyond +-{WIDE_YAW_DEG:g} deg yaw {found[wide].mean():.1%} of {int(wide.sum())}"
    )
    absolute_yaw = np.abs(true_angles[:, 1])
    for low, high in zip(YAW_BINS_DEG[:-1], YAW_BINS_DEG[1:]):
        inside = (absolute_yaw >= low) & (absolute_yaw < high)
        if inside.any():
            print(f"  |yaw| {low:g}-{high:g} deg: detected {found[inside].mean():.1%} of {int(inside.sum())}")
    print()
    print("| landmarks | faces | pitch slope (r) | yaw slope (r) | roll slope (r) |")
    print("|---|---|---|---|---|")
    for label, (angles, used) in fitted.items():
        print(angle_rows(label, angles, true_angles, used))
    detected_nose, true_nose = nose_offset(samples.landmarks[found]), nose_offset(truth_landmarks[found])
    ratio_x, r_x = line_fit(true_nose[:, 0], detected_nose[:, 0])
    ratio_y, r_y = line_fit(true_nose[:, 1], detected_nose[:, 1])
    print(
        f"\nnose tip relative to the eyes, detected against true: x {ratio_x:.3f} (r {r_x:.3f}), y {ratio_y:.3f} (r {r_y:.3f})"
    )


if __name__ == "__main__":
    main()
