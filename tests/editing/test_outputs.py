import imageio.v3 as iio
import numpy as np
import pytest
import torch

from common.errors import UserError
from editing.outputs import (
    ACHIEVED_COLOR,
    TARGET_COLOR,
    draw_landmarks,
    images_to_uint8,
    interpolate_latents,
    load_latents,
    save_gif,
    save_latents,
    save_png,
    side_by_side,
)


def test_latents_round_trip_in_nvidia_layout(tmp_path):
    ws = torch.randn(4, 3, 16)
    path = save_latents(
        tmp_path / "out" / "edited.npz",
        ws,
        {"generator": "tiny", "latent_space": "w"},
        q_target=torch.zeros(4, 12),
        seeds=np.arange(4),
    )
    with np.load(path, allow_pickle=False) as data:
        assert data["w"].shape == (4, 3, 16) and data["w"].dtype == np.float32
        assert set(data.files) == {"w", "metadata", "q_target", "seeds"}
    loaded, metadata = load_latents(path)
    torch.testing.assert_close(loaded, ws)
    assert metadata == {"generator": "tiny", "latent_space": "w"}
    assert not list(path.parent.glob(".*tmp*"))


def test_loads_nvidia_projector_files_without_metadata(tmp_path):
    np.savez(tmp_path / "projected_w.npz", w=np.ones((1, 3, 16), dtype=np.float32))
    ws, metadata = load_latents(tmp_path / "projected_w.npz")
    assert ws.shape == (1, 3, 16) and metadata == {}


def test_bad_latent_files(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_latents(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="is not a latent file"):
        load_latents(tmp_path / "junk.npz")
    np.savez(tmp_path / "flat.npz", w=np.ones((3, 16), dtype=np.float32))
    with pytest.raises(ValueError, match="must have shape"):
        load_latents(tmp_path / "flat.npz")
    np.savez(tmp_path / "objects.npz", w=np.array([{"a": 1}], dtype=object))
    with pytest.raises(UserError, match="is not a latent file"):
        load_latents(tmp_path / "objects.npz")
    with pytest.raises(ValueError, match="ws contains NaN"):
        save_latents(tmp_path / "nan.npz", torch.full((1, 3, 16), float("nan")))


def test_images_to_uint8_range():
    images = torch.tensor([-1.0, 0.0, 1.0, 3.0]).view(1, 1, 1, 4).expand(1, 3, 1, 4)
    pixels = images_to_uint8(images)
    assert pixels.shape == (1, 1, 4, 3) and pixels.dtype == np.uint8
    assert pixels[0, 0, :, 0].tolist() == [0, 128, 255, 255]


def test_side_by_side_draws_landmarks_where_they_are(tmp_path):
    original = -torch.ones(2, 3, 32, 32)
    edited = torch.zeros(2, 3, 32, 32)
    target = torch.full((2, 5, 2), 0.25)
    achieved = torch.full((2, 5, 2), 0.75)
    grid = side_by_side(original, edited, target, achieved)
    assert grid.shape == (64, 96, 3)
    assert (grid[:, :32] == 0).all() and (grid[:, 32:64] == 128).all()
    marked = grid[32:64, 64:96]
    assert tuple(marked[24, 24]) == ACHIEVED_COLOR
    assert (marked == TARGET_COLOR).all(-1).any()
    path = save_png(tmp_path / "edit.png", grid)
    np.testing.assert_array_equal(iio.imread(path), grid)


def test_side_by_side_puts_the_reference_first():
    reference = torch.ones(1, 3, 8, 8)
    grid = side_by_side(
        -torch.ones(1, 3, 8, 8), torch.zeros(1, 3, 8, 8), torch.zeros(1, 5, 2), torch.zeros(1, 5, 2), reference
    )
    assert grid.shape == (8, 32, 3)
    assert (grid[:, :8] == 255).all() and (grid[:, 8:16] == 0).all()
    with pytest.raises(ValueError, match="reference"):
        side_by_side(
            -torch.ones(1, 3, 8, 8),
            torch.zeros(1, 3, 8, 8),
            torch.zeros(1, 5, 2),
            torch.zeros(1, 5, 2),
            torch.ones(2, 3, 8, 8),
        )


def test_draw_landmarks_leaves_input_alone():
    image = np.zeros((16, 16, 3), dtype=np.uint8)
    drawn = draw_landmarks(image, np.array([[0.5, 0.5]]), (255, 0, 0))
    assert image.sum() == 0 and drawn[8, 8, 0] == 255


def test_trajectory_gif(tmp_path):
    latent0, latent1 = torch.zeros(2, 4), torch.ones(2, 4)
    path_latents = interpolate_latents(latent0, latent1, 5)
    assert path_latents.shape == (5, 2, 4)
    torch.testing.assert_close(path_latents[0], latent0)
    torch.testing.assert_close(path_latents[-1], latent1)
    torch.testing.assert_close(path_latents[2], torch.full((2, 4), 0.5))
    frames = path_latents[:, :, :3, None, None].expand(5, 2, 3, 8, 8) * 2 - 1
    path = save_gif(tmp_path / "trajectory.gif", frames)
    movie = iio.imread(path, index=None)
    assert movie.shape[:3] == (5, 8, 16)
    assert not list(tmp_path.glob(".*tmp*"))


def test_bad_image_input(tmp_path):
    with pytest.raises(ValueError, match="images must have shape"):
        images_to_uint8(torch.zeros(2, 4, 8, 8))
    with pytest.raises(ValueError, match="achieved_landmarks must have shape"):
        side_by_side(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8), torch.zeros(1, 5, 2), torch.zeros(2, 5, 2))
    with pytest.raises(ValueError, match="num_frames"):
        interpolate_latents(torch.zeros(1, 4), torch.ones(1, 4), 1)
    with pytest.raises(ValueError, match="frames must have shape"):
        save_gif(tmp_path / "x.gif", torch.zeros(3, 3, 8, 8))
