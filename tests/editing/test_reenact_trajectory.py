"""editing.reenact_trajectory: joint edits of all frames of a clip on the tiny tanh regressor (float64)."""

import numpy as np
import pytest
import torch
from editing_standins import NUM_WS, W_DIM, TinyRegressor

from editing.attributes import EditTarget
from editing.linear import linear_edit
from editing.reenact_trajectory import (
    TemporalPreconditioner,
    joint_edit,
    second_difference_bands,
    second_difference_penalty,
)

NUM_FRAMES = 15


def clip_target(regressor, latent0, noise=0.0, seed=0):
    """Per-frame targets: the face's own q with yaw along a sine and alpha.0 along a line (plus noise)."""
    with torch.no_grad():
        q0 = regressor(latent0)
    time = torch.linspace(0, 1, NUM_FRAMES, dtype=torch.float64)
    std = regressor.nrsfm.q_std
    q = q0.repeat(NUM_FRAMES, 1)
    q[:, 4] += 0.5 * torch.sin(3 * time) * std[4]
    q[:, 6] += 0.5 * time * std[6]
    q += noise * torch.randn(q.shape, generator=torch.Generator().manual_seed(seed), dtype=q.dtype) * std
    mask = torch.zeros(q.shape[1], dtype=torch.bool)
    mask[[4, 6]] = True
    return EditTarget(q, mask, torch.ones(q.shape[1], dtype=torch.bool))


@pytest.fixture
def latent0():
    return 0.5 * torch.randn(1, W_DIM, generator=torch.Generator().manual_seed(5), dtype=torch.float64)


def test_second_difference_penalty_and_its_bands_are_d2_transpose_d2():
    for num_frames in (1, 2, 3, 8):
        d2 = np.diff(np.eye(num_frames), 2, axis=0)
        penalty = d2.T @ d2
        bands = second_difference_bands(num_frames)
        for offset in range(3):
            np.testing.assert_allclose(bands[2 - offset, offset:], np.diagonal(penalty, offset))
        values = torch.randn(num_frames, 4, dtype=torch.float64)
        np.testing.assert_allclose(second_difference_penalty(values).numpy(), penalty @ values.numpy(), atol=1e-12)


def test_preconditioner_solves_the_system_of_one_shared_jacobian():
    jacobian = torch.randn(3, 5, dtype=torch.float64)
    damping, smoothness, num_frames = 0.3, 2.0, 7
    d2 = np.diff(np.eye(num_frames), 2, axis=0)
    system = np.kron(np.eye(num_frames), (jacobian.T @ jacobian).numpy()) + np.kron(
        damping * np.eye(num_frames) + smoothness * d2.T @ d2, np.eye(5)
    )
    values = torch.randn(num_frames, 5, dtype=torch.float64)
    solved = TemporalPreconditioner(jacobian, damping, smoothness, num_frames)(values)
    np.testing.assert_allclose(system @ solved.numpy().ravel(), values.numpy().ravel(), atol=1e-9)


def test_without_smoothness_each_frame_takes_the_linear_editors_steps(latent0):
    regressor = TinyRegressor()
    target = clip_target(regressor, latent0, noise=0.05)
    joint = joint_edit(regressor, latent0, target, num_steps=3, damping=0.2, smoothness=0.0)
    frames = linear_edit(regressor, latent0.expand(NUM_FRAMES, -1), target, num_steps=3, damping=0.2)
    torch.testing.assert_close(joint.latent, frames.latent, atol=1e-6, rtol=0)
    torch.testing.assert_close(joint.error, frames.error, atol=1e-6, rtol=0)


def test_the_linearisation_at_the_target_is_as_smooth_as_the_targets(latent0):
    regressor = TinyRegressor()
    with torch.no_grad():
        q0 = regressor(latent0)
    time = torch.linspace(0, 1, NUM_FRAMES, dtype=torch.float64)[:, None]
    sine = clip_target(regressor, latent0)
    line = EditTarget(q0 + time * 0.3 * regressor.nrsfm.q_std, sine.mask, sine.constrained)
    first = joint_edit(regressor, latent0, line, num_steps=1, damping=0.2, smoothness=0.0)
    assert first.latent.diff(2, dim=0).abs().max() < 1e-9  # targets on a line in time: latents on a line too
    assert (first.latent - latent0).abs().max() > 1e-2


def test_smoothness_trades_frame_to_frame_jumps_for_a_little_accuracy(latent0):
    regressor = TinyRegressor()
    target = clip_target(regressor, latent0, noise=0.05)
    results = [
        joint_edit(regressor, latent0, target, num_steps=6, damping=0.05, smoothness=mu) for mu in (0.0, 1.0, 10.0)
    ]
    jumps = [float(result.latent.diff(2, dim=0).abs().mean()) for result in results]
    errors = [float(result.error[-1].mean()) for result in results]
    assert jumps[2] < 0.5 * jumps[1] < 0.05 * jumps[0]
    assert errors[0] < errors[1] < errors[2] < 0.6 * float(results[0].error[0].mean())


def test_batch_size_and_rows_of_w_plus(latent0):
    regressor = TinyRegressor(latent_space="w+")
    latent = 0.5 * torch.randn(1, NUM_WS, W_DIM, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    target = clip_target(regressor, latent)
    one = joint_edit(regressor, latent, target, smoothness=1.0, batch_size=1)
    many = joint_edit(regressor, latent, target, smoothness=1.0, batch_size=64)
    torch.testing.assert_close(one.latent, many.latent, atol=1e-9, rtol=0)
    rows = joint_edit(regressor, latent, target, smoothness=1.0, rows=[1])
    assert torch.equal(rows.latent[:, [0, 2]], latent[:, [0, 2]].expand(NUM_FRAMES, -1, -1))
    assert (rows.latent[:, 1] - latent[:, 1]).abs().max() > 1e-2


def test_metric_moves_only_within_its_span(latent0):
    regressor = TinyRegressor()
    metric = torch.diag(torch.cat([torch.ones(W_DIM // 2), torch.zeros(W_DIM // 2)])).double()
    result = joint_edit(regressor, latent0, clip_target(regressor, latent0), smoothness=1.0, metric=metric)
    assert torch.equal(result.latent[:, W_DIM // 2 :], latent0[:, W_DIM // 2 :].expand(NUM_FRAMES, -1))


def test_bad_settings(latent0):
    regressor = TinyRegressor()
    target = clip_target(regressor, latent0)
    with pytest.raises(ValueError, match="damping > 0 and smoothness >= 0"):
        joint_edit(regressor, latent0, target, damping=0.0)
    with pytest.raises(ValueError, match="damping > 0 and smoothness >= 0"):
        joint_edit(regressor, latent0, target, smoothness=-1.0)
    with pytest.raises(ValueError, match="num_steps and batch_size must be at least 1"):
        joint_edit(regressor, latent0, target, num_steps=0)
    with pytest.raises(ValueError, match="latent0"):
        joint_edit(regressor, latent0.expand(2, -1), target)
