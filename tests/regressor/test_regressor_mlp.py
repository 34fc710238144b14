import pytest
import torch

from regressor.mlp import AttributeMLP


def test_shapes_layers_and_batch_vs_single():
    mlp = AttributeMLP(16, 12, [32, 32, 32])
    assert len(mlp.members) == 1 and sum(isinstance(m, torch.nn.Linear) for m in mlp.members[0]) == 4
    latent = torch.randn(5, 16)
    out = mlp(latent)
    assert out.shape == (5, 12)
    torch.testing.assert_close(mlp(latent[2:3]), out[2:3])


def test_ensemble_is_the_mean_of_members_initialised_apart():
    torch.manual_seed(0)
    mlp = AttributeMLP(16, 12, [32], head_scale=1.0, num_members=3)
    latent = torch.randn(5, 16)
    members = mlp.forward_members(latent)
    assert members.shape == (3, 5, 12)
    torch.testing.assert_close(mlp(latent), members.mean(0))
    torch.testing.assert_close(members[1], mlp.members[1](latent))  # input statistics start at 0 and 1
    assert not torch.allclose(members[0], members[1])
    assert mlp.hparams()["num_members"] == 3
    with pytest.raises(ValueError, match="num_members must be a positive integer"):
        AttributeMLP(4, 2, [8], num_members=0)


def test_input_statistics_standardise_inputs():
    mlp = AttributeMLP(3, 2, [8])
    latents = torch.randn(1000, 3) * torch.tensor([10.0, 0.1, 1.0]) + torch.tensor([5.0, -2.0, 0.0])
    mlp.set_input_statistics(latents)
    standardised = (latents - mlp.input_mean) / mlp.input_std
    torch.testing.assert_close(standardised.mean(0), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(standardised.std(0), torch.ones(3))
    constant = torch.ones(10, 3)
    mlp.set_input_statistics(constant)
    assert torch.equal(mlp.input_std, torch.ones(3))


def test_head_starts_near_zero_so_q_starts_near_mean():
    mlp = AttributeMLP(16, 12, [64, 64], head_scale=0.0)
    assert torch.equal(mlp(torch.randn(4, 16)), torch.zeros(4, 12))


def test_bad_arguments_are_value_errors():
    with pytest.raises(ValueError, match="unknown activation"):
        AttributeMLP(4, 2, [8], activation="sigmoidish")
    with pytest.raises(ValueError, match="layer sizes must be positive"):
        AttributeMLP(4, 2, [0])
    with pytest.raises(ValueError, match="latent must have shape"):
        AttributeMLP(4, 2, [8])(torch.zeros(3, 5))
