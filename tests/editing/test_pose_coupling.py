"""editing.pose_coupling: the alpha-on-angle slopes and the targets of held alphas."""

import math

import pytest
import torch
from editing_standins import random_nrsfm

from editing.attributes import edit_target
from editing.pose_coupling import couple_held_alpha, pose_coupling


def test_pose_coupling_recovers_the_slopes():
    model = random_nrsfm()
    layout = model.layout
    g = torch.Generator().manual_seed(0)
    slopes = torch.randn(3, model.num_basis, generator=g, dtype=torch.float64)
    q = model.q_mean.repeat(500, 1) + 0.05 * torch.randn(500, layout.dim, generator=g, dtype=torch.float64)
    q[:, layout.rotation] += 0.3 * torch.randn(500, 3, generator=g, dtype=torch.float64)  # heads turn ~17 degrees
    q[:, layout.alpha] += (q[:, layout.rotation] - 0.3) @ slopes  # any offset: only the slopes count
    torch.testing.assert_close(pose_coupling(q, layout), slopes, atol=0.03, rtol=0)
    with pytest.raises(ValueError, match="more than 4 attribute vectors"):
        pose_coupling(q[:4], layout)


def test_held_alphas_follow_the_turn_and_nothing_else_moves():
    model = random_nrsfm()
    layout = model.layout
    q0 = model.q_mean.repeat(3, 1)
    coupling = torch.zeros(3, model.num_basis, dtype=torch.float64)
    coupling[1] = torch.arange(1.0, model.num_basis + 1)  # alpha_k moves k + 1 per radian of yaw
    target = edit_target(q0, {"delta.yaw": 10, "alpha.0": 0.5}, model, free=["alpha.1"])
    coupled = couple_held_alpha(target, q0, coupling, layout)
    shift = coupled.q - target.q
    alpha = torch.arange(layout.dim)[layout.alpha]
    assert shift[:, alpha[0]].abs().max() == 0 and shift[:, alpha[1]].abs().max() == 0  # set by the edit, free
    torch.testing.assert_close(shift[:, alpha[2:]], math.radians(10) * coupling[1, 2:].expand(3, -1))
    outside = torch.ones(layout.dim, dtype=torch.bool)
    outside[alpha] = False
    assert shift[:, outside].abs().max() == 0
    assert torch.equal(coupled.mask, target.mask) and torch.equal(coupled.constrained, target.constrained)
    expression = edit_target(q0, {"expression": 0}, model)
    assert couple_held_alpha(expression, q0, coupling, layout) is expression  # no alpha is held
