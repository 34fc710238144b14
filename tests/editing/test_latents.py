import numpy as np
import pytest
import torch
from omegaconf import ListConfig

from common.errors import UserError
from editing.latents import latents_from_file, latents_from_seeds, resolve_faces
from editing.outputs import save_latents


def test_seeds_in_every_space(generator):
    z = latents_from_seeds(generator, [3, 4], "z")
    torch.testing.assert_close(z, generator.z_from_seeds([3, 4]))
    w = latents_from_seeds(generator, [3, 4], "w", truncation_psi=0.5)
    torch.testing.assert_close(w, generator.mapping(z, 0.5)[:, 0])
    assert latents_from_seeds(generator, [3], "w+").shape == (1, 3, 16)


def test_resolve_seeds_and_files(generator, tmp_path):
    ws = generator.mapping(generator.z_from_seeds([1, 2]))
    path = save_latents(tmp_path / "faces.npz", ws)
    torch.testing.assert_close(resolve_faces(generator, str(path), "w+"), ws.float().to(ws.dtype))
    torch.testing.assert_close(resolve_faces(generator, 5, "w"), resolve_faces(generator, "5", "w"))
    assert resolve_faces(generator, ListConfig([1, 2, 3]), "z").shape == (3, 16)


def test_bad_faces(generator, tmp_path):
    with pytest.raises(UserError, match="not found"):
        resolve_faces(generator, "missing.npz", "w")
    np.savez(tmp_path / "other.npz", w=np.zeros((1, 5, 16), dtype=np.float32))
    with pytest.raises(UserError, match="needs \\(N, 3, 16\\)"):
        latents_from_file(generator, tmp_path / "other.npz", "w")
    np.savez(tmp_path / "ok.npz", w=np.zeros((1, 3, 16), dtype=np.float32))
    with pytest.raises(UserError, match="have no z"):
        latents_from_file(generator, tmp_path / "ok.npz", "z")
    with pytest.raises(UserError, match="integer seeds"):
        resolve_faces(generator, [1.5], "w")
    with pytest.raises(ValueError, match="no seeds"):
        resolve_faces(generator, [], "w")
    with pytest.raises(ValueError, match="unknown latent space"):
        resolve_faces(generator, 1, "s")
