"""Training throughput of the attribute regressor and time to reach a validation landmark loss.

    python -m benchmarks.regressor [--num-samples 20000] [--latent-dim 512] [--epochs 20]
                                 [--target-loss 2e-5] [--width 512] [--depth 3] [--batch-size 512]

On a stand-in dataset (`regressor.standin`: latents -> q by a fixed smooth map, landmarks = R(q) +
noise, 68 landmarks, K = 8) it prints: the data loader alone (samples/s over one pass of the
training split, 5 passes), then per epoch of real training (`AttributeRegressorModule` +
`LatentLandmarkDataModule` under a Lightning Trainer, no logging or checkpoints) the training
samples/s, the validation landmark loss and the wall time since training started, and finally the
time at which the validation loss first fell below --target-loss.
Run it with `-m` from the repository root: as a plain script its own name would hide the
`regressor` package.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import pytorch_lightning as pl
import torch

from regressor.datamodule import LatentLandmarkDataModule
from regressor.module import AttributeRegressorModule
from regressor.standin import write_standin


class EpochClock(pl.Callback):
    """Records, per epoch, the training time, the number of training samples and the validation loss."""

    def __init__(self, target_loss: float):
        self.target_loss, self.reached_at = target_loss, None
        self.start = self.epoch_start = 0.0
        self.num_samples = 0
        self.throughputs: list[float] = []

    def on_train_start(self, trainer, module):
        self.start = time.perf_counter()

    def on_train_epoch_start(self, trainer, module):
        self.epoch_start, self.num_samples = time.perf_counter(), 0

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.num_samples += len(batch["seed"])

    def on_validation_epoch_start(self, trainer, module):
        self.train_seconds = time.perf_counter() - self.epoch_start

    def on_validation_epoch_end(self, trainer, module):
        loss = float(trainer.callback_metrics["val/landmark_loss"])
        self.throughputs.append(self.num_samples / self.train_seconds)
        elapsed = time.perf_counter() - self.start
        if self.reached_at is None and loss < self.target_loss:
            self.reached_at = elapsed
        print(
            f"epoch {trainer.current_epoch:3d}: {self.throughputs[-1]:9.0f} training samples/s, "
            f"val landmark loss {loss:.3e}, {elapsed:7.1f} s elapsed",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-samples", type=int, default=20000)
    parser.add_argument("--latent-dim", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--target-loss", type=float, default=2e-5)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        paths = write_standin(tmp, num_samples=args.num_samples, z_dim=args.latent_dim, num_basis=8, store_ws=False)
        datamodule = LatentLandmarkDataModule(paths.samples, paths.nrsfm_dir, "w", batch_size=args.batch_size)
        data = datamodule.loaded
        train = data.indices("train")
        print(
            f"stand-in: {len(data.seeds)} found faces ({len(train)} train), latent dim {args.latent_dim}, "
            f"68 landmarks, K=8; MLP {args.depth} x {args.width}, batch {args.batch_size}, "
            f"{torch.get_num_threads()} torch threads"
        )

        start = time.perf_counter()
        num_loaded = sum(len(batch["seed"]) for _ in range(5) for batch in datamodule.train_dataloader())
        print(f"data loader alone (5 passes): {num_loaded / (time.perf_counter() - start):.0f} samples/s")

        pl.seed_everything(0, verbose=False)
        module = AttributeRegressorModule(
            data.nrsfm,
            args.latent_dim,
            args.width,
            args.depth,
            optimizer=lambda params: torch.optim.Adam(params, lr=args.lr),
        )
        module.net.set_input_statistics(data.latents[train])
        clock = EpochClock(args.target_loss)
        trainer = pl.Trainer(
            accelerator="cpu",
            devices=1,
            max_epochs=args.epochs,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            callbacks=[clock],
        )
        trainer.fit(module, datamodule=datamodule)
        fit_floor = float(
            data.nrsfm(data.q_fit[data.indices("val")]).sub(data.landmarks[data.indices("val")]).square().sum(-1).mean()
        )
        print(
            f"training samples/s over epochs: median {statistics.median(clock.throughputs):.0f}, "
            f"min {min(clock.throughputs):.0f}, max {max(clock.throughputs):.0f}"
        )
        print(f"NRSfM fit's own val landmark loss (the floor): {fit_floor:.3e}")
        if clock.reached_at is None:
            print(f"val landmark loss < {args.target_loss:.1e}: not reached in {args.epochs} epochs")
        else:
            print(f"val landmark loss < {args.target_loss:.1e}: reached after {clock.reached_at:.1f} s")


if __name__ == "__main__":
    main()
