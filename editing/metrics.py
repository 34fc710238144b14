"""Metrics of edits: pure functions of latents' attributes, observations and the generator's truth.

Landmarks are compared in normalised image units (x / width, y / height); a "squared landmark
error" of two (B, L, 2) sets is the mean over landmarks of the squared 2D distance (the training
loss, `regressor.module.landmark_squared_error`), also given in px^2, as mean px and as NME
(`common.landmarks.nme`). Rotations are (pitch, yaw, roll) in degrees. `editing.evaluate`'s
docstring says what each reported number means.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from common.landmarks import landmark_distances, nme
from editing.observation import Observation
from editing.presets import derive_expression_directions, expression_coordinates
from nrsfm.model import NRSfMModel
from regressor.module import landmark_squared_error

ROTATION_NAMES = ("pitch", "yaw", "roll")


def landmark_metrics(
    prefix: str, predicted: torch.Tensor, detected: torch.Tensor, image_size: tuple[int, int]
) -> dict[str, float]:
    """``prefix`` in normalised units, px^2, mean px and NME over the rows given: (B, L, 2) x2."""
    if len(predicted) == 0:
        return {
            f"{prefix}": math.nan,
            f"{prefix} [px^2]": math.nan,
            f"{prefix} mean error [px]": math.nan,
            f"{prefix} per-face mean error, median over faces [px]": math.nan,
            f"{prefix} NME": math.nan,
        }
    distances = landmark_distances(predicted, detected, image_size)
    return {
        prefix: float(landmark_squared_error(predicted, detected).mean()),
        f"{prefix} [px^2]": float(distances.square().mean(-1).mean()),
        f"{prefix} mean error [px]": float(distances.mean()),
        f"{prefix} per-face mean error, median over faces [px]": median(distances.mean(-1)),
        f"{prefix} NME": float(nme(predicted, detected, image_size).mean()),
    }


def truth_metrics(
    before: dict[str, torch.Tensor],
    after: dict[str, torch.Tensor],
    requested_deg: torch.Tensor,
    spread: dict[str, torch.Tensor],
    asked_deg: torch.Tensor | None = None,
) -> dict[str, float]:
    """Achieved vs requested rotation (degrees) and how far expression and identity moved (see the module docstring).

    Args:
        before, after: ground truth of the original and edited faces (rotation_deg (B, 3), expression, identity).
        requested_deg: (B, 3) requested change of (pitch, yaw, roll) in degrees (the target the editor got).
        spread: per key the (E,) std of the coefficients over the original faces.
        asked_deg: (B, 3) the change as asked, before the target was clamped to the training range; when
            given, the miss against it is reported too (for the angles asked to change).
    """
    achieved = true_rotation_change(before, after)
    error = achieved - requested_deg.float()
    metrics: dict[str, float] = {}
    for i, name in enumerate(ROTATION_NAMES):
        metrics[f"{name} requested, median |.| [deg]"] = median(requested_deg[:, i].abs())
        metrics[f"{name} median |achieved - requested| [deg]"] = median(error[:, i].abs())
        if asked_deg is not None and bool((asked_deg[:, i] != 0).any()):
            metrics[f"{name} median |achieved - asked before clamping| [deg]"] = median(
                (achieved[:, i] - asked_deg[:, i].float()).abs()
            )
        metrics[f"{name} mean achieved - requested [deg]"] = float(error[:, i].mean())
        metrics[f"{name} slope achieved/requested"] = slope(achieved[:, i], requested_deg[:, i])
    for key in ("expression", "identity"):
        moved = coefficients_moved(before[key], after[key], spread[key])
        metrics[f"true {key} moved, mean [std]"] = float(moved.mean())
        metrics[f"true {key} moved, median [std]"] = median(moved)
    return metrics


def coefficients_moved(before: torch.Tensor, after: torch.Tensor, spread: torch.Tensor) -> torch.Tensor:
    """(B,) per face the RMS over coefficients of |after - before| / spread: (B, E), (B, E), (E,)."""
    return ((after - before) / spread.clamp_min(1e-12)).square().mean(-1).sqrt()


@dataclass
class RotationChange:
    """Per-face change of (pitch, yaw, roll) in degrees, for the faces found in the original and the edit.

    Attributes:
        index: (B,) positions of these faces among the evaluated ones (face i is seed ``seed + i``).
        requested: (B, 3) target minus phi(w0).
        on_image: (B, 3) as the detector and the NRSfM model see it: the angles of the edit's
            `Observation.q` minus the original's, model degrees.
        true: (B, 3) the generator's truth (wrapped to +-180), or None.
    """

    index: torch.Tensor
    requested: torch.Tensor
    on_image: torch.Tensor
    true: torch.Tensor | None


def rotation_change(
    model: NRSfMModel, q0: torch.Tensor, target_q: torch.Tensor, original: Observation, edited: Observation
) -> RotationChange:
    """The RotationChange of B edited faces: q0 = phi(w0) and target_q (B, D), both observations of the B faces."""
    both = original.found & edited.found
    angles = model.layout.rotation
    requested = torch.rad2deg(target_q.to(q0)[both, angles] - q0[both, angles])
    on_image = torch.rad2deg(edited.q[both, angles] - original.q[both, angles]).to(requested)
    true = None
    if original.truth is not None and edited.truth is not None:
        true = true_rotation_change(original.truth, edited.truth)[both].to(requested)
    return RotationChange(both.nonzero().flatten(), requested, on_image, true)


def image_rotation_metrics(change: RotationChange) -> dict[str, float]:
    """Per axis: median |achieved on the image - requested| in model degrees, and with truth the slope
    sum(true * on_image) / sum(on_image^2): how many true degrees one degree of the model (as measured
    on images) is worth, the detector's and the factorization's calibration, which no editor can fix."""
    if len(change.requested) == 0:
        return {}
    metrics: dict[str, float] = {}
    for i, name in enumerate(ROTATION_NAMES):
        achieved, requested = change.on_image[:, i], change.requested[:, i]
        metrics[f"{name} on the image, median |achieved - requested| [model deg]"] = median(
            (achieved - requested).abs()
        )
        if change.true is not None:
            metrics[f"{name} true deg per model deg on the image"] = slope(change.true[:, i], achieved)
    return metrics


def phi_rotation_metrics(achieved_deg: torch.Tensor, requested_deg: torch.Tensor) -> dict[str, float]:
    """Per axis asked to change, median |phi(w_edit) - phi(w0) - requested| in model degrees: does the editor
    reach its target on phi itself. (B, 3) changes of (pitch, yaw, roll) in degrees, both."""
    return {
        f"{name} on phi, median |achieved - requested| [model deg]": median(
            (achieved_deg[:, i] - requested_deg[:, i]).abs()
        )
        for i, name in enumerate(ROTATION_NAMES)
        if bool((requested_deg[:, i].abs() > 1e-6).any())
    }


def true_rotation_change(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> torch.Tensor:
    """(B, 3) true change of (pitch, yaw, roll) in degrees, wrapped to +-180."""
    return torch.remainder(after["rotation_deg"] - before["rotation_deg"] + 180.0, 360.0) - 180.0


def preset_correlations(
    regressor, latent0: torch.Tensor, truth: dict[str, torch.Tensor], expression_names
) -> dict[str, dict[str, float]]:
    """Pearson r of each derived direction's coordinate (from phi(w0)) with each true expression coefficient."""
    directions = derive_expression_directions(regressor.nrsfm)
    with torch.no_grad():
        coordinates = expression_coordinates(regressor(latent0).double(), regressor.nrsfm, directions)
    values = torch.cat([coordinates, truth["expression"].double()], 1).T
    correlation = torch.corrcoef(values)
    num = coordinates.shape[1]
    return {
        name: {true_name: float(correlation[i, num + j]) for j, true_name in enumerate(expression_names)}
        for i, name in enumerate(directions)
    }


def slope(y: torch.Tensor, x: torch.Tensor) -> float:
    """Least-squares slope of y on x through the origin, sum(x y) / sum(x^2); NaN when x is all (near) zero."""
    x, y = x.double(), y.double()
    energy = float(x.square().sum())
    return float((x * y).sum()) / energy if energy > 1e-9 else math.nan


def median(values: torch.Tensor) -> float:
    """The median (mean of the two middle values for an even count; torch.median takes the lower one)."""
    return float(values.double().quantile(0.5))
