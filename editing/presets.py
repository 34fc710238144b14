"""Named expression directions (smile, mouth open, brows raised) derived from the NRSfM model's geometry.

Which alpha means what is not guessed: each name has a measurement on the 68 iBUG landmarks
(0-based indices), in inter-ocular units (the distance between the outer eye corners 36 and 45)
and image orientation (x right, y down):
- ``smile``: mouth width |48 - 54| plus how far the mouth corners (48, 54) sit above the upper inner
  lip centre 62 (62 rather than the lip midpoint, so that opening the mouth, which moves the lower
  lip, does not read as a smile);
- ``mouth_open``: the inner lip gap, y of 66 (lower inner lip centre) minus y of 62 (signed, so that
  it stays differentiable when the lips touch);
- ``brows_raised``: mean y of the eye landmarks 36..47 minus mean y of the brow peaks 19 and 24.

The measurement is taken on R(q) at the model's mean q (`model.q_mean`: the average pose, camera
and expression) with the alphas varied. Working in standardised alpha units (alpha = mean + std *
a, a (K,)), the direction u (K,) of a name is the unit vector along the gradient of its measurement
with respect to a: the direction in alpha space that changes the measurement most per unit step,
signed so that the measurement grows along it. `gain` is that growth, in inter-ocular units per
unit step.

A face's coordinate along u is c = u . a (0: the training mean along u). Its unit is one standard
deviation of q along u if the alphas are uncorrelated over the training set (the model keeps per-entry
std only, `q_std`); ``smile=1`` therefore means "one training std more smile than average".
Directions of different names need not be orthogonal; `editing.attributes.edit_target` solves for
the smallest alpha change that meets all requested coordinates at once.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch.func import jacrev

from nrsfm.model import NRSfMModel
from nrsfm.shapes import check_shape

PRESET_NAMES = ("smile", "mouth_open", "brows_raised")
NUM_IBUG_LANDMARKS = 68
OUTER_EYE_CORNERS = (36, 45)
MOUTH_CORNERS = (48, 54)
UPPER_INNER_LIP, LOWER_INNER_LIP = 62, 66
BROW_PEAKS = (19, 24)
EYES = tuple(range(36, 48))
MOUTH = tuple(range(48, 68))
MEASUREMENTS = {
    "smile": "(|48 - 54| + height of corners 48, 54 above upper inner lip 62) / inter-ocular",
    "mouth_open": "(y66 - y62) / inter-ocular",
    "brows_raised": "(mean y of eyes 36..47 - mean y of brows 19, 24) / inter-ocular",
}


@dataclass(frozen=True)
class ExpressionDirection:
    """A named direction in standardised alpha space.

    Attributes:
        name: one of PRESET_NAMES.
        direction: (K,) unit vector in standardised alpha units (a = (alpha - mean) / std).
        gain: growth of the measurement (inter-ocular units) per unit step along `direction`.
        measurement: what is measured (see MEASUREMENTS).
    """

    name: str
    direction: torch.Tensor
    gain: float
    measurement: str


def expression_measurements(landmarks: torch.Tensor) -> torch.Tensor:
    """The measurements of the module docstring, in PRESET_NAMES order: (..., 68, 2) -> (..., 3)."""
    check_shape(landmarks, ("...", NUM_IBUG_LANDMARKS, 2), "landmarks")
    point = lambda i: landmarks[..., i, :]  # noqa: E731
    interocular = (point(OUTER_EYE_CORNERS[0]) - point(OUTER_EYE_CORNERS[1])).norm(dim=-1)
    corners_y = (point(MOUTH_CORNERS[0])[..., 1] + point(MOUTH_CORNERS[1])[..., 1]) / 2
    width = (point(MOUTH_CORNERS[0]) - point(MOUTH_CORNERS[1])).norm(dim=-1)
    smile = width + point(UPPER_INNER_LIP)[..., 1] - corners_y
    mouth_open = point(LOWER_INNER_LIP)[..., 1] - point(UPPER_INNER_LIP)[..., 1]
    brows = landmarks[..., list(EYES), 1].mean(-1) - landmarks[..., list(BROW_PEAKS), 1].mean(-1)
    return torch.stack([smile, mouth_open, brows], -1) / interocular[..., None]


def derive_expression_directions(model: NRSfMModel) -> dict[str, ExpressionDirection]:
    """The direction of each name in PRESET_NAMES for `model` (see the module docstring).

    Raises:
        ValueError: the model does not have 68 iBUG landmarks, its mean face is not upright (eyes
            above the mouth, landmark 36 left of 45), or a measurement does not depend on alpha.
    """
    if model.num_landmarks != NUM_IBUG_LANDMARKS:
        raise ValueError(f"expression presets ({', '.join(PRESET_NAMES)}) need a model of the 68 iBUG landmarks (landmarks=dlib "
                         f"or fan), this one has {model.num_landmarks}; edit alpha.<k> directly instead")
    q_mean = model.q_mean.double()
    alpha = model.layout.alpha
    std = model.q_std.double()[alpha]
    nrsfm = copy.deepcopy(model).double()  # .double() converts in place: never on the caller's model

    def measure(standardised_alpha: torch.Tensor) -> torch.Tensor:
        q = torch.cat([q_mean[:alpha.start], q_mean[alpha] + std * standardised_alpha, q_mean[alpha.stop:]])
        return expression_measurements(nrsfm(q))

    zero = torch.zeros(model.num_basis, dtype=torch.float64)
    landmarks = nrsfm(q_mean)
    upright = (landmarks[list(EYES), 1].mean() < landmarks[list(MOUTH), 1].mean()
               and landmarks[OUTER_EYE_CORNERS[0], 0] < landmarks[OUTER_EYE_CORNERS[1], 0])
    if not upright:
        raise ValueError("the NRSfM model's mean face is not upright in the image (eyes above the mouth, landmark 36 left of 45); "
                         "expression presets cannot be derived from it")
    gradients = jacrev(measure)(zero)  # (3, K)
    directions = {}
    for name, gradient in zip(PRESET_NAMES, gradients):
        gain = float(gradient.norm())
        if not gain > 0:
            raise ValueError(f"no alpha of the model changes the {name} measurement; the {name} preset is unavailable")
        directions[name] = ExpressionDirection(name, (gradient / gain).to(model.q_mean.dtype), gain, MEASUREMENTS[name])
    return directions


def expression_coordinates(q: torch.Tensor, model: NRSfMModel, directions: dict[str, ExpressionDirection]) -> torch.Tensor:
    """Coordinates c = u . a of faces along `directions` (in their order): q (B, 8 + K) -> (B, P)."""
    check_shape(q, ("B", model.layout.dim), "q")
    standardised = model.standardise(q)[:, model.layout.alpha]
    return standardised @ direction_matrix(directions).to(q.dtype).T


def direction_matrix(directions: dict[str, ExpressionDirection]) -> torch.Tensor:
    """(P, K) unit rows of `directions`, in their order."""
    return torch.stack([entry.direction for entry in directions.values()])


def move_along_directions(q_base: torch.Tensor, goal: torch.Tensor, model: NRSfMModel, matrix: torch.Tensor) -> torch.Tensor:
    """The smallest change of the alphas of `q_base` that puts the faces at coordinates `goal`.

    Args:
        q_base: (B, 8 + K) attributes to start from.
        goal: (B, P) wanted coordinates along the rows of `matrix`.
        matrix: (P, K) unit directions in standardised alpha units.
    Returns:
        (B, 8 + K): q_base with alpha = mean + std * (a + (goal - a U^T) (U U^T)^+ U), a its standardised alpha.
    """
    layout = model.layout
    check_shape(q_base, ("B", layout.dim), "q_base")
    check_shape(matrix, ("P", layout.num_basis), "direction matrix")
    check_shape(goal, (q_base.shape[0], matrix.shape[0]), "goal")
    matrix = matrix.to(torch.float64)
    standardised = model.standardise(q_base.double())[:, layout.alpha]
    residual = goal.double() - standardised @ matrix.T
    moved = standardised + residual @ torch.linalg.pinv(matrix @ matrix.T, hermitian=True) @ matrix
    q = q_base.clone()
    alpha_mean, alpha_std = model.q_mean.double()[layout.alpha], model.q_std.double()[layout.alpha]
    q[:, layout.alpha] = (alpha_mean + alpha_std * moved).to(q.dtype)
    return q


def format_directions(directions: dict[str, ExpressionDirection], model: NRSfMModel) -> str:
    """One line per direction: its largest alpha weights and gain."""
    lines = []
    for entry in directions.values():
        order = entry.direction.abs().argsort(descending=True)[:3].tolist()
        weights = ", ".join(f"alpha.{k} {float(entry.direction[k]):+.2f}" for k in order)
        lines.append(f"{entry.name}: {weights}; +{entry.gain:.4f} inter-ocular per std ({entry.measurement})")
    return "\n".join(lines)
