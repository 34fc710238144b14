"""e3D of the NRSfM core on the standard orthographic sequences (drink, pickup, stretch, face, jaws).

For every ``*.npz`` in DIR (arrays ``landmarks`` (N, L, 2), ``X_cam``, ``S_world`` (N, L, 3), ``R``
(N, 3, 3), ``rot_struct``; the format of ``../shared/data/nrsfm_mocap/``) it fits
`nrsfm.deforming.factorize_deforming` with the camera rank and k chosen by its held-out rules (no
ground truth), the frames taken as one sequence (the width of the temporal smoothing of the basis
coefficients chosen among ``--temporal-widths`` by the held-out errors), and prints

    <name> e3d=<value> rot_err_deg=<median> K=<k> time_s=<s>

(K counts rank-one basis shapes, 3 per full shape; rot_err_deg is nan where the file's cameras are
all the identity), then the same with every fixed k in --fixed (cameras as chosen by the rule), the
same c and k without the temporal smoothing, the face path (`nrsfm.factorize.factorize`) at
--face-k, and a table with the published PTA and BMM numbers and the mean-shape floor (the true
mean shape placed rigidly in every frame).

    python -m benchmarks.nrsfm_mocap                      # data in ../shared/data/nrsfm_mocap/
    python -m benchmarks.nrsfm_mocap --data DIR --fixed 1 2 3 4 5 6
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch

from nrsfm import evaluation
from nrsfm.deforming import factorize_deforming
from nrsfm.evaluation import e3d
from nrsfm.factorize import factorize
from nrsfm.geometry import euler_angles_to_matrix

TEMPORAL_WIDTHS = (0.0, 5.0)

PUBLISHED = {  # e3D (K of full basis shapes) from the data README: PTA (Akhter et al. 2011), BMM (Dai, Li & He 2012)
    "drink": ("0.0250 (13)", "0.0266 (12)"),
    "pickup": ("0.2369 (12)", "0.1731 (12)"),
    "stretch": ("0.1088 (12)", "0.1034 (11)"),
    "face": ("-", "0.0303 (7)"),
    "jaws": ("-", "0.2357 (4)"),
}


def default_data() -> Path:
    """``shared/data/nrsfm_mocap`` in the nearest folder above the checkout that has one (``../shared``)."""
    for folder in Path(__file__).resolve().parents[1].parents:
        candidate = folder / "shared" / "data" / "nrsfm_mocap"
        if candidate.is_dir():
            return candidate
    return Path("../shared/data/nrsfm_mocap")


def median_rotation_error_deg(rotation: torch.Tensor, true_rotation: torch.Tensor) -> float:
    """Median angle between fitted and true camera rotations (N, 3, 3) after one global alignment,
    proper or mirrored (`nrsfm.evaluation.median_rotation_error_deg`); NaN when the file's rotations are
    all the identity (no camera rotations to compare)."""
    if bool((true_rotation - torch.eye(3, dtype=true_rotation.dtype)).abs().max() < 1e-12):
        return math.nan
    return evaluation.median_rotation_error_deg(rotation, true_rotation, allow_mirror=True)


def scores(model, q: torch.Tensor, data: dict[str, np.ndarray]) -> tuple[float, float]:
    """(e3D, median rotation error in degrees) of a fit against a benchmark file's ground truth."""
    q = q.to(torch.float64)
    model = model.to(torch.float64)
    if int(data["rot_struct"]):
        estimate, truth = model.camera_frame_shapes(q), torch.from_numpy(data["X_cam"])
    else:
        estimate, truth = model.model_frame_shapes(q), torch.from_numpy(data["S_world"])
    rotation = euler_angles_to_matrix(q[:, 3:6])
    return e3d(estimate, truth), median_rotation_error_deg(rotation, torch.from_numpy(data["R"]))


