"""How good phi is, as numbers (JSON) and one figure (PNG), on the test split.

Metrics (all on the test split's found samples):
- `landmark_loss`: L_L(w) = mean over samples and landmarks of the squared 2D distance between
  R(phi(w)) and the detected landmarks, in normalised image units (the training loss);
  `landmark_loss_px2` the same in pixels^2 at the dataset's image size; `mean_error_px` the mean
  2D distance in pixels; `fit_landmark_loss` the same loss for R(q_fit), the NRSfM model's own fit.
- `nme`: the project's NME (`common.landmarks.nme`) of R(phi(w)) against the detected landmarks,
  mean over samples; `nme_normaliser` names the face size it divides by.
- `attributes`: per entry of q, the mean absolute error of phi against the factorizer's q, in the
  entry's unit (rotations in degrees), and relative to the spread (std) of that entry.
- `rotation_vs_truth` (datasets with truth/rotation_deg): the factorizer's frame is defined only up
  to a fixed global rotation H, so R_true ~ R_pred H. H is fitted by Kabsch on rotation matrices
  (H = argmin sum ||R_true - R_pred H||_F^2 over det H = +1) on the train split and applied to the
  test split; reported are median absolute pitch/yaw/roll errors and the median geodesic angle,
  in degrees, for phi and for the factorizer's own q.
- `row_importance` (W+ regressors): which rows of ws phi reads each attribute from. For row r, every
  test sample's row r is replaced by another test sample's (one fixed permutation); the share of
  q_j's variance that row r explains is mean((phi_j(swapped) - phi_j)^2) / (2 var phi_j). With rows
  that act independently and additively the shares of an attribute sum to 1. It is meaningful on a
  dataset sampled with style mixing, whose rows vary independently; it tells which rows to give an
  edit (``rows=[...]``). `plot_row_importance` draws it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure

from common.io import save_png_atomic, write_text_atomic
from common.landmarks import face_size_name, landmark_distances, nme
from common.shapes import check_shape
from nrsfm.geometry import euler_angles_to_matrix, matrix_to_euler_angles
from regressor.data import RegressionData
from regressor.export import AttributeRegressor

ROTATION_NAMES = ("pitch", "yaw", "roll")


def fit_global_rotation(rotation_pred: torch.Tensor, rotation_true: torch.Tensor) -> torch.Tensor:
    """Kabsch: H (3, 3) with det +1 minimising sum ||R_true - R_pred H||_F^2; inputs (N, 3, 3)."""
    check_shape(rotation_pred, ("N", 3, 3), "rotation_pred")
    check_shape(rotation_true, ("N", 3, 3), "rotation_true", {"N": rotation_pred.shape[0]})
    u, _, vh = torch.linalg.svd((rotation_pred.transpose(-1, -2) @ rotation_true).sum(0))
    sign = torch.sign(torch.linalg.det(u @ vh))
    return u @ torch.diag(torch.stack([torch.ones_like(sign), torch.ones_like(sign), sign])) @ vh


def rotation_errors(
    theta_pred: torch.Tensor, truth_deg: torch.Tensor, train: torch.Tensor, test: torch.Tensor
) -> dict[str, float]:
    """Median |error| of pitch/yaw/roll and geodesic angle (degrees) on `test` after aligning on `train`.

    Args:
        theta_pred: (N, 3) predicted Euler angles in radians; truth_deg: (N, 3) true (pitch, yaw, roll) in degrees.
        train, test: (n,) row indices.
    """
    rotation_pred = euler_angles_to_matrix(theta_pred.double())
    rotation_true = euler_angles_to_matrix(torch.deg2rad(truth_deg.double()))
    alignment = fit_global_rotation(rotation_pred[train], rotation_true[train])
    aligned = rotation_pred[test] @ alignment
    difference = torch.rad2deg(matrix_to_euler_angles(aligned)) - truth_deg[test].double()
    difference = torch.remainder(difference + 180.0, 360.0) - 180.0
    relative = aligned.transpose(-1, -2) @ rotation_true[test]
    cos = ((relative.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1, 1)
    errors = {f"median_{name}_deg": float(difference[:, i].abs().median()) for i, name in enumerate(ROTATION_NAMES)}
    errors["median_geodesic_deg"] = float(torch.rad2deg(torch.arccos(cos)).median())
    errors["alignment_angle_deg"] = float(torch.rad2deg(torch.arccos(((alignment.trace() - 1) / 2).clamp(-1, 1))))
    return errors


@torch.no_grad()
def evaluate_regressor(regressor: AttributeRegressor, data: RegressionData, split: str = "test") -> dict[str, Any]:
    """The metrics of the module docstring for `regressor` on `split` of `data`."""
    rows = data.indices(split)
    latents = data.latents.reshape(len(data.latents), *regressor.latent_shape)
    q_pred = torch.cat([regressor(chunk) for chunk in latents.split(8192)])
    model = regressor.nrsfm
    landmarks, q_fit = data.landmarks[rows], data.q_fit[rows]
    predicted, fitted = model(q_pred[rows]), model(q_fit)
    image_size = data.image_size
    distances_px = landmark_distances(predicted, landmarks, image_size)
    report: dict[str, Any] = {
        "split": split,
        "num_samples": len(rows),
        "latent_space": regressor.latent_space,
        "image_size": list(image_size) if image_size else None,
        "landmark_loss": float(landmark_distances(predicted, landmarks, None).square().mean()),
        "landmark_loss_px2": float(distances_px.square().mean()) if image_size else None,
        "mean_error_px": float(distances_px.mean()) if image_size else None,
        "nme": float(nme(predicted, landmarks, image_size).mean()),
        "nme_normaliser": face_size_name(landmarks.shape[1]),
        "fit_landmark_loss": float(landmark_distances(fitted, landmarks, None).square().mean()),
        "attributes": attribute_errors(q_pred[rows], q_fit, model.layout.names()),
    }
    if regressor.latent_space == "w+":
        shares = row_importance(regressor, latents[rows])
        report["row_importance"] = {name: shares[:, i].tolist() for i, name in enumerate(model.layout.names())}
    if data.rotation_truth_deg is not None:
        rotation = model.layout.rotation
        train = data.indices("train")
        report["rotation_vs_truth"] = {
            "phi": rotation_errors(q_pred[:, rotation], data.rotation_truth_deg, train, rows),
            "factorizer": rotation_errors(data.q_fit[:, rotation], data.rotation_truth_deg, train, rows),
        }
    return report


def row_importance(regressor: AttributeRegressor, latents: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """(num_ws, D) share of each attribute's variance that each row of ws explains (module docstring), for
    W+ latents (n, num_ws, w_dim), n >= 2."""
    check_shape(latents, ("n", "R", "W"), "W+ latents")
    permutation = torch.randperm(len(latents), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        q = regressor(latents)
        variance = q.var(0).clamp_min(1e-30)
        shares = []
        for row in range(latents.shape[1]):
            swapped = latents.clone()
            swapped[:, row] = latents[permutation, row]
            shares.append((regressor(swapped) - q).square().mean(0) / (2 * variance))
    return torch.stack(shares)


def attribute_errors(q_pred: torch.Tensor, q_fit: torch.Tensor, names: list[str]) -> dict[str, dict[str, float]]:
    """Per-attribute mean |q_pred - q_fit| (degrees for rotations) and that over the std of q_fit; (n, Q) x2."""
    errors = {}
    for i, name in enumerate(names):
        scale = 180.0 / math.pi if name in ROTATION_NAMES else 1.0
        mae = float((q_pred[:, i] - q_fit[:, i]).abs().mean()) * scale
        spread = float(q_fit[:, i].std()) * scale
        errors[name] = {
            "mae": mae,
            "unit": "deg" if scale != 1.0 else "",
            "relative": mae / spread if spread > 0 else float("nan"),
        }
    return errors


def format_report(report: dict[str, Any]) -> str:
    """A few human-readable lines."""
    lines = [
        f"{report['split']} split, {report['num_samples']} samples, latent space {report['latent_space']}:",
        f"  L_L(w) = {report['landmark_loss']:.3e} (normalised units; NRSfM fit itself: {report['fit_landmark_loss']:.3e})",
    ]
    if report["image_size"]:
        lines.append(
            f"  L_L(w) = {report['landmark_loss_px2']:.3f} px^2 at {report['image_size'][0]}x{report['image_size'][1]}, "
            f"mean error {report['mean_error_px']:.3f} px"
        )
    lines.append(f"  NME = {report['nme']:.4f} ({report['nme_normaliser']})")
    rotation = {name: report["attributes"][name]["mae"] for name in ROTATION_NAMES}
    lines.append("  phi vs factorizer q, mean |error|: " + ", ".join(f"{k} {v:.3f} deg" for k, v in rotation.items()))
    for source, errors in report.get("rotation_vs_truth", {}).items():
        lines.append(
            f"  {source} rotation vs ground truth (median, deg): "
            + ", ".join(f"{name} {errors[f'median_{name}_deg']:.3f}" for name in ROTATION_NAMES)
            + f", geodesic {errors['median_geodesic_deg']:.3f}"
        )
    if "row_importance" in report:
        for name in ROTATION_NAMES:
            shares = " ".join(f"{share:.2f}" for share in report["row_importance"][name])
            lines.append(f"  {name} read from the rows of ws (variance share per row): {shares}")
    return "\n".join(lines)


def plot_report(regressor: AttributeRegressor, data: RegressionData, report: dict[str, Any], path: str | Path) -> None:
    """Save a 2x3 figure: error histogram, phi vs factorizer for pitch/yaw/roll and alpha.0, a worst-case face."""
    rows = data.indices(report["split"])
    with torch.no_grad():
        latents = data.latents[rows].reshape(len(rows), *regressor.latent_shape)
        q_pred = regressor(latents)
        predicted = regressor.nrsfm(q_pred)
    errors = landmark_distances(predicted, data.landmarks[rows], data.image_size).mean(-1)
    unit = "px" if data.image_size else "normalised units"
    figure = Figure(figsize=(13, 8), layout="constrained")
    axes = figure.subplots(2, 3)
    axes[0, 0].hist(errors.numpy(), bins=50)
    axes[0, 0].set(title=f"mean landmark error per face ({unit})", xlabel=unit, ylabel="faces")
    layout = regressor.nrsfm.layout
    names = layout.names()
    panels = [
        (axes[0, 1], "yaw"),
        (axes[0, 2], "pitch"),
        (axes[1, 0], "roll"),
        (axes[1, 1], names[layout.alpha][0] if layout.num_basis else "tx"),
    ]
    for axis, name in panels:
        i = names.index(name)
        scale = 180.0 / math.pi if name in ROTATION_NAMES else 1.0
        x, y = data.q_fit[rows, i].numpy() * scale, q_pred[:, i].numpy() * scale
        axis.scatter(x, y, s=2, alpha=0.4)
        axis.plot([x.min(), x.max()], [x.min(), x.max()], color="black", linewidth=0.8)
        axis.set(
            title=f"{name}: phi vs factorizer (MAE {report['attributes'][name]['mae']:.3g})",
            xlabel="factorizer",
            ylabel="phi",
        )
    worst = int(errors.argmax())
    axis = axes[1, 2]
    axis.scatter(*data.landmarks[rows[worst]].numpy().T, s=8, label="detected")
    axis.scatter(*predicted[worst].numpy().T, s=8, marker="x", label="R(phi(w))")
    axis.invert_yaxis()
    axis.set_aspect("equal")
    axis.legend()
    axis.set(title=f"worst test face (seed {int(data.seeds[rows[worst]])}, {float(errors[worst]):.3g} {unit})")
    figure.suptitle(f"L_L(w) = {report['landmark_loss']:.3e}, NME = {report['nme']:.4f}")
    save_png_atomic(figure, path, dpi=100)


def plot_row_importance(report: dict[str, Any], path: str | Path) -> None:
    """Save a heat map of `report["row_importance"]`: rows of ws against the entries of q."""
    importance = report["row_importance"]
    names = list(importance)
    shares = torch.tensor([importance[name] for name in names]).T  # (num_ws, D)
    figure = Figure(figsize=(max(6.0, 0.45 * len(names)), 1.2 + 0.4 * len(shares)), layout="constrained")
    axis = figure.subplots()
    image = axis.imshow(shares.numpy(), cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    axis.set_xticks(range(len(names)), names, rotation=60, ha="right")
    axis.set_yticks(range(len(shares)), [f"row {row}" for row in range(len(shares))])
    axis.set_title("share of each attribute's variance that each row of ws explains (phi, test split)")
    figure.colorbar(image, ax=axis)
    save_png_atomic(figure, path, dpi=100)


def write_report(report: dict[str, Any], path: str | Path) -> None:
    """Write `report` as JSON atomically."""
    write_text_atomic(path, json.dumps(report, indent=2, allow_nan=True))
