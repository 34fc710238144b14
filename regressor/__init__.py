"""The attribute regressor phi: latent (z, w or w+) -> q, trained through the NRSfM landmarks model.

Modules: `mlp` (plain nn.Module), `data` (loading and checking the sampling dataset and NRSfM fit),
`datamodule` (LightningDataModule), `module` (LightningModule), `train` (entry point), `export`
(the single-file `regressor.pt` loadable without Lightning), `report` (metrics and plot),
`standin` (a small synthetic stand-in of the sampling + fit outputs for tests and benchmarks).
"""
