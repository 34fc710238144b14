"""Alignment: similarity fit (float64 properties), dlib chip geometry, differentiable extraction."""

from __future__ import annotations

import math

import numpy as np
import pytest
import skimage.data
import torch

from backbones.identity.alignment import (
    FacePointDetector,
    centred_chip_to_image,
    dlib_chip_to_image,
    extract_chips,
    similarity_transform,
    template_chip_to_image,
)


def _random_similarity(generator: torch.Generator, batch: int) -> torch.Tensor:
    angle = torch.rand(batch, generator=generator, dtype=torch.float64) * 2 * math.pi
    scale = 0.5 + 2 * torch.rand(batch, generator=generator, dtype=torch.float64)
    rotation = torch.stack([torch.cos(angle), -torch.sin(angle), torch.sin(angle), torch.cos(angle)], 1).view(-1, 2, 2)
    translation = 50 * torch.randn(batch, 2, 1, generator=generator, dtype=torch.float64)
    return torch.cat([scale[:, None, None] * rotation, translation], dim=2)


def test_similarity_recovers_known_transform_float64():
    generator = torch.Generator().manual_seed(0)
    truth = _random_similarity(generator, 6)
    source = torch.randn(6, 5, 2, generator=generator, dtype=torch.float64) * 30
    target = source @ truth[:, :, :2].transpose(1, 2) + truth[:, :, 2:].transpose(1, 2)
    assert torch.allclose(similarity_transform(source, target), truth, atol=1e-10)


def test_similarity_batch_matches_single_and_rejects_bad_shapes():
    generator = torch.Generator().manual_seed(1)
    source = torch.randn(3, 5, 2, generator=generator, dtype=torch.float64)
    target = torch.randn(3, 5, 2, generator=generator, dtype=torch.float64)
    assert torch.allclose(similarity_transform(source, target)[2:], similarity_transform(source[2:], target[2:]))
    with pytest.raises(ValueError, match="target points"):
        similarity_transform(source, target[:, :4])


def test_template_geometry_maps_template_onto_points():
    generator = torch.Generator().manual_seed(2)
    truth = _random_similarity(generator, 2)
    template = torch.rand(5, 2, generator=generator, dtype=torch.float64) * 112
    points = template @ truth[:, :, :2].transpose(1, 2) + truth[:, :, 2:].transpose(1, 2)
    assert torch.allclose(template_chip_to_image(points, template), truth, atol=1e-9)


def test_chip_matches_dlib_get_face_chip():
    dlib = pytest.importorskip("dlib")
    image = skimage.data.astronaut()
    images = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 127.5 - 1
    detector = FacePointDetector("dlib5")
    points, found = detector.detect(images)
    assert found.tolist() == [True]
    chip = extract_chips((images + 1) * 127.5, dlib_chip_to_image(points), 150)[0].permute(1, 2, 0).numpy()
    box = dlib.get_frontal_face_detector()(image, 1)[0]
    reference = dlib.get_face_chip(image, detector._predictor(image, box), size=150, padding=0.25).astype(np.float64)
    difference = np.abs(chip - reference)
    print(f"chip vs dlib.get_face_chip: mean {difference.mean():.3f}, max {difference.max():.3f} grey levels")
    assert difference.max() <= 1.01  # dlib truncates its bilinear result to uint8


def test_extract_chips_is_differentiable_and_identity_for_unit_map():
    images = torch.rand(2, 1, 12, 12, dtype=torch.float64, requires_grad=True)
    unit = centred_chip_to_image(2, 12, 12, 12)
    assert torch.allclose(extract_chips(images, unit, 12), images, atol=1e-12)
    points = torch.tensor([[[9.0, 4], [7.5, 4], [2.5, 4], [4, 4], [5.5, 8]]], dtype=torch.float64).expand(2, -1, -1)
    geometry = dlib_chip_to_image(points, size=6)
    assert torch.autograd.gradcheck(lambda x: extract_chips(x, geometry, 6), (images,), atol=1e-6, fast_mode=True)


def test_pyramid_levels_antialias_large_downscale():
    images = torch.zeros(1, 1, 256, 256)
    images[..., ::2, :] = 1.0  # one-pixel stripes alias badly under plain bilinear sampling
    chip = extract_chips(images, centred_chip_to_image(1, 256, 256, 32), 32)
    interior = chip[..., 2:-2, 2:-2]
    assert abs(interior.mean().item() - 0.5) < 0.02 and interior.std().item() < 0.02
    plain = torch.nn.functional.interpolate(images, size=32, mode="bilinear", align_corners=True)
    assert plain.std().item() > 0.2  # without the pyramid the stripes alias


def test_bad_input():
    with pytest.raises(ValueError, match="scheme"):
        FacePointDetector("dlib68")
    with pytest.raises(ValueError, match="chip_to_image"):
        extract_chips(torch.zeros(1, 3, 8, 8), torch.full((1, 2, 3), float("nan")), 4)
    with pytest.raises(ValueError, match="five alignment points"):
        dlib_chip_to_image(torch.zeros(1, 4, 2))