def mean_shape_floor(data: dict[str, np.ndarray]) -> float:
    """e3D of the true mean shape placed rigidly (with the true rotations) in every frame."""
    world = torch.from_numpy(data["S_world"])
    mean = (world - world.mean(1, keepdim=True)).mean(0).expand_as(world)
    if int(data["rot_struct"]):
        return e3d(mean @ torch.from_numpy(data["R"]).transpose(1, 2), torch.from_numpy(data["X_cam"]))
    return e3d(mean, world)


def line(name: str, fit, arguments: tuple, data: dict[str, np.ndarray], **options) -> tuple[str, float, object]:
    """Run fit(*arguments, **options) -> (model, q) and format its result line; also return its e3D and the model."""
    start = time.perf_counter()
    model, q = fit(*arguments, **options)
    elapsed = time.perf_counter() - start
    error, rotation_error = scores(model, q, data)
    text = f"{name} e3d={error:.4f} rot_err_deg={rotation_error:.2f} K={model.num_basis} time_s={elapsed:.2f}"
    return text, error, model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="folder of *.npz sequences")
    parser.add_argument(
        "--fixed", type=int, nargs="*", default=[1, 2, 3, 4, 5, 6], help="fixed numbers of full shapes k"
    )
    parser.add_argument("--face-k", type=int, nargs="*", default=[12], help="K of the face path (factorize) rows")
    parser.add_argument(
        "--temporal-widths",
        type=float,
        nargs="+",
        default=list(TEMPORAL_WIDTHS),
        help="candidate widths (frames) of the temporal smoothing (0: none)",
    )
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    args.data = args.data if args.data is not None else default_data()
    files = sorted(args.data.glob("*.npz"))
    if not files:
        raise SystemExit(f"error: no *.npz files in {args.data}; pass --data DIR with the benchmark sequences")
    table = []
    for path in files:
        with np.load(path, allow_pickle=False) as archive:
            data = {key: archive[key] for key in archive.files}
        landmarks = torch.from_numpy(data["landmarks"]).to(torch.float64)
        found = torch.ones(len(landmarks), dtype=torch.bool)
        text, chosen, model = line(
            path.stem, factorize_deforming, (landmarks, found), data, temporal_widths=args.temporal_widths
        )
        print(text, flush=True)
        camera_shapes, num_shapes = model.metadata["camera_shapes"], model.metadata["num_shapes"]
        width = model.metadata["temporal_width"]
        print(f"  camera c={camera_shapes}, structure k={num_shapes}, temporal width {width:g}", flush=True)
        fixed = {}
        for value in args.fixed:
            if 3 * value > landmarks.shape[1] - 4:
                continue
            text, fixed[value], _ = line(
                f"  fixed k={value}",
                factorize_deforming,
                (landmarks, found, value),
                data,
                camera_shapes=camera_shapes,
                temporal_widths=[model.metadata["temporal_width"]],
            )
            print(text, flush=True)
        text, unsmoothed, _ = line(
            "  no temporal smoothing",
            factorize_deforming,
            (landmarks, found, num_shapes),
            data,
            camera_shapes=camera_shapes,
        )
        print(text, flush=True)
        for num_basis in args.face_k:
            if num_basis <= landmarks.shape[1] - 4:
                text, _, _ = line(f"  face path K={num_basis}", factorize, (landmarks, found, num_basis), data)
                print(text, flush=True)
        table.append((path.stem, chosen, model.num_basis, unsmoothed, fixed, mean_shape_floor(data)))
    headers = ["sequence", "PTA", "BMM", "mean-shape floor", "ours, K rule (K)", "same c, k without smoothing"]
    headers += [f"k={k}" for k in args.fixed]
    print("\n| " + " | ".join(headers) + " |")
    print("|---" * len(headers) + "|")
    for name, chosen, num_basis, unsmoothed, fixed, floor in table:
        pta, bmm = PUBLISHED.get(name, ("-", "-"))
        cells = [name, pta, bmm, f"{floor:.3f}", f"{chosen:.4f} ({num_basis})", f"{unsmoothed:.4f}"]
        cells += [f"{fixed[k]:.4f}" if k in fixed else "-" for k in args.fixed]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
