"""Does a fitted degree equal a true degree? Fitted against true head angles on the default generator.

    python -m benchmarks.rotation_scale [--num-faces 2000] [--seed 0] [--num-basis 12] [override ...]
    python -m benchmarks.rotation_scale --samples <samples.h5> [--num-basis 12]   # refit a kept dataset
    python -m benchmarks.rotation_scale --samples <samples.h5> --fit nrsfm.contour_weight=0   # other fit options

Samples `--num-faces` faces of the generator with its landmark detector (`sampling.sample.run`, the
default sampling settings: dlib, 2 workers), fits the rank-one model (the factorizer and options of
`conf/nrsfm/`, as `nrsfm.fit` does) once to the detected landmarks of the found faces and once to
the generator's exact landmarks (`truth/landmarks`) of all faces, and prints in markdown:
- per landmark source and angle (pitch, yaw, roll): the slope of the least-squares line of fitted
  against true angle and their correlation (the fitted angles' gauge offset does not matter);
- the nose-tip ratio: the least-squares slope of the detected nose tip (point 30) relative to the
  midpoint of the eye centres (means of points 36-41 and 42-47) against the true one, in x (the
  turn) and y (the nod), over the found faces;
- the detection rate, overall, beyond +-30 deg of true yaw and per band of |yaw|;
- where the turn is lost, for the synthetic generator: the same slopes for a rigid fit (affine
  camera, then its rotation) of the generator's own neutral 3D landmarks to each landmark source,
  with all 68 points and with the inner 51 (no jaw line 0-16); measurement only, the fit never sees it;
- the expression presets: Pearson r of each derived direction's coordinate (`editing.presets`, from
  the factorizer's q of the found faces) with the generator's true expression coefficients.
Extra arguments are Hydra overrides of the sampling config (e.g. ``generator.img_resolution=256``);
``--fit`` takes overrides of conf/fit.yaml (e.g. ``nrsfm.contour_weight=0``).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import hydra
import numpy as np
import torch
from hydra import compose, initialize_config_module

from nrsfm.camera import camera_to_intrinsics_rotation
from nrsfm.geometry import matrix_to_euler_angles
from nrsfm.model import AttributeLayout, NRSfMModel
from sampling.dataset import read_samples
from sampling.sample import run as run_sampling

ANGLE_NAMES = ("pitch", "yaw", "roll")
NUM_IBUG_LANDMARKS = 68
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


def fit(factorize, landmarks: np.ndarray, found: np.ndarray, num_basis: int) -> tuple[NRSfMModel, torch.Tensor]:
    """The model and q (N, 8 + K), NaN rows where not found."""
    return factorize(torch.from_numpy(landmarks).double(), torch.from_numpy(found), num_basis=num_basis)


def rigid_angles_deg(landmarks: np.ndarray, shape: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(pitch, yaw, roll) in degrees (N, 3) of the affine camera that best maps the fixed 3D `shape`
    (68, 3) onto `landmarks` (N, 68, 2), using only the `points` indices."""
    image = torch.from_numpy(landmarks[:, points]).double()
    model_points = torch.from_numpy(shape[points]).double()
    image = image - image.mean(1, keepdim=True)
    model_points = model_points - model_points.mean(0)
    camera = image.transpose(1, 2) @ model_points @ torch.linalg.inv(model_points.T @ model_points)  # (N, 2, 3)
    _, rotation = camera_to_intrinsics_rotation(camera)
    return torch.rad2deg(matrix_to_euler_angles(rotation)).numpy()


def preset_rows(model: NRSfMModel, q: torch.Tensor, expression: np.ndarray, used: np.ndarray) -> list[str]:
    """Markdown rows: Pearson r of each derived direction's coordinate with each true expression coefficient."""
    from backbones.synthetic.face_model import EXPRESSION_NAMES
    from editing.presets import derive_expression_directions, expression_coordinates

    q_used = q[torch.from_numpy(used)].double()
    directions = derive_expression_directions(model.double(), q_used)
    coordinates = expression_coordinates(q_used, model, directions).numpy()
    rows = ["| direction | " + " | ".join(EXPRESSION_NAMES) + " |", "|---" * (len(EXPRESSION_NAMES) + 1) + "|"]
    for index, name in enumerate(directions):
        cells = [
            f"{np.corrcoef(coordinates[:, index], expression[used, e])[0, 1]:.3f}" for e in range(len(EXPRESSION_NAMES))
        ]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return rows


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
    parser.add_argument(
        "--fit", action="append", default=[], help="a Hydra override of conf/fit.yaml (repeat for more)"
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the sampling config")
    args = parser.parse_args()
    with initialize_config_module(config_module="conf", version_base="1.3"):
        fit_cfg = compose(config_name="fit", overrides=["samples=unused", *args.fit])
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
    detector = samples.metadata["detector"]
    detected_model, detected_q = fit(factorize, samples.landmarks, found, num_basis)
    _, exact_q = fit(factorize, truth_landmarks, everyone, num_basis)
    layout = AttributeLayout(num_basis)
    fitted = {
        detector: (layout.rotation_deg(detected_q).numpy(), found),
        "exact": (layout.rotation_deg(exact_q).numpy(), everyone),
    }
    wide = np.abs(true_angles[:, 1]) > WIDE_YAW_DEG
    seeds = samples.seeds
    options = ", ".join(f"{key}={value}" for key, value in fit_cfg.nrsfm.items() if not key.startswith("_"))
    print(
        f"\n{len(found)} faces, seeds {seeds.min()}..{seeds.max()}, K={num_basis} ({options}); true angle std "
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
    if "expression" not in samples.truth or samples.landmarks.shape[1] != NUM_IBUG_LANDMARKS:
        return
    from backbones.synthetic.face_model import build_face_mesh

    neutral = build_face_mesh().vertices[:NUM_IBUG_LANDMARKS].double().numpy()
    print("\nrigid fit of the generator's neutral 3D landmarks (measurement only):\n")
    print("| landmarks | points | faces | pitch slope (r) | yaw slope (r) | roll slope (r) |")
    print("|---|---|---|---|---|---|")
    for label, points, used in ((detector, samples.landmarks, found), ("exact", truth_landmarks, everyone)):
        for subset, indices in (("all 68", np.arange(68)), ("inner 51", np.arange(17, 68))):
            angles = np.full_like(true_angles, np.nan)
            angles[used] = rigid_angles_deg(points[used], neutral, indices)
            print(angle_rows(label, angles, true_angles, used).replace(" |", f" | {subset} |", 1))
    print(f"\nexpression presets on the {detector} fit, factorizer q of the found faces:\n")
    print("\n".join(preset_rows(detected_model, detected_q, samples.truth["expression"].astype(np.float64), found)))


if __name__ == "__main__":
    main()
