"""Named expression directions (smile, mouth open, brows raised) derived from the NRSfM model's geometry.

Which alpha means what is not guessed: each name has a measurement on the 68 iBUG landmarks
(0-based indices), in inter-ocular units (the distance between the outer eye corners 36 and 45)
and image orientation (x right, y down):
- ``smile``: how far the mouth corners (48, 54) sit above the upper inner lip centre 62 (62 rather
  than the lip midpoint, so that opening the mouth, which moves the lower lip, does not read as a
  smile). Mouth width |48 - 54| is left out: it also grows when the jaw opens and differs between
  identities; on the synthetic generator (factorizer alphas of the 2000-sample training set) adding
  it lowered the correlation of the derived coordinate with the true smile from 0.43 to 0.32;
- ``mouth_open``: the inner lip gap, y of 66 (lower inner lip centre) minus y of 62 (signed, so that
  it stays differentiable when the lips touch);
- ``brows_raised``: mean y of the eye landmarks 36..47 minus mean y of the brow peaks 19 and 24.

The measurement is taken on R(q) at the model's mean q (`model.q_mean`: the average pose, camera
and expression) with the alphas varied. Working in standardised alpha units (alpha = mean + std *
a, a (K,)), the direction u (K,) of a name is the unit vector along the gradient of its measurement
with respect to a: the direction in alpha space that changes the measurement most per unit step,
signed so that the measurement grows along it. `gain` is that growth, in inter-ocular units per
unit step.

A face's coordinate along u is c = (u . a - m) / s, with m and s the mean and standard deviation of
u . a over reference faces: `attribute_sample` gives phi of the training seeds (the editing commands
pass it), so ``smile=0`` is the average smile of the generator's faces and ``smile=1`` one standard
deviation more. Without reference faces m = 0 and s = 1, which is the training std only when the
alphas are uncorrelated (the model keeps per-entry std only, `q_std`; on the synthetic generator the
std of the smile coordinate is then about 0.5).
Directions of different names need not be orthogonal; `editing.attributes.edit_target` solves for
the smallest alpha change that meets all requested coordinates at once.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

import torch
from torch.func import jacrev

from common.shapes import check_shape
from nrsfm.model import NRSfMModel

PRESET_NAMES = ("smile", "mouth_open", "brows_raised")
NUM_IBUG_LANDMARKS = 68
OUTER_EYE_CORNERS = (36, 45)
MOUTH_CORNERS = (48, 54)
UPPER_INNER_LIP, LOWER_INNER_LIP = 62, 66
BROW_PEAKS = (19, 24)
EYES = tuple(range(36, 48))
MOUTH = tuple(range(48, 68))
MEASUREMENTS = {
    "smile": "height of mouth corners 48, 54 above upper inner lip 62 / inter-ocular",
    "mouth_open": "(y66 - y62) / inter-ocular",
    "brows_raised": "(mean y of eyes 36..47 - mean y of brows 19, 24) / inter-ocular",
}


@dataclass(frozen=True)
class ExpressionDirection:
    """A named direction in standardised alpha space.

    Attributes:
        name: one of PRESET_NAMES.
        direction: (K,) unit vector in standardised alpha units (a = (alpha - mean) / std).
        gain: growth of the measurement (inter-ocular units) per unit of the coordinate.
        measurement: what is measured (see MEASUREMENTS).
        mean, scale: the coordinate is (direction . a - mean) / scale (see the module docstring).
    """

    name: str
    direction: torch.Tensor
    gain: float
    measurement: str
    mean: float = 0.0
    scale: float = 1.0


def expression_measurements(landmarks: torch.Tensor) -> torch.Tensor:
    """The measurements of the module docstring, in PRESET_NAMES order: (..., 68, 2) -> (..., 3)."""
    check_shape(landmarks, ("...", NUM_IBUG_LANDMARKS, 2), "landmarks")
    point = lambda i: landmarks[..., i, :]  # noqa: E731
    interocular = (point(OUTER_EYE_CORNERS[0]) - point(OUTER_EYE_CORNERS[1])).norm(dim=-1)
    corners_y = (point(MOUTH_CORNERS[0])[..., 1] + point(MOUTH_CORNERS[1])[..., 1]) / 2
    smile = point(UPPER_INNER_LIP)[..., 1] - corners_y
    mouth_open = point(LOWER_INNER_LIP)[..., 1] - point(UPPER_INNER_LIP)[..., 1]
    brows = landmarks[..., list(EYES), 1].mean(-1) - landmarks[..., list(BROW_PEAKS), 1].mean(-1)
    return torch.stack([smile, mouth_open, brows], -1) / interocular[..., None]


def derive_expression_directions(
    model: NRSfMModel, reference_q: torch.Tensor | None = None
) -> dict[str, ExpressionDirection]:
    """The direction of each name in PRESET_NAMES for `model` (see the module docstring).

    Args:
        model: a 68-landmark NRSfM model.
        reference_q: (N, 8 + K) attributes of reference faces (N >= 2) that set each coordinate's
            mean and scale; None: mean 0, scale 1.

    Raises:
        ValueError: the model does not have 68 iBUG landmarks, its mean face is not upright (eyes
            above the mouth, landmark 36 left of 45), or a measurement does not depend on alpha.
    """
    if model.num_landmarks != NUM_IBUG_LANDMARKS:
        raise ValueError(
            f"expression presets ({', '.join(PRESET_NAMES)}) need a model of the 68 iBUG landmarks (landmarks=dlib "
            f"or fan), this one has {model.num_landmarks}; edit alpha.<k> directly instead"
        )
    q_mean = model.q_mean.double()
    alpha = model.layout.alpha
    std = model.q_std.double()[alpha]
    nrsfm = copy.deepcopy(model).double()  # .double() converts in place: never on the caller's model

    def measure(standardised_alpha: torch.Tensor) -> torch.Tensor:
        q = torch.cat([q_mean[: alpha.start], q_mean[alpha] + std * standardised_alpha, q_mean[alpha.stop :]])
        return expression_measurements(nrsfm(q))

    zero = torch.zeros(model.num_basis, dtype=torch.float64)
    landmarks = nrsfm(q_mean)
    upright = (
        landmarks[list(EYES), 1].mean() < landmarks[list(MOUTH), 1].mean()
        and landmarks[OUTER_EYE_CORNERS[0], 0] < landmarks[OUTER_EYE_CORNERS[1], 0]
    )
    if not upright:
        raise ValueError(
            "the NRSfM model's mean face is not upright in the image (eyes above the mouth, landmark 36 left of 45); "
            "expression presets cannot be derived from it"
        )
    gradients = jacrev(measure)(zero)  # (3, K)
    directions = {}
    for name, gradient in zip(PRESET_NAMES, gradients):
        gain = float(gradient.norm())
        if not gain > 0:
            raise ValueError(f"no alpha of the model changes the {name} measurement; the {name} preset is unavailable")
        directions[name] = ExpressionDirection(name, (gradient / gain).to(model.q_mean.dtype), gain, MEASUREMENTS[name])
    if reference_q is None:
        return directions
    check_shape(reference_q, ("N", model.layout.dim), "reference_q")
    if len(reference_q) < 2:
        raise ValueError("reference_q needs at least 2 faces to give a standard deviation")
    projections = (
        model.standardise(reference_q.double())[:, model.layout.alpha] @ direction_matrix(directions).double().T
    )
    means, scales = projections.mean(0), projections.std(0)
    return {
        name: dataclasses.replace(
            entry, mean=float(means[i]), scale=float(scales[i]), gain=entry.gain * float(scales[i])
        )
        for i, (name, entry) in enumerate(directions.items())
    }


def attribute_sample(
    generator, regressor, truncation_psi: float = 1.0, num_samples: int = 2000, seed: int = 0, batch_size: int = 500
) -> torch.Tensor:
    """phi of the faces of seeds seed .. seed + num_samples - 1 (by default the sampling stage's training
    seeds): reference attributes (num_samples, 8 + K) for `derive_expression_directions`."""
    from editing.latents import latents_from_seeds

    seeds = list(range(int(seed), int(seed) + int(num_samples)))
    with torch.no_grad():
        return torch.cat(
            [
                regressor(
                    latents_from_seeds(generator, seeds[i : i + batch_size], regressor.latent_space, truncation_psi).to(
                        regressor.nrsfm.q_mean.dtype
                    )
                )
                for i in range(0, len(seeds), batch_size)
            ]
        )


def expression_coordinates(
    q: torch.Tensor, model: NRSfMModel, directions: dict[str, ExpressionDirection]
) -> torch.Tensor:
    """Coordinates c = u . a of faces along `directions` (in their order): q (B, 8 + K) -> (B, P)."""
    check_shape(q, ("B", model.layout.dim), "q")
    standardised = model.standardise(q)[:, model.layout.alpha]
    means, scales = _coordinate_frame(directions, q)
    return (standardised @ direction_matrix(directions).to(q.dtype).T - means) / scales


def _coordinate_frame(
    directions: dict[str, ExpressionDirection], like: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(P,) means and (P,) scales of the coordinates."""
    means = torch.tensor([entry.mean for entry in directions.values()], dtype=like.dtype)
    scales = torch.tensor([entry.scale for entry in directions.values()], dtype=like.dtype)
    return means, scales


