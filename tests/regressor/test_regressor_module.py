import pytest
import torch

from common.errors import UserError
from regressor.datamodule import LatentLandmarkDataModule
from regressor.module import AttributeRegressorModule, landmark_squared_error


def test_landmark_squared_error_definition():
    target = torch.zeros(2, 3, 2)
    predicted = target.clone()
    predicted[0, 0] = torch.tensor([3.0, 4.0])
    torch.testing.assert_close(landmark_squared_error(predicted, target), torch.tensor([25.0 / 3, 0.0]))


def test_landmark_squared_error_weights_the_landmarks():
    target = torch.zeros(2, 3, 2)
    predicted = target.clone()
    predicted[0, 0] = torch.tensor([3.0, 4.0])
    predicted[1, 2] = torch.tensor([0.0, 2.0])
    weights = torch.tensor([0.0, 1.0, 3.0])
    torch.testing.assert_close(landmark_squared_error(predicted, target, weights), torch.tensor([0.0, 3.0]))


def test_the_loss_weights_the_landmarks_as_the_nrsfm_fit_did(standin):
    datamodule = LatentLandmarkDataModule(standin.samples, standin.nrsfm_dir, "w", batch_size=64)
    data = datamodule.loaded
    module = AttributeRegressorModule(data.nrsfm, 16, width=32, depth=1)
    batch = datamodule.dataset("train").__getitems__(range(32))
    moved = dict(batch, landmarks=batch["landmarks"].clone())
    moved["landmarks"][:, :17] += 1.0  # only the jaw line
    assert bool((module._losses(moved)[0] > module._losses(batch)[0]).all())
    module.nrsfm.metadata["landmark_weights"] = [0.0] * 17 + [1.0] * 51
    torch.testing.assert_close(module._losses(moved)[0], module._losses(batch)[0])


def test_batches_are_gathered_tensors_and_splits_are_disjoint(standin):
    datamodule = LatentLandmarkDataModule(standin.samples, standin.nrsfm_dir, "w", batch_size=64)
    datamodule.setup()
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["latent"].shape == (64, 16) and batch["landmarks"].shape == (64, 68, 2)
    assert batch["q"].shape == (64, 12) and batch["seed"].dtype == torch.int64
    seeds = {split: set(datamodule.dataset(split).tensors["seed"].tolist()) for split in ("train", "val", "test")}
    assert not (seeds["train"] & seeds["val"]) and not (seeds["train"] & seeds["test"])
    assert sum(map(len, seeds.values())) == len(datamodule.loaded.seeds)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        LatentLandmarkDataModule(standin.samples, standin.nrsfm_dir, batch_size=0)


def test_training_reduces_the_landmark_loss(standin):
    torch.manual_seed(0)
    datamodule = LatentLandmarkDataModule(standin.samples, standin.nrsfm_dir, "w", batch_size=64)
    data = datamodule.loaded
    module = AttributeRegressorModule(data.nrsfm, 16, width=64, depth=2)
    module.net.set_input_statistics(data.latents)
    optimizer = module.configure_optimizers()
    batch = datamodule.dataset("train").__getitems__(range(len(data.indices("train"))))
    first = module._losses(batch)[0].mean().item()
    for _ in range(100):
        optimizer.zero_grad()
        module._losses(batch)[0].mean().backward()
        optimizer.step()
    assert module._losses(batch)[0].mean().item() < 0.2 * first


def test_each_member_trains_on_its_own_loss_and_evaluation_scores_the_mean(standin):
    datamodule = LatentLandmarkDataModule(standin.samples, standin.nrsfm_dir, "w")
    data = datamodule.loaded
    batch = datamodule.dataset("train").__getitems__(range(32))
    torch.manual_seed(0)
    module = AttributeRegressorModule(data.nrsfm, 16, width=8, depth=1, num_members=3)
    per_member, _ = module._losses(batch, per_member=True)
    assert per_member.shape == (3 * 32,)
    for index, member in enumerate(module.net.members):
        own = module.nrsfm(
            module.nrsfm.unstandardise(member((batch["latent"] - module.net.input_mean) / module.net.input_std))
        )
        torch.testing.assert_close(
            per_member[index * 32 : (index + 1) * 32], landmark_squared_error(own, batch["landmarks"])
        )
    torch.testing.assert_close(module.training_step(batch, 0), per_member.mean())
    mean_prediction = module.nrsfm(module(batch["latent"]))
    torch.testing.assert_close(module._losses(batch)[0], landmark_squared_error(mean_prediction, batch["landmarks"]))


@pytest.mark.parametrize("num_members", [1, 2])
def test_nan_loss_names_the_batch_and_seeds(standin, num_members):
    datamodule = LatentLandmarkDataModule(standin.samples, standin.nrsfm_dir, "w", batch_size=64)
    data = datamodule.loaded
    module = AttributeRegressorModule(data.nrsfm, 16, width=8, depth=1, num_members=num_members)
    batch = datamodule.dataset("train").__getitems__([0, 1, 2])
    batch["latent"][1, 3] = float("nan")
    seed = int(batch["seed"][1])
    with pytest.raises(
        UserError, match=f"loss became nan at epoch 0, batch 7 .*seeds \\[{seed}\\].*lower regressor.optimizer.lr"
    ):
        module.training_step(batch, 7)


def test_q_supervision_adds_to_the_loss(standin):
    datamodule = LatentLandmarkDataModule(standin.samples, standin.nrsfm_dir, "w")
    data = datamodule.loaded
    batch = datamodule.dataset("train").__getitems__(range(32))
    torch.manual_seed(0)
    plain = AttributeRegressorModule(data.nrsfm, 16, width=8, depth=1)
    torch.manual_seed(0)
    supervised = AttributeRegressorModule(data.nrsfm, 16, width=8, depth=1, q_weight=0.5)
    landmark, q_error = plain._losses(batch)
    torch.testing.assert_close(supervised.training_step(batch, 0), landmark.mean() + 0.5 * q_error.mean())
    with pytest.raises(ValueError, match="q_weight must be >= 0"):
        AttributeRegressorModule(data.nrsfm, 16, q_weight=-1.0)
