import pytest
import torch
from editing_standins import TinyRegressor

from common.errors import UserError
from editing.attributes import edit_target
from editing.linear import latent_jacobian, linear_edit


def test_jacobian_matches_autograd(regressor, latents):
    jacobian = latent_jacobian(regressor, latents)
    assert jacobian.shape == (6, regressor.nrsfm.layout.dim, latents.shape[1])
    reference = torch.autograd.functional.jacobian(lambda w: regressor(w[None])[0], latents[2])
    torch.testing.assert_close(jacobian[2], reference)


def test_yaw_edit_reaches_target_and_holds_the_rest(regressor, latents):
    q0 = regressor(latents)
    target = edit_target(q0, {"delta.yaw": 10}, regressor.nrsfm)
    edit = linear_edit(regressor, latents, target, num_steps=6)
    torch.testing.assert_close(edit.q, target.q, atol=1e-8, rtol=0)
    assert edit.error[-1].max() < 1e-8 < edit.error[0].min()
    torch.testing.assert_close(edit.q[:, ~target.mask], q0[:, ~target.mask], atol=1e-8, rtol=0)


def test_newton_repeats_converge_quadratically(regressor, latents):
    target = edit_target(regressor(latents), {"delta.yaw": 2, "delta.alpha.1": 0.01}, regressor.nrsfm)
    error = linear_edit(regressor, latents, target, num_steps=3).error
    assert (error[1] < 0.3 * error[0]).all()
    assert (error[3] < error[2] ** 1.5).all() and (error[2] < error[1] ** 1.5).all()


def test_free_rows_are_not_constrained(regressor, latents):
    q0 = regressor(latents)
    target = edit_target(q0, {"delta.yaw": 10}, regressor.nrsfm, free=["camera", "translation"])
    edit = linear_edit(regressor, latents, target, num_steps=6)
    rows = target.constrained
    torch.testing.assert_close(edit.q[:, rows], target.q[:, rows], atol=1e-8, rtol=0)
    full = linear_edit(regressor, latents, edit_target(q0, {"delta.yaw": 10}, regressor.nrsfm), num_steps=6)
    step_free, step_full = ((e.latent - latents).norm(dim=-1) for e in (edit, full))
    assert (step_free < step_full).all()


def test_damping_shortens_the_step(regressor, latents):
    target = edit_target(regressor(latents), {"delta.yaw": 10}, regressor.nrsfm)
    plain = linear_edit(regressor, latents, target, num_steps=1)
    damped = linear_edit(regressor, latents, target, num_steps=1, damping=10.0)
    assert ((damped.latent - latents).norm(dim=-1) < (plain.latent - latents).norm(dim=-1)).all()
    assert (damped.error[-1] > plain.error[-1]).all()


def test_metric_keeps_the_step_out_of_directions_without_spread(regressor, latents):
    target = edit_target(regressor(latents), {"delta.yaw": 5}, regressor.nrsfm)
    half = latents.shape[1] - 2  # two directions without spread; the other 14 can meet the 12 constrained rows
    spread = torch.diag(torch.cat([torch.ones(half), torch.full((2,), 1e-4)])).double()
    edit = linear_edit(regressor, latents, target, num_steps=6, metric=spread)
    step = edit.latent - latents
    assert step[:, half:].abs().max() < 1e-3 * step[:, :half].abs().max()
    torch.testing.assert_close(edit.q, target.q, atol=1e-8, rtol=0)
    identity = torch.eye(latents.shape[1], dtype=torch.float64)
    torch.testing.assert_close(
        linear_edit(regressor, latents, target, metric=identity).latent, linear_edit(regressor, latents, target).latent
    )


def test_batch_equals_single(regressor, latents):
    target = edit_target(regressor(latents), {"delta.yaw": 5, "delta.alpha.0": 0.02}, regressor.nrsfm)
    batch = linear_edit(regressor, latents, target, num_steps=2)
    single = linear_edit(
        regressor, latents[3:4], type(target)(target.q[3:4], target.mask, target.constrained), num_steps=2
    )
    torch.testing.assert_close(batch.latent[3:4], single.latent)


