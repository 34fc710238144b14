"""FAN through face-alignment: missing package and weights, user weights loaded by the package, the batched
crop/heatmap geometry (against the package's own functions, and with a stand-in network) and the aligned mode."""

import pickle
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data

from backbones.landmarks import fan
from backbones.landmarks.fan import FanDetector, crop_boxes, crop_images, heatmaps_to_landmarks
from common.errors import UserError

WEIGHTS_FILE = "2DFAN4-11f355bf06.pth.tar"


class MagentaFinder(torch.nn.Module):
    """Stand-in for FAN: every one of the 68 heatmaps is the 'magenta-ness' of a 4x4 block of the crop."""

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        magenta = (crops[:, 0] + crops[:, 2]) / 2 - crops[:, 1]
        return F.avg_pool2d(magenta[:, None], 4).expand(-1, 68, -1, -1)


def astronaut_with_dot() -> np.ndarray:
    image = data.astronaut().copy()
    image[130:133, 215:218] = (255, 0, 255)  # on the face, centre pixel (216, 131)
    return image


def test_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "face_alignment", None)  # as if it were not installed
    with pytest.raises(UserError, match=r'pip install -e "\.\[fan\]"'):
        FanDetector(device="cpu")


def test_missing_weights_names_file_and_folder(tmp_path, monkeypatch):
    pytest.importorskip("face_alignment")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(UserError, match=f"put {WEIGHTS_FILE} .* in {tmp_path}/hub/checkpoints/"):
        FanDetector(device="cpu")
    assert not list(tmp_path.rglob("*.tar"))  # nothing was downloaded


def test_corrupt_weights_is_a_user_error(tmp_path, monkeypatch):
    pytest.importorskip("face_alignment")
    weights = tmp_path / "hub" / "checkpoints" / WEIGHTS_FILE
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"not a checkpoint")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(UserError, match="is not face-alignment's FAN weights"):
        FanDetector(device="cpu")


def test_user_weights_load_through_the_package(tmp_path, monkeypatch):
    face_alignment = pytest.importorskip("face_alignment")
    torch.manual_seed(0)
    state = {
        key: value.half() for key, value in face_alignment.models.FAN(4).state_dict().items()
    }  # half: a 48 MB file
    weights = tmp_path / "hub" / "checkpoints" / WEIGHTS_FILE
    weights.parent.mkdir(parents=True)
    torch.save(state, weights)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    detector = FanDetector(device="cpu", flip_input=False)
    assert isinstance(detector._network, face_alignment.models.FAN)
    assert torch.equal(detector._network.state_dict()["conv1.weight"], state["conv1.weight"].float())
    detections = detector.detect_uint8(np.stack([data.astronaut(), np.zeros((512, 512, 3), np.uint8)]))
    assert detections.found.tolist() == [True, False]
    assert ((detections.landmarks[0] > 0) & (detections.landmarks[0] < 512)).all()


def test_stand_in_network_finds_a_painted_dot(monkeypatch):
    monkeypatch.setattr(fan, "load_fan", lambda device: MagentaFinder())
    image = astronaut_with_dot()
    detections = FanDetector(device="cpu", flip_input=False, batch_size=1).detect_uint8(
        np.stack([image, np.zeros_like(image), image])
    )
    assert detections.found.tolist() == [True, False, True]
    assert detections.landmarks.shape == (3, 68, 2)
    # One heatmap pixel covers side/64 ~ 3.6 image pixels here: the dot is found to within one.
    assert torch.allclose(detections.landmarks[0], torch.tensor([216.0, 131.0]), atol=3.6)
    assert torch.equal(detections.landmarks[2], detections.landmarks[0])  # a batch of one per call changes nothing
    assert torch.equal(detections.landmarks[1], torch.zeros(68, 2))
    assert detections.score[0] > 0.3 and detections.score[1] == 0


