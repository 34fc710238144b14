"""rosinality stylegan2-pytorch checkpoints load into our StyleGAN2 with NVIDIA's names.

The test writes the NVIDIA reference network (sg2 fixture) in rosinality's layout (key names,
singleton dimensions, blur kernels, training `args`), loads it with `load_stylegan`, and compares
with NVIDIA's stored outputs. This checks the renaming and reshaping; that both codes store values
in the same convention is documented in `backbones.stylegan.rosinality`.
"""

from __future__ import annotations

import argparse

import pytest
import torch
from test_stylegan_reference import TOLERANCE, fixture_state_dict, load_fixture, max_abs_error

from backbones.stylegan import load_stylegan, load_stylegan3
from backbones.stylegan.rosinality import rosinality_to_nvidia
from common.errors import UserError


def rosinality_layout(nvidia: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """NVIDIA StyleGAN2 state dict -> rosinality's `g_ema` state dict."""
    state = {f"style.{k + 1}.{p}": nvidia[f"mapping.fc{k}.{p}"] for k in range(2) for p in ("weight", "bias")}
    state["input.input"] = nvidia["synthesis.b4.const"][None]
    blur = torch.outer(torch.tensor([1.0, 3, 3, 1]), torch.tensor([1.0, 3, 3, 1])) / 16 * 4

    def modulated(prefix: str, layer: str) -> dict[str, torch.Tensor]:
        return {
            f"{prefix}.conv.weight": nvidia[f"{layer}.weight"][None],
            f"{prefix}.conv.modulation.weight": nvidia[f"{layer}.affine.weight"],
            f"{prefix}.conv.modulation.bias": nvidia[f"{layer}.affine.bias"],
        }

    def conv(prefix: str, layer: str) -> dict[str, torch.Tensor]:
        return {
            **modulated(prefix, layer),
            f"{prefix}.noise.weight": nvidia[f"{layer}.noise_strength"].reshape(1),
            f"{prefix}.activate.bias": nvidia[f"{layer}.bias"],
        }

    def to_rgb(prefix: str, layer: str) -> dict[str, torch.Tensor]:
        return {**modulated(prefix, layer), f"{prefix}.bias": nvidia[f"{layer}.bias"].reshape(1, 3, 1, 1)}

    state.update(conv("conv1", "synthesis.b4.conv1"))
    state.update(to_rgb("to_rgb1", "synthesis.b4.torgb"))
    state["noises.noise_0"] = nvidia["synthesis.b4.conv1.noise_const"][None, None]
    for index, resolution in enumerate((8, 16, 32)):
        block = f"synthesis.b{resolution}"
        state.update(conv(f"convs.{2 * index}", f"{block}.conv0"))
        state[f"convs.{2 * index}.conv.blur.kernel"] = blur
        state.update(conv(f"convs.{2 * index + 1}", f"{block}.conv1"))
        state.update(to_rgb(f"to_rgbs.{index}", f"{block}.torgb"))
        state[f"to_rgbs.{index}.upsample.kernel"] = blur
        state[f"noises.noise_{2 * index + 1}"] = nvidia[f"{block}.conv0.noise_const"][None, None]
        state[f"noises.noise_{2 * index + 2}"] = nvidia[f"{block}.conv1.noise_const"][None, None]
    return state


def test_rosinality_checkpoint_reproduces_nvidia_outputs(tmp_path):
    fixture = load_fixture("sg2_tiny.npz")
    nvidia = fixture_state_dict(fixture)
    checkpoint = {
        "g_ema": rosinality_layout(nvidia),
        "latent_avg": nvidia["mapping.w_avg"],
        "args": argparse.Namespace(size=32, n_mlp=2, channel_multiplier=2),
    }
    torch.save(checkpoint, tmp_path / "550000.pt")
    generator = load_stylegan(tmp_path / "550000.pt", noise_mode="const")
    assert generator.name == "stylegan2" and generator.num_ws == 8
    with torch.no_grad():
        ws = generator.mapping(torch.from_numpy(fixture["z"]), float(fixture["truncation_psi"]))
        images = generator.synthesis(torch.from_numpy(fixture["ws"]))
        without_noise = generator.synthesis(torch.from_numpy(fixture["ws"]), noise_mode="none")
    assert max_abs_error(ws, fixture["ws"]) <= TOLERANCE
    assert max_abs_error(images, fixture["img"]) <= TOLERANCE
    assert max_abs_error(without_noise, fixture["img_noise_none"]) <= TOLERANCE
    with pytest.raises(UserError, match="use generator=stylegan2"):
        load_stylegan3(str(tmp_path / "550000.pt"))


def test_without_latent_avg_w_avg_is_estimated(tmp_path):
    fixture = load_fixture("sg2_tiny.npz")
    torch.save({"g_ema": rosinality_layout(fixture_state_dict(fixture))}, tmp_path / "trained.pt")
    generator = load_stylegan(tmp_path / "trained.pt")
    z = torch.randn(4096, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(generator.w_avg, generator.mapping(z, 1.0)[:, 0].mean(dim=0), atol=1e-6)
        assert max_abs_error(generator.mapping(torch.from_numpy(fixture["z"]), 1.0), fixture["ws_psi1"]) <= TOLERANCE


def test_unknown_rosinality_keys_are_refused():
    fixture = load_fixture("sg2_tiny.npz")
    state = rosinality_layout(fixture_state_dict(fixture))
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(UserError, match="unknown key extra.weight"):
        rosinality_to_nvidia(state)
