"""FAN adapter: missing-weights error, and the crop/heatmap geometry with a stand-in TorchScript net."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data

from backbones.landmarks.fan import WEIGHTS_FILE, FanDetector, crop_boxes, crop_images, heatmaps_to_landmarks
from common.errors import UserError


class MagentaFinder(torch.nn.Module):
    """Stand-in for FAN: every one of the 68 heatmaps is the 'magenta-ness' of a 4x4 block of the crop."""

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        magenta = (crops[:, 0] + crops[:, 2]) / 2 - crops[:, 1]
        return F.avg_pool2d(magenta[:, None], 4).expand(-1, 68, -1, -1)


def test_missing_weights_names_file_and_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(UserError, match=f"put {WEIGHTS_FILE} .* in {tmp_path}/hub/checkpoints/"):
        FanDetector()


def test_corrupt_weights_is_a_user_error(tmp_path):
    bad = tmp_path / WEIGHTS_FILE
    bad.write_bytes(b"not a zip")
    with pytest.raises(UserError, match="not a TorchScript FAN archive"):
        FanDetector(weights=str(bad))


def test_stand_in_network_finds_a_painted_dot(tmp_path, monkeypatch):
    weights = tmp_path / "hub" / "checkpoints" / WEIGHTS_FILE
    weights.parent.mkdir(parents=True)
    torch.jit.script(MagentaFinder()).save(str(weights))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    image = data.astronaut().copy()
    image[130:133, 215:218] = (255, 0, 255)  # on the face, centre pixel (216, 131)
    blank = np.zeros_like(image)
    detections = FanDetector().detect_uint8(np.stack([image, blank]))
    assert detections.found.tolist() == [True, False]
    assert detections.landmarks.shape == (2, 68, 2)
    # One heatmap pixel covers side/64 ~ 3.6 image pixels here: the dot is found to within one.
    assert torch.allclose(detections.landmarks[0], torch.tensor([216.0, 131.0]), atol=3.6)
    assert torch.equal(detections.landmarks[1], torch.zeros(68, 2))
    assert detections.score[0] > 0.3 and detections.score[1] == 0


def test_crop_then_decode_round_trips_in_float64():
    boxes = torch.tensor([[40.0, 60.0, 140.0, 150.0], [10.0, 5.0, 50.0, 60.0]], dtype=torch.float64)
    centre, side = crop_boxes(boxes, 195.0)
    heatmaps = torch.zeros(2, 68, 64, 64, dtype=torch.float64)
    heatmaps[:, :, 20, 31] = 1.0  # row 20, column 31; neighbours equal -> no quarter-pixel nudge
    landmarks, score = heatmaps_to_landmarks(heatmaps, centre, side)
    expected = centre - side[:, None] / 2 + torch.tensor([31.5, 20.5], dtype=torch.float64) * side[:, None] / 64
    assert torch.allclose(landmarks, expected[:, None].expand(-1, 68, -1))
    assert torch.allclose(score, torch.ones(2, dtype=torch.float64))


def test_crop_images_samples_the_box():
    image = torch.zeros(1, 3, 100, 100)
    image[0, :, 40:60, 20:40] = 1.0  # square with centre (29.5, 49.5)
    crop = crop_images(image, torch.tensor([[29.5, 49.5]]), torch.tensor([40.0]))
    # The square covers the middle half of the crop.
    assert crop[0, 0, 128, 128] == 1.0 and crop[0, 0, 10, 10] == 0.0
    assert crop[0, 0, 128, :].sum().item() == pytest.approx(128, abs=2)


def test_bad_reference_scale():
    with pytest.raises(ValueError, match="reference_scale must be > 0"):
        FanDetector(weights="unused", reference_scale=0)
