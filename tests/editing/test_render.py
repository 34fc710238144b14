import imageio.v3 as iio
import numpy as np
import pytest
import torch
from editing_standins import TinyRegressor

import editing.render as render_module
from editing.attributes import edit_target
from editing.linear import linear_edit
from editing.outputs import load_latents
from editing.render import render, write_edit_outputs


def test_render_chunks_match_one_call(generator):
    latents = torch.randn(5, 16, dtype=torch.float64)
    images = render(generator, latents, "w", batch_size=2)
    torch.testing.assert_close(images, generator.synthesis(generator.to_ws(latents, "w")))
    with pytest.raises(ValueError, match="batch_size"):
        render(generator, latents, "w", batch_size=0)


@pytest.mark.parametrize("space", ["z", "w+"])
def test_write_edit_outputs(space, generator, tmp_path):
    regressor = TinyRegressor(latent_space=space)
    shape = (2, 3, 16) if space == "w+" else (2, 16)
    latent0 = 0.5 * torch.randn(*shape, dtype=torch.float64)
    target = edit_target(regressor(latent0), {"delta.yaw": 5}, regressor.nrsfm)
    edit = linear_edit(regressor, latent0, target)
    paths = write_edit_outputs(
        tmp_path / "out",
        generator,
        regressor,
        latent0,
        edit.latent,
        target,
        metadata={"method": "linear"},
        num_frames=4,
    )
    assert set(paths) == {"latents", "side_by_side", "trajectory"}
    ws, metadata = load_latents(paths["latents"])
    torch.testing.assert_close(ws, generator.to_ws(edit.latent, space).float())
    assert metadata["method"] == "linear" and metadata["latent_space"] == space and metadata["generator"] == "tiny"
    with np.load(paths["latents"]) as data:
        np.testing.assert_allclose(data["q_edit"], regressor(edit.latent).numpy(), rtol=1e-6)
        assert data["mask"].sum() == 1 and data["w_original"].shape == ws.shape
    assert iio.imread(paths["side_by_side"]).shape == (2 * 16, 3 * 16, 3)
    assert iio.imread(paths["trajectory"], index=None).shape[:3] == (4, 16, 32)


def test_target_landmarks_take_the_edit_in_free_entries(generator, tmp_path, monkeypatch):
    regressor = TinyRegressor(latent_space="w")
    latent0 = 0.5 * torch.randn(2, 16, dtype=torch.float64)
    target = edit_target(regressor(latent0), {"delta.yaw": 5}, regressor.nrsfm, free=["translation"])
    edit = linear_edit(regressor, latent0, target)
    drawn = {}
    monkeypatch.setattr(
        render_module,
        "side_by_side",
        lambda images0, images, target_landmarks, *rest: drawn.setdefault("target", target_landmarks),
    )
    monkeypatch.setattr(render_module, "save_png", lambda path, image: path)
    write_edit_outputs(tmp_path / "out", generator, regressor, latent0, edit.latent, target, num_frames=0)
    expected = edit.q.clone()
    expected[:, target.constrained] = target.q[:, target.constrained]
    torch.testing.assert_close(drawn["target"], regressor.nrsfm(expected))
