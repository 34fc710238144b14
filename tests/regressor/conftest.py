from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from regressor.standin import write_standin

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


@pytest.fixture(scope="session")
def standin(tmp_path_factory):
    """A small stand-in sampling dataset with its NRSfM fit (68 landmarks, K = 4, w+ of 4 x 16)."""
    return write_standin(tmp_path_factory.mktemp("standin"), num_samples=400, z_dim=16, num_ws=4)


@pytest.fixture
def compose_train(standin, tmp_path):
    """compose_train(*overrides) -> the `train` config pointed at the stand-in, writing under tmp_path."""

    def _compose(*overrides, return_hydra_config=False):
        base = [
            f"data.samples={standin.samples}",
            f"data.nrsfm_dir={standin.nrsfm_dir}",
            f"paths.work_dir={tmp_path / 'work'}",
            "trainer.enable_progress_bar=false",
        ]
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            return compose("train", overrides=[*base, *overrides], return_hydra_config=return_hydra_config)

    return _compose
