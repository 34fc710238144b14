"""LightningModule training phi through the NRSfM model's landmarks only.

Landmark loss (the project's L_L, docs/METHOD.md, "Evaluation"): for predicted landmarks X-hat = R(phi(w))
and detected landmarks X, both (B, L, 2) in normalised image units,
    L_L = mean over samples b and landmarks l of ||X-hat_bl - X_bl||^2,
the squared Euclidean 2D distance per landmark (x and y summed), averaged over landmarks and over
the valid (found) samples. Logged as "{train,val,test}/landmark_loss". When the NRSfM fit weighted
its landmarks (`NRSfMModel.landmark_weights`, e.g. a down-weighted face contour), the mean over
landmarks is the same weighted mean, so phi is trained on the fit's objective.

Each member of an ensemble (`num_members` > 1, `regressor.mlp`) is trained on its own landmark
loss, the mean over members; validation and test report the ensemble's mean prediction, which is
what editing uses.

Optional q supervision (default off): `q_weight` times the mean squared error between phi-hat(w)
and the factorizer's standardised q, for the first `q_epochs` epochs (None: all epochs). It can
steady the start of training; the reported objective is always the landmark loss.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import pytorch_lightning as pl
import torch

from common.errors import UserError
from nrsfm.model import NRSfMModel
from regressor.export import AttributeRegressor
from regressor.mlp import AttributeMLP


def landmark_squared_error(
    predicted: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-sample mean over landmarks of the squared 2D distance: (B, L, 2), (B, L, 2) -> (B,).

    With `weights` (L,) the weighted mean sum_l w_l e_l / sum_l w_l."""
    distances = (predicted - target).square().sum(-1)  # (B, L)
    if weights is None:
        return distances.mean(-1)
    weights = weights.to(distances)
    return (distances * weights).sum(-1) / weights.sum()


class AttributeRegressorModule(pl.LightningModule):
    """Trains an `AttributeMLP` so that R(mu + sigma * mlp(latent)) matches the detected landmarks.

    Args:
        nrsfm: the fitted NRSfM model (frozen; its buffers travel in checkpoints).
        latent_dim: D, the flat latent size.
        width, depth: hidden layer size and count (paper: 512, 3).
        activation: hidden activation (see `regressor.mlp.ACTIVATIONS`).
        num_members: networks in the ensemble (1: the paper's single MLP).
        optimizer: partial optimiser taking the parameters (default Adam, lr 1e-3).
        scheduler: optional partial LR scheduler taking the optimiser; ReduceLROnPlateau monitors
            "val/landmark_loss".
        q_weight, q_epochs: the optional q-supervision term (see module docstring).
    """

    def __init__(
        self,
        nrsfm: NRSfMModel,
        latent_dim: int,
        width: int = 512,
        depth: int = 3,
        activation: str = "relu",
        num_members: int = 1,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
        q_weight: float = 0.0,
        q_epochs: int | None = None,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["nrsfm", "optimizer", "scheduler"])
        if q_weight < 0:
            raise ValueError(f"q_weight must be >= 0, got {q_weight}")
        self.nrsfm = nrsfm.float().requires_grad_(False)
        self.net = AttributeMLP(latent_dim, nrsfm.layout.dim, [width] * depth, activation, num_members=num_members)
        self.optimizer_factory = optimizer or (lambda params: torch.optim.Adam(params, lr=1e-3))
        self.scheduler_factory = scheduler
        self.q_weight, self.q_epochs = float(q_weight), q_epochs

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        """(B, D) flat latents -> q (B, 8 + K)."""
        return self.nrsfm.unstandardise(self.net(latent))

    def _losses(self, batch: dict[str, torch.Tensor], per_member: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(landmark error, q-hat squared error), each (B,) per sample of the ensemble mean, or with
        `per_member` (M * B,) per member and sample."""
        q_hat = (
            self.net.forward_members(batch["latent"]) if per_member else self.net(batch["latent"])[None]
        )  # (M, B, Q)
        num_predictions = q_hat.shape[0]
        q_hat = q_hat.flatten(0, 1)
        predicted = self.nrsfm(self.nrsfm.unstandardise(q_hat))
        q_error = (q_hat - self.nrsfm.standardise(batch["q"]).repeat(num_predictions, 1)).square().mean(-1)
        target = batch["landmarks"].repeat(num_predictions, 1, 1)
        return landmark_squared_error(predicted, target, self.nrsfm.landmark_weights), q_error

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        landmark_error, q_error = self._losses(batch, per_member=True)
        loss = landmark_error.mean()
        if self.q_weight > 0 and (self.q_epochs is None or self.current_epoch < self.q_epochs):
            loss = loss + self.q_weight * q_error.mean()
        if not torch.isfinite(loss):
            finite = torch.isfinite(landmark_error.view(-1, len(batch["seed"]))).all(0)
            bad = batch["seed"][~finite][:5].tolist()
            raise UserError(
                f"training loss became {loss.item()} at epoch {self.current_epoch}, batch {batch_idx} "
                f"(global step {self.global_step}; non-finite for seeds {bad}); lower regressor.optimizer.lr "
                "or check those samples"
            )
        batch_size = len(batch["latent"])
        self.log("train/landmark_loss", landmark_error.mean(), prog_bar=True, batch_size=batch_size)
        self.log("train/loss", loss, batch_size=batch_size)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def _evaluate(self, batch: dict[str, torch.Tensor], stage: str) -> None:
        landmark_error, q_error = self._losses(batch)
        batch_size = len(landmark_error)
        self.log(f"{stage}/landmark_loss", landmark_error.mean(), prog_bar=True, batch_size=batch_size, sync_dist=True)
        self.log(f"{stage}/q_error", q_error.mean(), batch_size=batch_size, sync_dist=True)

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.net.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "monitor": "val/landmark_loss", "interval": "epoch"},
        }

    def to_attribute_regressor(
        self, latent_space: str, latent_shape: Sequence[int], metadata: dict
    ) -> AttributeRegressor:
        """The trained phi as a Lightning-free module (on CPU, eval mode)."""
        return (
            AttributeRegressor(copy.deepcopy(self.net), copy.deepcopy(self.nrsfm), latent_space, latent_shape, metadata)
            .cpu()
            .eval()
        )