def test_aligned_mode_verifies_the_fixed_box_and_searches_the_rest(monkeypatch):
    monkeypatch.setattr(fan, "load_fan", lambda device: MagentaFinder())
    image = astronaut_with_dot()
    image[380:, :100] = 0  # around the wrong box below: the stand-in's heatmaps are flat, its points follow the box
    detector = FanDetector(device="cpu", flip_input=False, aligned=True)
    assert detector.needs_calibration
    with pytest.raises(ValueError, match="needs a face box"):
        detector.detect_uint8(image[None])
    detector.calibrate(image[None])
    assert not detector.needs_calibration
    searched = FanDetector(device="cpu", flip_input=False).detect_uint8(image[None])
    points, _, verified = detector.verified_fits(np.stack([image, np.zeros_like(image)]))
    assert verified.tolist() == [True, False]  # the dot stays put when the box moves; a blank image's points follow it
    detections = detector.detect_uint8(np.stack([image, np.zeros_like(image)]))
    assert detections.found.tolist() == [True, False]
    assert np.array_equal(detections.landmarks[0].numpy(), points[0])
    assert torch.allclose(detections.landmarks[0], torch.tensor([216.0, 131.0]), atol=3.6)
    wrong = FanDetector(device="cpu", flip_input=False, aligned=True, face_box=(0.0, 0.85, 0.1, 0.95))
    assert not wrong.verified_fits(image[None])[2][0]
    assert torch.equal(wrong.detect_uint8(image[None]).landmarks, searched.landmarks)  # failed the check: searched
    copy = pickle.loads(pickle.dumps(detector))
    assert copy.calibration == detector.calibration
    assert torch.equal(copy.detect_uint8(image[None]).landmarks, detections.landmarks[:1])


def test_flipped_crop_heatmaps_come_back_to_the_dot(monkeypatch):
    pytest.importorskip("face_alignment")
    monkeypatch.setattr(fan, "load_fan", lambda device: MagentaFinder())
    detections = FanDetector(device="cpu", flip_input=True).detect_uint8(astronaut_with_dot()[None])
    assert torch.allclose(detections.landmarks[0], torch.tensor([216.0, 131.0]), atol=3.6)


def test_crop_matches_the_package_crop():
    utils = pytest.importorskip("face_alignment.utils")
    y, x = np.mgrid[0:300, 0:400]
    image = np.stack([x * 255 / 400, y * 255 / 300, (x + y) * 255 / 700], -1).astype(np.uint8)
    centre, scale = np.array([210.0, 140.0]), 1.1
    theirs = utils.crop(image, centre, scale).astype(np.float64)
    pixels = torch.from_numpy(image).permute(2, 0, 1)[None].double()
    ours = (
        crop_images(pixels, torch.from_numpy(centre[None]), torch.tensor([200.0 * scale], dtype=torch.float64))[0]
        .permute(1, 2, 0)
        .numpy()
    )
    # The package rounds the crop window to whole pixels: 1.1 px of a ~1 grey level/px ramp.
    assert np.abs(ours - theirs)[2:-2, 2:-2].mean() < 1.5


@pytest.mark.slow  # numba compiles the package's decoder first (about a minute)
def test_decoding_matches_the_package_decoding():
    utils = pytest.importorskip("face_alignment.utils")
    generator = torch.Generator().manual_seed(0)
    heatmaps = F.avg_pool2d(torch.rand(2, 68, 66, 66, generator=generator, dtype=torch.float64), 3, stride=1)
    centre, scale = np.array([120.0, 90.0]), 0.8
    _, theirs, _ = utils.get_preds_fromhm(heatmaps.float().numpy(), centre, scale)
    ours, _ = heatmaps_to_landmarks(
        heatmaps, torch.from_numpy(np.stack([centre, centre])), torch.full((2,), 200.0 * scale, dtype=torch.float64)
    )
    interior = ((ours > 2) & (ours < 400)).all(-1)
    # The package truncates the points to whole pixels after a pseudo-inverse (x.999 becomes x - 1).
    assert np.abs(ours.numpy() - theirs)[interior.numpy()].max() <= 1.5


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


def test_bad_arguments():
    with pytest.raises(ValueError, match="reference_scale must be > 0"):
        FanDetector(reference_scale=0)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        FanDetector(batch_size=0)
    with pytest.raises(ValueError, match="fit_tolerance must be > 0"):
        FanDetector(fit_tolerance=0)
    with pytest.raises(ValueError, match="face_box must be"):
        FanDetector(aligned=True, face_box=(0.5, 0.2, 0.4, 0.8))