def direction_matrix(directions: dict[str, ExpressionDirection]) -> torch.Tensor:
    """(P, K) unit rows of `directions`, in their order."""
    return torch.stack([entry.direction for entry in directions.values()])


def move_along_directions(
    q_base: torch.Tensor, goal: torch.Tensor, model: NRSfMModel, directions: dict[str, ExpressionDirection]
) -> torch.Tensor:
    """The smallest change of the alphas of `q_base` that puts the faces at coordinates `goal`.

    Args:
        q_base: (B, 8 + K) attributes to start from.
        goal: (B, P) wanted coordinates along `directions` (in their order).
        directions: P directions with unit rows U (P, K) in standardised alpha units.
    Returns:
        (B, 8 + K): q_base with alpha = mean + std * (a + (g - a U^T) (U U^T)^+ U), a its standardised
        alpha and g the goal as projections (coordinate mean + scale * goal).
    """
    layout = model.layout
    matrix = direction_matrix(directions).to(torch.float64)
    check_shape(q_base, ("B", layout.dim), "q_base")
    check_shape(matrix, ("P", layout.num_basis), "direction matrix")
    check_shape(goal, (q_base.shape[0], matrix.shape[0]), "goal")
    means, scales = _coordinate_frame(directions, matrix)
    standardised = model.standardise(q_base.double())[:, layout.alpha]
    residual = means + scales * goal.double() - standardised @ matrix.T
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
        lines.append(f"{entry.name}: {weights}; +{entry.gain:.4f} inter-ocular per unit ({entry.measurement})")
    return "\n".join(lines)
