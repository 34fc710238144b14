import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.utils import instantiate

from editing.attributes import edit_target


@pytest.mark.parametrize("method", ["linear", "gradient"])
def test_edit_configs_instantiate_and_edit(method, regressor, generator, identity, latents):
    with initialize_config_module(config_module="conf", version_base="1.3"):
        # the stand-in's Jacobian is small against the default damping, which is tuned on a trained regressor
        cfg = compose(overrides=[f"+edit={method}", *(["edit.damping=0.1"] if method == "linear" else [])])
    editor = instantiate(cfg.edit)
    target = edit_target(regressor(latents), {"delta.yaw": 5}, regressor.nrsfm)
    runtime = {"generator": generator, "identity": identity} if method == "gradient" else {}
    result = editor(regressor, latents, target, **runtime)
    before = (regressor(latents) - target.q).abs().max()
    assert (result.q - target.q).abs().max() < 0.5 * before
    assert result.latent.shape == latents.shape and torch.isfinite(result.latent).all()
