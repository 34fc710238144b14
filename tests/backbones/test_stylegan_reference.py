"""Our StyleGAN2/3 networks, loaded from NVIDIA-computed state dicts, reproduce NVIDIA's outputs.

Fixtures (tiny networks; see data/stylegan/README.md) are copied from ../shared/fixtures/stylegan;
the tests use the copy, else the shared folder, else skip.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from backbones.stylegan.nvidia import build_generator, generator_kwargs
from backbones.stylegan.safe_pickle import PersistentRecord
from backbones.stylegan.stylegan3 import make_input_transform

TOLERANCE = 1e-4
FIXTURE_DIRS = [
    Path(__file__).parent / "data" / "stylegan",
    Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "stylegan",
]


def fixture_path(name: str) -> Path:
    for folder in FIXTURE_DIRS:
        if (folder / name).is_file():
            return folder / name
    pytest.skip(
        f"StyleGAN reference fixture {name} is absent (tests/backbones/data/stylegan or ../shared/fixtures/stylegan)"
    )


def load_fixture(name: str) -> dict[str, np.ndarray]:
    with np.load(fixture_path(name), allow_pickle=False) as arrays:
        return {key: arrays[key] for key in arrays.files}


def fixture_state_dict(fixture: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {
        key.removeprefix("state/"): torch.from_numpy(value)
        for key, value in fixture.items()
        if key.startswith("state/")
    }


def generator_from_fixture(fixture: dict[str, np.ndarray]):
    """Our generator built from the fixture's NVIDIA kwargs (translated as the loader does) and state."""
    init_kwargs = json.loads(str(fixture["init_kwargs_json"]))
    record = PersistentRecord("Generator", 6, "", {"_init_kwargs": init_kwargs})
    state_dict = fixture_state_dict(fixture)
    architecture = "stylegan3" if "networks_stylegan3" in str(fixture["class_name"]) else "stylegan2"
    return build_generator(architecture, generator_kwargs(record, architecture), state_dict)


def max_abs_error(ours: torch.Tensor, reference: np.ndarray) -> float:
    assert tuple(ours.shape) == reference.shape
    return float((ours - torch.from_numpy(reference)).abs().max())


@pytest.mark.parametrize(
    "name, expected_name, num_ws",
    [
        ("sg2_tiny.npz", "stylegan2", 8),
        ("sg3t_tiny.npz", "stylegan3-t", 16),
        ("sg3r_tiny.npz", "stylegan3-r", 16),
    ],
)
def test_reproduces_nvidia_mapping_and_images(name, expected_name, num_ws):
    fixture = load_fixture(name)
    generator = generator_from_fixture(fixture)
    assert generator.name == expected_name and generator.num_ws == num_ws
    assert set(generator.state_dict()) == set(fixture_state_dict(fixture))
    z = torch.from_numpy(fixture["z"])
    with torch.no_grad():
        ws = generator.mapping(z, float(fixture["truncation_psi"]))
        ws_psi1 = generator.mapping(z, 1.0)
        assert max_abs_error(ws, fixture["ws"]) <= TOLERANCE
        assert max_abs_error(ws_psi1, fixture["ws_psi1"]) <= TOLERANCE
        images = generator.synthesis(torch.from_numpy(fixture["ws"]), noise_mode="const")
        images_psi1 = generator.synthesis(torch.from_numpy(fixture["ws_psi1"]), noise_mode="const")
    assert max_abs_error(images, fixture["img"]) <= TOLERANCE
    assert max_abs_error(images_psi1, fixture["img_psi1"]) <= TOLERANCE
    # The images are not trivially close to each other: the comparison can fail.
    assert float((images - images_psi1).abs().max()) > 100 * TOLERANCE


def test_stylegan2_noise_modes_match_nvidia():
    fixture = load_fixture("sg2_tiny.npz")
    generator = generator_from_fixture(fixture)
    ws = torch.from_numpy(fixture["ws"])
    with torch.no_grad():
        without_noise = generator.synthesis(ws, noise_mode="none")
        torch.manual_seed(0)
        random_a = generator.synthesis(ws, noise_mode="random")
        random_b = generator.synthesis(ws, noise_mode="random")
    assert max_abs_error(without_noise, fixture["img_noise_none"]) <= TOLERANCE
    assert float((without_noise - torch.from_numpy(fixture["img"])).abs().max()) > 100 * TOLERANCE
    assert float((random_a - random_b).abs().max()) > 100 * TOLERANCE


@pytest.mark.parametrize("name", ["sg3t_tiny.npz", "sg3r_tiny.npz"])
def test_stylegan3_input_transform_matches_nvidia(name):
    fixture = load_fixture(name)
    generator = generator_from_fixture(fixture)
    transform = make_input_transform(*(float(v) for v in fixture["make_transform_args"]))
    assert float((transform - torch.from_numpy(fixture["input_transform"])).abs().max()) <= 1e-6
    generator.set_input_transform(transform)
    with torch.no_grad():
        images = generator.synthesis(torch.from_numpy(fixture["ws"]))
    assert max_abs_error(images, fixture["img_transform"]) <= TOLERANCE
    assert float((images - torch.from_numpy(fixture["img"])).abs().max()) > 100 * TOLERANCE


@pytest.mark.parametrize("name", ["sg3t_tiny.npz", "sg3r_tiny.npz"])
def test_stylegan3_designs_the_same_filters_as_nvidia(name):
    """Filters designed by our constructor equal the stored upstream design (so random-weight
    networks of any size are built as NVIDIA builds them)."""
    fixture = load_fixture(name)
    init_kwargs = json.loads(str(fixture["init_kwargs_json"]))
    record = PersistentRecord("Generator", 6, "", {"_init_kwargs": init_kwargs})
    from backbones.stylegan.stylegan3 import StyleGAN3Generator

    fresh = StyleGAN3Generator(**generator_kwargs(record, "stylegan3")).state_dict()
    filters = {k: v for k, v in fixture_state_dict(fixture).items() if k.endswith("_filter")}
    assert filters
    for key, value in filters.items():
        assert torch.allclose(fresh[key], value, atol=1e-7), key


def test_batch_equals_single_samples():
    fixture = load_fixture("sg3r_tiny.npz")
    generator = generator_from_fixture(fixture)
    ws = torch.from_numpy(fixture["ws"][:2])
    with torch.no_grad():
        batch = generator.synthesis(ws)
        single = torch.cat([generator.synthesis(ws[i : i + 1]) for i in range(ws.shape[0])])
    assert float((batch - single).abs().max()) <= 1e-5
