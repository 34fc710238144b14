import math
import warnings

import pytest
import torch
from editing_standins import random_nrsfm

from editing.attributes import attribute_indices, attribute_range, edit_target, flatten_changes, transfer_target


@pytest.fixture
def model():
    return random_nrsfm()


@pytest.fixture
def q0(model):
    g = torch.Generator().manual_seed(0)
    return model.q_mean + 0.5 * model.q_std * torch.randn(3, model.layout.dim, generator=g, dtype=torch.float64)


def test_absolute_and_relative_edits(model, q0):
    target = edit_target(q0, {"yaw": 10, "delta": {"pitch": -5}, "alpha.2": 0.05}, model)
    layout = model.layout
    yaw, pitch, alpha2 = layout.names().index("yaw"), layout.names().index("pitch"), layout.names().index("alpha.2")
    torch.testing.assert_close(target.q[:, yaw], torch.full((3,), math.radians(10), dtype=torch.float64))
    torch.testing.assert_close(target.q[:, pitch], q0[:, pitch] - math.radians(5))
    torch.testing.assert_close(target.q[:, alpha2], torch.full((3,), 0.05, dtype=torch.float64))
    assert target.mask.nonzero().flatten().tolist() == sorted([yaw, pitch, alpha2])
    torch.testing.assert_close(target.q[:, ~target.mask], q0[:, ~target.mask])
    assert target.constrained.all()


def test_hydra_style_nested_keys_equal_dotted_keys(model, q0):
    nested = edit_target(q0, {"alpha": {"1": 0.1}, "delta": {"q": {"11": 0.02}}, "roll": None}, model)
    dotted = edit_target(q0, {"alpha.1": 0.1, "delta.ty": 0.02}, model)
    torch.testing.assert_close(nested.q, dotted.q)
    assert torch.equal(nested.mask, dotted.mask)
    assert flatten_changes({"delta": {"yaw": "20"}}) == {"delta.yaw": 20.0}


def test_scale_sets_k11_and_k22(model, q0):
    target = edit_target(q0, {"delta.scale": 0.1}, model)
    torch.testing.assert_close(target.q[:, [0, 2]], q0[:, [0, 2]] + 0.1)
    assert target.mask.nonzero().flatten().tolist() == [0, 2]


def test_group_edits(model, q0):
    target = edit_target(q0, {"rotation": 0, "expression": 0, "delta.translation": 0.1}, model)
    layout = model.layout
    torch.testing.assert_close(
        target.q[:, 3 : 6 + layout.num_basis], torch.zeros(3, 3 + layout.num_basis, dtype=torch.float64)
    )
    torch.testing.assert_close(target.q[:, layout.translation], q0[:, layout.translation] + 0.1)
    rotated = edit_target(q0, {"delta.rotation": 10}, model)
    torch.testing.assert_close(rotated.q[:, 3:6], q0[:, 3:6] + math.radians(10))
    with pytest.raises(ValueError, match="another edit already sets"):
        edit_target(q0, {"rotation": 0, "yaw": 5}, model)


def test_groups_and_free(model, q0):
    layout = model.layout
    assert attribute_indices(["pose"], layout) == [3, 4, 5, layout.dim - 2, layout.dim - 1]
    assert attribute_indices(["expression"], layout) == list(range(6, 6 + layout.num_basis))
    target = edit_target(q0, {"yaw": 0}, model, free=["camera"])
    assert target.constrained.nonzero().flatten().tolist() == list(range(3, layout.dim))


def test_transfer_takes_parts_from_source(model, q0):
    source = q0[:1] + 0.01
    target = transfer_target(source, q0, ["rotation", "alpha.0"], model)
    parts = [3, 4, 5, 6]
    torch.testing.assert_close(target.q[:, parts], source[:, parts].expand(3, -1))
    others = [i for i in range(model.layout.dim) if i not in parts]
    torch.testing.assert_close(target.q[:, others], q0[:, others])


def test_out_of_range_is_clamped_with_warning_or_refused(model, q0):
    low, high = attribute_range(model)
    with pytest.warns(UserWarning, match="yaw lies outside the training range"):
        target = edit_target(q0, {"yaw": 90}, model)
    torch.testing.assert_close(target.q[:, 4], high[4].expand(3))
    with pytest.raises(ValueError, match="outside the training range"):
        edit_target(q0, {"yaw": 90}, model, strict=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        edit_target(q0, {"yaw": 90}, model, num_std=10)


def test_bad_requests(model, q0):
    with pytest.raises(ValueError, match="unknown attribute 'frown'.*valid names: k11"):
        edit_target(q0, {"frown": 1}, model)
    with pytest.raises(ValueError, match="unknown attribute 'alpha.9'"):
        edit_target(q0, {"delta.alpha.9": 1}, model)
    with pytest.raises(ValueError, match="not a number"):
        edit_target(q0, {"yaw": "left"}, model)
    with pytest.raises(ValueError, match="not finite"):
        edit_target(q0, {"yaw": float("nan")}, model)
    with pytest.raises(ValueError, match="another edit already sets"):
        edit_target(q0, {"yaw": 1, "delta.yaw": 2}, model)
    with pytest.raises(ValueError, match="both set by the edit and listed in free"):
        edit_target(q0, {"yaw": 1}, model, free=["rotation"])
    with pytest.raises(ValueError, match="q0 must have shape"):
        edit_target(q0[:, :5], {"yaw": 1}, model)
    with pytest.raises(ValueError, match="q0 contains NaN"):
        edit_target(torch.full_like(q0, float("nan")), {"yaw": 1}, model)
    with pytest.raises(ValueError, match="unknown attribute 'face'"):
        transfer_target(q0, q0, ["face"], model)
    with pytest.raises(ValueError, match="q_source has 2 rows"):
        transfer_target(q0[:2], q0, ["rotation"], model)
