"""editing.presets: expression directions derived from a model whose basis shapes are known blend shapes."""

import pytest
import torch
from editing_standins import random_nrsfm

from backbones.synthetic.face_model import EXPRESSION_NAMES, build_face_mesh
from editing.attributes import edit_target
from editing.presets import (
    PRESET_NAMES,
    derive_expression_directions,
    direction_matrix,
    expression_coordinates,
    expression_measurements,
)
from nrsfm.model import NRSfMModel

# The synthetic face's blend shapes behind each preset, in PRESET_NAMES order.
BLEND_SHAPES = ("smile", "mouth_open", "brows_raise")


@pytest.fixture(scope="module")
def blend_shape_model():
    """A 68-landmark NRSfM model (float64) whose alphas are the x and y parts of the synthetic face's
    smile, mouth-open and brows-raise blend shapes (alpha 2i: x part of blend shape i, 2i + 1: y part)."""
    mesh = build_face_mesh()
    mean_shape = mesh.vertices[:68].double()
    basis, directions = [], []
    for name in BLEND_SHAPES:
        field = mesh.expression_basis[EXPRESSION_NAMES.index(name), :68].double()
        for axis in (0, 1):
            basis.append(field[:, axis])
            directions.append(torch.eye(3, dtype=torch.float64)[axis])
    basis, directions = torch.stack(basis), torch.stack(directions)
    num_basis = len(basis)
    q_mean = torch.zeros(8 + num_basis, dtype=torch.float64)
    q_mean[[0, 2]] = 0.1
    q_mean[-2:] = 0.5
    q_std = torch.full((8 + num_basis,), 0.5, dtype=torch.float64)
    return NRSfMModel(mean_shape, directions, basis, q_mean, q_std, {"landmarks": "test"})


def test_each_direction_lies_in_its_own_blend_shape(blend_shape_model):
    directions = derive_expression_directions(blend_shape_model)
    assert list(directions) == list(PRESET_NAMES)
    for i, name in enumerate(PRESET_NAMES):
        u = directions[name].direction
        assert u.norm() == pytest.approx(1.0)
        own = u[2 * i : 2 * i + 2]
        assert own.square().sum() > 0.9, (name, u)
        assert directions[name].gain > 0
    # smile lifts the corners (the y part of its blend shape); mouth_open and brows move along y too
    assert directions["smile"].direction[1] > 0.9
    assert directions["mouth_open"].direction[3] > 0.9
    assert directions["brows_raised"].direction[5] > 0.9


def test_moving_along_a_direction_changes_its_measurement(blend_shape_model):
    model = blend_shape_model
    directions = derive_expression_directions(model)
    q0 = model.q_mean.expand(2, -1).clone()
    before = expression_measurements(model(q0))
    for i, name in enumerate(PRESET_NAMES):
        target = edit_target(q0, {f"delta.{name}": 1.0}, model)
        after = expression_measurements(model(target.q))
        assert (after[:, i] - before[:, i]) == pytest.approx(
            torch.full((2,), directions[name].gain, dtype=torch.float64), rel=0.05
        )


def test_preset_edit_targets(blend_shape_model):
    model = blend_shape_model
    directions = derive_expression_directions(model)
    q0 = model.q_mean + model.q_std * torch.randn(
        4, model.layout.dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    absolute = edit_target(q0, {"smile": 1.5, "delta.mouth_open": -0.5}, model)
    coordinates = expression_coordinates(absolute.q, model, {k: directions[k] for k in ("smile", "mouth_open")})
    coordinates0 = expression_coordinates(q0, model, {k: directions[k] for k in ("smile", "mouth_open")})
    torch.testing.assert_close(coordinates[:, 0], torch.full((4,), 1.5, dtype=torch.float64))
    torch.testing.assert_close(coordinates[:, 1], coordinates0[:, 1] - 0.5)
    assert absolute.mask[model.layout.alpha].all() and not absolute.mask[model.layout.rotation].any()
    torch.testing.assert_close(absolute.q[:, :6], q0[:, :6])
    # the smallest alpha change: it lies in the span of the two directions
    change = model.standardise(absolute.q)[:, model.layout.alpha] - model.standardise(q0)[:, model.layout.alpha]
    span = direction_matrix({k: directions[k] for k in ("smile", "mouth_open")})
    projected = change @ torch.linalg.pinv(span) @ span
    torch.testing.assert_close(projected, change)
    # expression=0 first, then the smile on top of the mean expression
    smiling = edit_target(q0, {"expression": 0, "smile": 2.0}, model)
    alpha = model.standardise(smiling.q)[:, model.layout.alpha]
    torch.testing.assert_close(alpha, (2.0 * directions["smile"].direction).expand(4, -1))


def test_preset_errors(blend_shape_model):
    q0 = blend_shape_model.q_mean[None]
    with pytest.raises(ValueError, match="second time"):
        edit_target(q0, {"smile": 1.0, "delta.smile": 1.0}, blend_shape_model)
    with pytest.raises(ValueError, match="not finite"):
        edit_target(q0, {"smile": float("nan")}, blend_shape_model)
    small = random_nrsfm()
    with pytest.raises(ValueError, match="68 iBUG landmarks"):
        edit_target(small.q_mean[None], {"smile": 1.0}, small)
    upside_down = NRSfMModel(
        -blend_shape_model.mean_shape,
        blend_shape_model.directions,
        blend_shape_model.basis,
        blend_shape_model.q_mean,
        blend_shape_model.q_std,
    )
    with pytest.raises(ValueError, match="not upright"):
        derive_expression_directions(upside_down)


def test_reference_faces_set_the_coordinate_frame(blend_shape_model):
    model = blend_shape_model
    reference = model.q_mean + model.q_std * torch.randn(
        200, model.layout.dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64
    )
    reference[:, model.layout.alpha] *= torch.linspace(
        0.2, 2.0, model.num_basis, dtype=torch.float64
    )  # not unit spread
    directions = derive_expression_directions(model, reference)
    coordinates = expression_coordinates(reference, model, directions)
    torch.testing.assert_close(coordinates.mean(0), torch.zeros(3, dtype=torch.float64))
    torch.testing.assert_close(coordinates.std(0), torch.ones(3, dtype=torch.float64))
    target = edit_target(
        reference[:3], {"smile": 1.0, "delta.brows_raised": 2.0}, model, directions=directions, num_std=100
    )
    after = expression_coordinates(target.q, model, directions)
    torch.testing.assert_close(after[:, 0], torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close(after[:, 2], coordinates[:3, 2] + 2.0)
    with pytest.raises(ValueError, match="at least 2 faces"):
        derive_expression_directions(model, reference[:1])