def test_w_plus_latents():
    regressor = TinyRegressor(latent_space="w+")
    latents = 0.5 * torch.randn(4, 3, 16, dtype=torch.float64)
    target = edit_target(regressor(latents), {"delta.roll": -8}, regressor.nrsfm)
    for metric in (None, torch.diag(torch.linspace(0.5, 1.5, 16, dtype=torch.float64))):
        edit = linear_edit(regressor, latents, target, num_steps=6, metric=metric)
        assert edit.latent.shape == latents.shape
        torch.testing.assert_close(edit.q, target.q, atol=1e-8, rtol=0)


def test_rows_keep_the_step_in_the_chosen_rows_of_w_plus():
    regressor = TinyRegressor(latent_space="w+")
    latents = 0.5 * torch.randn(4, 3, 16, dtype=torch.float64)
    target = edit_target(regressor(latents), {"delta.roll": -8}, regressor.nrsfm)
    for metric in (None, torch.diag(torch.linspace(0.5, 1.5, 16, dtype=torch.float64))):
        edit = linear_edit(regressor, latents, target, num_steps=6, metric=metric, rows=[1])
        torch.testing.assert_close(edit.q, target.q, atol=1e-8, rtol=0)
        assert torch.equal(edit.latent[:, [0, 2]], latents[:, [0, 2]]) and not torch.equal(
            edit.latent[:, 1], latents[:, 1]
        )


def test_bad_input(regressor, latents):
    target = edit_target(regressor(latents), {"yaw": 0}, regressor.nrsfm)
    with pytest.raises(ValueError, match="target q must have shape"):
        linear_edit(regressor, latents[:2], target)
    with pytest.raises(ValueError, match="latent0 contains NaN"):
        linear_edit(regressor, torch.full_like(latents, float("nan")), target)
    with pytest.raises(ValueError, match="num_steps"):
        linear_edit(regressor, latents, target, num_steps=0)
    with pytest.raises(ValueError, match="damping"):
        linear_edit(regressor, latents, target, damping=-1.0)
    with pytest.raises(ValueError, match="latent metric must have shape"):
        linear_edit(regressor, latents, target, metric=torch.eye(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="batch dimension"):
        linear_edit(regressor, latents[0], target)
    with pytest.raises(UserError, match="needs latent_space=w\\+"):
        linear_edit(regressor, latents, target, rows=[0])
    w_plus = TinyRegressor(latent_space="w+")
    latents = torch.zeros(2, 3, 16, dtype=torch.float64)
    for rows in ([], [3], [-1]):
        with pytest.raises(UserError, match=r"rows must be a non-empty list of rows in 0..2"):
            linear_edit(w_plus, latents, edit_target(w_plus(latents), {"yaw": 0}, w_plus.nrsfm), rows=rows)


def test_hold_background_keeps_the_frame_colours_and_still_reaches_the_target(regressor, generator, latents):
    from editing.background import background_colours

    q0 = regressor(latents)
    target = edit_target(q0, {"delta.yaw": 2}, regressor.nrsfm, free=["camera", "translation"])

    def colours(latent):
        return background_colours(generator.synthesis(generator.to_ws(latent, "w")))

    plain = linear_edit(regressor, latents, target, num_steps=6)
    held = linear_edit(
        regressor, latents, target, num_steps=6, generator=generator, hold_background=True, background_tolerance=1e-3
    )
    rows = target.constrained
    torch.testing.assert_close(held.q[:, rows], target.q[:, rows], atol=1e-6, rtol=0)
    moved_plain, moved_held = ((colours(e.latent) - colours(latents)).abs().amax(-1) for e in (plain, held))
    assert (moved_held < 1e-5).all() and (moved_plain > 1e-3).all()
    with pytest.raises(ValueError, match="needs the generator"):
        linear_edit(regressor, latents, target, hold_background=True)
