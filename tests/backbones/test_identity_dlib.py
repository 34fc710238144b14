"""dlib descriptor in torch: file parser, equivalence with dlib on aligned chips, cache, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
import skimage.transform
import torch

dlib = pytest.importorskip("dlib")

from backbones.identity.alignment import models_dir  # noqa: E402
from backbones.identity.dlib_format import parse_dlib_network, read_dlib_network  # noqa: E402
from backbones.identity.dlib_resnet import DlibResNet, add_zero_padded, default_weights_path, load_dlib_resnet  # noqa: E402
from common.errors import UserError  # noqa: E402


@pytest.fixture(scope="module")
def network(tmp_path_factory) -> DlibResNet:
    return load_dlib_resnet(cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def astronaut_chip() -> np.ndarray:
    image = skimage.data.astronaut()
    box = dlib.get_frontal_face_detector()(image, 1)[0]
    shape = dlib.shape_predictor(str(models_dir() / "shape_predictor_5_face_landmarks.dat"))(image, box)
    return dlib.get_face_chip(image, shape, size=150, padding=0.25)


def _chip_variants(chip: np.ndarray) -> list[np.ndarray]:
    """20 aligned 150x150 chips from the astronaut chip: flips, crops, rotations, colour changes,
    and (when the synthetic generator is present) rendered faces aligned by dlib."""
    rng = np.random.default_rng(0)
    variants = [chip, chip[:, ::-1]]
    for angle in (-12, -5, 5, 12):
        variants.append(skimage.transform.rotate(chip, angle, preserve_range=True, mode="edge"))
    for margin in (6, 12, 20):
        crop = chip[margin : 150 - margin, margin // 2 : 150 - margin // 2]
        variants.append(skimage.transform.resize(crop, (150, 150), preserve_range=True, anti_aliasing=True))
    for gain in ((1.2, 1.0, 0.8), (0.7, 0.9, 1.1), (1.0, 1.0, 1.0)):
        variants.append(chip * np.array(gain) + rng.normal(0, 4, chip.shape))
    variants.append(255 - chip.astype(np.float64))
    variants.append(chip.mean(axis=2, keepdims=True).repeat(3, axis=2))
    variants.extend(_synthetic_chips(20 - len(variants)))
    while len(variants) < 20:
        variants.append(np.clip(chip * rng.uniform(0.6, 1.4, 3), 0, 255))
    return [np.ascontiguousarray(np.clip(v, 0, 255).round().astype(np.uint8)) for v in variants[:20]]


def _synthetic_chips(count: int) -> list[np.ndarray]:
    try:
        from backbones.synthetic import build_synthetic_generator
    except ImportError:
        return []
    generator = build_synthetic_generator(img_resolution=256)
    images = generator.synthesis(generator.sample(count + 4, seed=100))
    frames = ((images + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(models_dir() / "shape_predictor_5_face_landmarks.dat"))
    chips = []
    for frame in frames:
        boxes = detector(np.ascontiguousarray(frame), 1)
        if len(boxes) and len(chips) < count:
            chips.append(
                dlib.get_face_chip(np.ascontiguousarray(frame), predictor(frame, boxes[0]), size=150, padding=0.25)
            )
    return chips


def test_parser_reads_whole_file_into_known_layers():
    layers = read_dlib_network(default_weights_path())
    kinds = [layer.kind for layer in layers]
    assert kinds[0] == "input_rgb_image_sized" and kinds[-1] == "loss_metric"
    assert kinds.count("con") == 29 and kinds.count("add_prev") == 14 and kinds.count("fc") == 1
    assert layers[0].values["rows"] == layers[0].values["cols"] == 150
    assert np.allclose(layers[0].values["mean_rgb"], [122.782, 117.001, 104.298], atol=1e-3)
    assert layers[1].values["params"].size == 32 * 3 * 7 * 7 + 32


def test_matches_dlib_descriptor_on_20_chips(network, astronaut_chip):
    chips = _chip_variants(astronaut_chip)
    recogniser = dlib.face_recognition_model_v1(str(default_weights_path()))
    expected = np.array([np.array(recogniser.compute_face_descriptor(chip)) for chip in chips])
    pixels = torch.from_numpy(np.stack(chips)).permute(0, 3, 1, 2).float()
    ours = network(pixels).double().numpy()
    difference = np.abs(ours - expected).max()
    print(f"max abs difference over {len(chips)} chips: {difference:.2e}")
    assert ours.shape == (20, 128)
    assert difference <= 1e-3
    assert np.linalg.norm(expected[0] - expected[-1]) > 0.05  # the chips differ, so the check has teeth


def test_batch_matches_single(network, astronaut_chip):
    pixels = torch.from_numpy(np.stack([astronaut_chip, astronaut_chip[::-1].copy()])).permute(0, 3, 1, 2).float()
    assert torch.allclose(network(pixels)[1:], network(pixels[1:]), atol=1e-5)


def test_cache_round_trip(tmp_path, network, astronaut_chip):
    first = load_dlib_resnet(cache_dir=tmp_path)
    cache_files = list(tmp_path.glob("dlib_resnet_*.pt"))
    assert len(cache_files) == 1 and not list(tmp_path.glob("*.tmp"))
    cached = load_dlib_resnet(cache_dir=tmp_path)
    pixels = torch.from_numpy(astronaut_chip).permute(2, 0, 1)[None].float()
    assert torch.equal(first(pixels), cached(pixels))
    assert not any(p.requires_grad for p in cached.parameters()) and not cached.training
    cache_files[0].write_bytes(b"damaged")
    assert torch.equal(load_dlib_resnet(cache_dir=tmp_path)(pixels), first(pixels))


def test_add_zero_padded_pads_at_the_end():
    a = torch.ones(1, 2, 3, 3)
    b = torch.full((1, 4, 2, 2), 2.0)
    total = add_zero_padded(a, b)
    assert total.shape == (1, 4, 3, 3)
    assert total[0, 0, 0, 0] == 3 and total[0, 0, 2, 2] == 1 and total[0, 3, 0, 0] == 2 and total[0, 3, 2, 2] == 0


def test_missing_and_corrupt_weights(tmp_path):
    with pytest.raises(UserError, match="dlib_face_recognition_resnet_model_v1.dat"):
        load_dlib_resnet(tmp_path / "nothing.dat", cache_dir="")
    data = default_weights_path().read_bytes()
    with pytest.raises(UserError, match="ends early"):
        parse_dlib_network(data[: len(data) // 2])
    with pytest.raises(UserError, match="not a dlib network"):
        parse_dlib_network(b"\x01\x01\x05hello")


def test_wrong_chip_size(network):
    with pytest.raises(ValueError, match="face chips"):
        network(torch.zeros(1, 3, 112, 112))
