import pytest
import torch
from editing_standins import TinyRegressor

from editing.attributes import EditTarget, edit_target
from editing.gradient import gradient_edit


def _identity_distance(generator, identity, regressor, latent0, latent):
    embed = [identity.embed(generator.synthesis(generator.to_ws(x, regressor.latent_space))) for x in (latent0, latent)]
    return identity.distance(*embed)


def test_reaches_target_without_identity_term(regressor, latents):
    q0 = regressor(latents)
    target = edit_target(q0, {"delta.yaw": 10}, regressor.nrsfm)
    edit = gradient_edit(regressor, latents, target, num_steps=300, learning_rate=0.02, lambda_id=0.0)
    assert edit.losses["total"].shape == (300,)
    assert edit.losses["attribute"][-1] < 1e-2 * edit.losses["attribute"][0]
    yaw_error = (edit.q[:, 4] - target.q[:, 4]).abs().rad2deg()
    assert yaw_error.max() < 0.5
    held = ~target.mask
    assert ((edit.q - q0)[:, held].abs() / regressor.nrsfm.q_std[held]).max() < 0.05


def test_identity_term_keeps_identity_through_the_generator(regressor, generator, identity, latents):
    target = edit_target(regressor(latents), {"delta.yaw": 10}, regressor.nrsfm, free=["camera", "translation"])
    common = dict(num_steps=150, learning_rate=0.02, generator=generator, identity=identity)
    plain = gradient_edit(regressor, latents, target, lambda_id=0.0, **common)
    kept = gradient_edit(regressor, latents, target, lambda_id=1.0, **common)
    assert kept.losses["identity"][0] == pytest.approx(0.0, abs=1e-9)
    distance_plain = _identity_distance(generator, identity, regressor, latents, plain.latent)
    distance_kept = _identity_distance(generator, identity, regressor, latents, kept.latent)
    assert distance_kept.mean() < 0.7 * distance_plain.mean()
    torch.testing.assert_close(kept.losses["identity"][-1], distance_kept.mean(), atol=5e-3, rtol=0)


def test_latent_term_keeps_latent_close(regressor, latents):
    target = edit_target(regressor(latents), {"delta.yaw": 10}, regressor.nrsfm, free=["camera"])
    plain = gradient_edit(regressor, latents, target, num_steps=100, learning_rate=0.02, lambda_id=0.0)
    close = gradient_edit(
        regressor, latents, target, num_steps=100, learning_rate=0.02, lambda_id=0.0, lambda_latent=10.0
    )
    assert (close.latent - latents).norm() < (plain.latent - latents).norm()


def test_batch_equals_single(regressor, generator, identity, latents):
    target = edit_target(regressor(latents), {"delta.pitch": 5}, regressor.nrsfm)
    kwargs = dict(num_steps=20, learning_rate=0.02, generator=generator, identity=identity, lambda_id=0.1)
    batch = gradient_edit(regressor, latents, target, **kwargs)
    single = gradient_edit(
        regressor, latents[1:2], EditTarget(target.q[1:2], target.mask, target.constrained), **kwargs
    )
    torch.testing.assert_close(batch.latent[1:2], single.latent)


def test_z_and_w_plus_latents_go_through_the_generator(generator, identity):
    for space, shape in (("z", (3, 16)), ("w+", (3, 3, 16))):
        regressor = TinyRegressor(latent_space=space)
        latents = 0.5 * torch.randn(*shape, dtype=torch.float64)
        target = edit_target(regressor(latents), {"delta.roll": 5}, regressor.nrsfm)
        edit = gradient_edit(
            regressor, latents, target, num_steps=60, learning_rate=0.05, generator=generator, identity=identity
        )
        assert edit.latent.shape == shape
        assert edit.losses["attribute"][-1] < 0.1 * edit.losses["attribute"][0]


def test_rows_keep_the_optimisation_in_the_chosen_rows_of_w_plus(generator, identity):
    regressor = TinyRegressor(latent_space="w+")
    latents = 0.5 * torch.randn(3, 3, 16, dtype=torch.float64)
    target = edit_target(regressor(latents), {"delta.roll": 5}, regressor.nrsfm)
    edit = gradient_edit(
        regressor,
        latents,
        target,
        num_steps=60,
        learning_rate=0.05,
        generator=generator,
        identity=identity,
        rows=[0, 2],
    )
    assert torch.equal(edit.latent[:, 1], latents[:, 1])
    assert edit.losses["attribute"][-1] < 0.1 * edit.losses["attribute"][0]


def test_bad_input(regressor, latents):
    target = edit_target(regressor(latents), {"yaw": 0}, regressor.nrsfm)
    with pytest.raises(ValueError, match="needs a generator and an identity network"):
        gradient_edit(regressor, latents, target, lambda_id=0.01)
    with pytest.raises(ValueError, match="weights must have shape"):
        gradient_edit(regressor, latents, target, lambda_id=0, weights=torch.ones(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="num_steps >= 1"):
        gradient_edit(regressor, latents, target, lambda_id=0, num_steps=0)
    with pytest.raises(ValueError, match="must be >= 0"):
        gradient_edit(regressor, latents, target, lambda_id=0, lambda_latent=-1)
    with pytest.raises(ValueError, match="target q must have shape"):
        gradient_edit(regressor, latents[:1], target, lambda_id=0)
    with pytest.raises(ValueError, match="start must have shape"):
        gradient_edit(regressor, latents, target, lambda_id=0, start=latents[:2])
