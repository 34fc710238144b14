"""StyleGAN2 checkpoints in the layout of rosinality's stylegan2-pytorch (`.pt`), renamed to NVIDIA's.

A rosinality checkpoint is a `torch.save` dict with `g_ema` (a state dict) and, for files converted
from NVIDIA's TensorFlow release, `latent_avg` (w_dim,). Training checkpoints also hold `g`, `d`,
optimiser states and `args` (an `argparse.Namespace`, the only non-tensor class allowed while
reading). The renaming (rosinality -> NVIDIA, R = 8, 16, ... per block i = 0, 1, ...):

    style.{k+1}.{weight,bias}           -> mapping.fc{k}.{weight,bias}
    latent_avg                          -> mapping.w_avg
    input.input (1, C, 4, 4)            -> synthesis.b4.const (C, 4, 4)
    conv1 / to_rgb1                     -> synthesis.b4.conv1 / synthesis.b4.torgb
    convs.{2i} / convs.{2i+1} / to_rgbs.{i} -> synthesis.b{R}.conv0 / .conv1 / .torgb
    noises.noise_0, noise_{2i+1}, noise_{2i+2} (1, 1, R, R) -> the matching layer's noise_const (R, R)
    *.conv.weight (1, O, I, k, k) -> *.weight;  *.conv.modulation -> *.affine;
    *.noise.weight (1,) -> *.noise_strength ();  *.activate.bias -> *.bias;  to_rgb*.bias (1, 3, 1, 1) -> *.bias (3,)

Both codes store weights in the same convention (equalized learning rate, modulation bias including
its +1, the upsampling conv kernel as used by the transposed convolution), so values copy as they
are. rosinality's fixed blur kernels are not copied (ours are the same [1, 3, 3, 1] filter).
rosinality's networks do not clamp activations, so these load with `conv_clamp=None`.
Without `latent_avg`, `w_avg` is the mean of the mapping output over 4096 latents drawn from a
generator seeded with 0, as rosinality's `mean_latent(4096)` estimates it.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from backbones.stylegan.nvidia import build_generator
from backbones.stylegan.ops import box_filter_2d
from backbones.stylegan.wrapper import StyleGANGenerator
from common.errors import UserError

_NUM_MEAN_LATENTS = 4096
RESAMPLE_TAPS = (1, 3, 3, 1)
_LAYER_RENAMES = [
    (r"conv\.weight$", "weight"),
    (r"conv\.modulation\.", "affine."),
    (r"noise\.weight$", "noise_strength"),
    (r"activate\.bias$", "bias"),
]


def is_rosinality_checkpoint(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("g_ema"), dict) and "input.input" in data["g_ema"]


def rosinality_to_nvidia(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """rosinality `g_ema` state dict -> NVIDIA state-dict names and shapes (without `mapping.w_avg`),
    plus the fixed [1, 3, 3, 1] resample filters. Raises UserError on names it does not know."""
    num_blocks = 1 + sum(1 for key in state if re.fullmatch(r"to_rgbs\.\d+\.bias", key))
    block_of_conv = {0: ("b4", "conv1")}
    for index in range(num_blocks - 1):
        block = f"b{8 * 2**index}"
        block_of_conv[2 * index + 1] = (block, "conv0")
        block_of_conv[2 * index + 2] = (block, "conv1")
    renamed: dict[str, torch.Tensor] = {}
    for block, layer in block_of_conv.values():
        renamed[f"synthesis.{block}.resample_filter"] = box_filter_2d(RESAMPLE_TAPS)
        renamed[f"synthesis.{block}.{layer}.resample_filter"] = box_filter_2d(RESAMPLE_TAPS)
    for key, value in state.items():
        if key.endswith(("blur.kernel", "upsample.kernel")):
            continue
        if match := re.fullmatch(r"style\.(\d+)\.(weight|bias)", key):
            renamed[f"mapping.fc{int(match[1]) - 1}.{match[2]}"] = value
        elif key == "input.input":
            renamed["synthesis.b4.const"] = value[0]
        elif match := re.fullmatch(r"noises\.noise_(\d+)", key):
            block, layer = block_of_conv[int(match[1])]
            renamed[f"synthesis.{block}.{layer}.noise_const"] = value[0, 0]
        else:
            renamed[_synthesis_name(key, block_of_conv)] = _squeeze(key, value)
    return renamed


def generator_from_rosinality(
    data: dict[str, Any], *, truncation_psi: float = 1.0, noise_mode: str = "const"
) -> StyleGANGenerator:
    """Frozen StyleGAN2 generator from a loaded rosinality checkpoint dict."""
    state = rosinality_to_nvidia(data["g_ema"])
    const = state["synthesis.b4.const"]
    num_mapping_layers = sum(1 for key in state if re.fullmatch(r"mapping\.fc\d+\.weight", key))
    if num_mapping_layers == 0:
        raise UserError("the rosinality checkpoint has no mapping layers (style.*); it is not a generator")
    w_dim = state["mapping.fc0.weight"].shape[1]
    num_blocks = 1 + sum(1 for key in state if re.fullmatch(r"synthesis\.b\d+\.conv0\.weight", key))
    img_resolution = 4 * 2 ** (num_blocks - 1)
    last_channels = state[f"synthesis.b{img_resolution}.conv1.weight"].shape[0]
    kwargs = dict(
        z_dim=w_dim,
        w_dim=w_dim,
        img_resolution=img_resolution,
        num_mapping_layers=num_mapping_layers,
        channel_base=last_channels * img_resolution,
        channel_max=const.shape[0],
        conv_clamp=None,
    )
    latent_avg = data.get("latent_avg")
    state["mapping.w_avg"] = torch.zeros(w_dim) if latent_avg is None else latent_avg.reshape(-1)[:w_dim]
    generator = build_generator("stylegan2", kwargs, state, truncation_psi=truncation_psi, noise_mode=noise_mode)
    if latent_avg is None:
        latents = torch.randn(_NUM_MEAN_LATENTS, w_dim, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            generator.w_avg.copy_(generator.mapping_network(latents, 1.0)[:, 0].mean(dim=0))
    return generator


def _synthesis_name(key: str, block_of_conv: dict[int, tuple[str, str]]) -> str:
    if match := re.fullmatch(r"conv1\.(.+)", key):
        prefix, rest = "synthesis.b4.conv1", match[1]
    elif match := re.fullmatch(r"to_rgb1\.(.+)", key):
        prefix, rest = "synthesis.b4.torgb", match[1]
    elif match := re.fullmatch(r"convs\.(\d+)\.(.+)", key):
        block, layer = block_of_conv.get(int(match[1]) + 1, (None, None))
        if block is None:
            raise UserError(f"rosinality checkpoint key {key} has no matching block; the file is inconsistent")
        prefix, rest = f"synthesis.{block}.{layer}", match[2]
    elif match := re.fullmatch(r"to_rgbs\.(\d+)\.(.+)", key):
        prefix, rest = f"synthesis.b{8 * 2 ** int(match[1])}.torgb", match[2]
    else:
        raise UserError(f"unknown key {key} in the rosinality checkpoint's g_ema; not a stylegan2-pytorch generator")
    for pattern, replacement in _LAYER_RENAMES:
        rest = re.sub(pattern, replacement, rest)
    return f"{prefix}.{rest}"


def _squeeze(key: str, value: torch.Tensor) -> torch.Tensor:
    """Drop rosinality's leading singleton dimensions: conv weights (1, O, I, k, k) -> (O, I, k, k),
    noise weight (1,) -> (), ToRGB bias (1, 3, 1, 1) -> (3,)."""
    if key.endswith("conv.weight"):
        return value[0]
    if key.endswith("noise.weight"):
        return value.reshape(())
    if re.fullmatch(r"to_rgb(1|s\.\d+)\.bias", key):
        return value.reshape(-1)
    return value
