"""StyleGAN2 synthesis network (config F, "skip" architecture) in plain torch.

Module and parameter names follow NVIDIA's `training/networks_stylegan2.py` (and the identical
`training/networks.py` of stylegan2-ada-pytorch): blocks `b4 ... b{R}`, each with `conv0` (not in
b4), `conv1`, `torgb`, `resample_filter`; b4 holds `const`. Computation is float32 throughout.
Shapes: ws (B, num_ws, w_dim) -> images (B, img_channels, R, R).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from backbones.stylegan.mapping import FullyConnectedLayer, MappingNetwork
from backbones.stylegan.ops import SQRT2, bias_act, box_filter_2d, upfirdn2d, upsample2d
from backbones.stylegan.wrapper import StyleGANGenerator


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    *,
    demodulate: bool = True,
    up: int = 1,
    padding: int = 0,
    resample_filter: torch.Tensor | None = None,
) -> torch.Tensor:
    """Modulated (and demodulated) convolution: the per-sample weights weight * styles * demod are
    applied as input scaling, one shared-weight convolution and output scaling (the same linear
    map as NVIDIA's grouped "fused" form, and faster for batches on CPU).

    Args:
        x: (B, I, H, W); weight: (O, I, k, k); styles: (B, I).
        up: 1, or an upsampling factor done by a transposed convolution followed by
            FIR filtering with `resample_filter` (K, K).
        padding: zero padding of the convolution (k // 2 keeps the size).
    Returns:
        (B, O, H * up, W * up).
    """
    out_channels, in_channels, kernel_h, kernel_w = weight.shape
    x = x * styles.reshape(*styles.shape, 1, 1)
    if up == 1:
        x = F.conv2d(x, weight, padding=padding)
    else:
        taps = resample_filter.shape[-1]
        pad_x0 = padding + (taps + up - 1) // 2 - (kernel_w - 1)
        pad_x1 = padding + (taps - up) // 2 - (kernel_w - up)
        pad_y0 = padding + (taps + up - 1) // 2 - (kernel_h - 1)
        pad_y1 = padding + (taps - up) // 2 - (kernel_h - up)
        pad_xt = max(min(-pad_x0, -pad_x1), 0)
        pad_yt = max(min(-pad_y0, -pad_y1), 0)
        x = F.conv_transpose2d(x, weight.transpose(0, 1), stride=up, padding=[pad_yt, pad_xt])
        padding_after = (pad_x0 + pad_xt, pad_x1 + pad_xt, pad_y0 + pad_yt, pad_y1 + pad_yt)
        x = upfirdn2d(x, resample_filter, padding=padding_after, gain=up * up)
    if demodulate:
        demod = (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()  # (B, O)
        x = x * demod.reshape(*demod.shape, 1, 1)
    return x


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (optionally 2x upsampling) + noise + bias + lrelu + clamp.
    x (B, I, R/up, R/up), w (B, w_dim) -> (B, O, R, R)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        *,
        up: int = 1,
        conv_clamp: float | None = 256,
        resample_taps: Sequence[float] = (1, 3, 3, 1),
    ):
        super().__init__()
        self.resolution, self.up, self.conv_clamp = resolution, up, conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.register_buffer("resample_filter", box_filter_2d(resample_taps))
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, 3, 3]))
        self.register_buffer("noise_const", torch.randn([resolution, resolution]))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str) -> torch.Tensor:
        styles = self.affine(w)
        x = modulated_conv2d(x, self.weight, styles, up=self.up, padding=1, resample_filter=self.resample_filter)
        if noise_mode == "random":
            noise = torch.randn([x.shape[0], 1, self.resolution, self.resolution], device=x.device)
            x = x + noise * self.noise_strength
        elif noise_mode == "const":
            x = x + self.noise_const * self.noise_strength
        return bias_act(x, self.bias, slope=0.2, gain=SQRT2, clamp=self.conv_clamp)


class ToRGBLayer(nn.Module):
    """Modulated 1x1 conv without demodulation + bias + clamp. x (B, C, R, R) -> (B, 3, R, R)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, *, conv_clamp: float | None = 256):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, 1, 1]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False)
        return bias_act(x, self.bias, clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution of the skip generator: (x, img) at R/2 -> (x, img) at R."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        img_channels: int,
        *,
        conv_clamp: float | None = 256,
        resample_taps: Sequence[float] = (1, 3, 3, 1),
    ):
        super().__init__()
        self.in_channels = in_channels
        self.register_buffer("resample_filter", box_filter_2d(resample_taps))
        layer_kwargs = dict(conv_clamp=conv_clamp, resample_taps=resample_taps)
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2, **layer_kwargs)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, **layer_kwargs)
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
        self.num_conv = 1 if in_channels == 0 else 2

    def forward(
        self, x: torch.Tensor | None, img: torch.Tensor | None, ws: torch.Tensor, noise_mode: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """ws (B, num_conv + 1, w_dim): one row per conv layer, then the ToRGB row."""
        rows = ws.unbind(dim=1)
        if self.in_channels == 0:
            x = self.const.unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
            x = self.conv1(x, rows[0], noise_mode)
        else:
            x = self.conv0(x, rows[0], noise_mode)
            x = self.conv1(x, rows[1], noise_mode)
        rgb = self.torgb(x, rows[self.num_conv])
        img = rgb if img is None else upsample2d(img, self.resample_filter) + rgb
        return x, img


class SynthesisNetwork(nn.Module):
    """ws (B, num_ws, w_dim) -> img (B, img_channels, R, R); num_ws = 2 log2(R) - 2."""

    def __init__(
        self,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        *,
        channel_base: int = 32768,
        channel_max: int = 512,
        conv_clamp: float | None = 256,
        resample_taps: Sequence[float] = (1, 3, 3, 1),
    ):
        super().__init__()
        log2_resolution = int(np.log2(img_resolution))
        if img_resolution < 4 or 2**log2_resolution != img_resolution:
            raise ValueError(f"StyleGAN2 img_resolution must be a power of two >= 4, got {img_resolution}")
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.block_resolutions = [2**i for i in range(2, log2_resolution + 1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        self.num_ws = 0
        for res in self.block_resolutions:
            in_channels = channels[res // 2] if res > 4 else 0
            block = SynthesisBlock(
                in_channels, channels[res], w_dim, res, img_channels, conv_clamp=conv_clamp, resample_taps=resample_taps
            )
            setattr(self, f"b{res}", block)
            self.num_ws += block.num_conv
        self.num_ws += 1  # the last block's ToRGB

    def forward(self, ws: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        x = img = None
        first_row = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            x, img = block(x, img, ws.narrow(1, first_row, block.num_conv + 1), noise_mode)
            first_row += block.num_conv
        return img


class StyleGAN2Generator(StyleGANGenerator):
    """StyleGAN2 (config F) behind the `Generator` interface; name "stylegan2".

    Constructor arguments mirror NVIDIA's `Generator(z_dim, c_dim, w_dim, img_resolution,
    img_channels, mapping_kwargs, **synthesis_kwargs)` for unconditional networks.
    """

    architecture = "stylegan2"

    def __init__(
        self,
        z_dim: int,
        w_dim: int,
        img_resolution: int,
        *,
        img_channels: int = 3,
        num_mapping_layers: int = 8,
        mapping_layer_features: int | None = None,
        mapping_lr_multiplier: float = 0.01,
        channel_base: int = 32768,
        channel_max: int = 512,
        conv_clamp: float | None = 256,
        resample_taps: Sequence[float] = (1, 3, 3, 1),
        truncation_psi: float = 1.0,
        noise_mode: str = "const",
    ):
        init_kwargs: dict[str, Any] = dict(
            z_dim=z_dim,
            w_dim=w_dim,
            img_resolution=img_resolution,
            img_channels=img_channels,
            num_mapping_layers=num_mapping_layers,
            mapping_layer_features=mapping_layer_features,
            mapping_lr_multiplier=mapping_lr_multiplier,
            channel_base=channel_base,
            channel_max=channel_max,
            conv_clamp=conv_clamp,
            resample_taps=[float(t) for t in resample_taps],
        )
        synthesis = SynthesisNetwork(
            w_dim,
            img_resolution,
            img_channels,
            channel_base=channel_base,
            channel_max=channel_max,
            conv_clamp=conv_clamp,
            resample_taps=resample_taps,
        )
        mapping = MappingNetwork(
            z_dim,
            w_dim,
            synthesis.num_ws,
            num_mapping_layers,
            layer_features=mapping_layer_features,
            lr_multiplier=mapping_lr_multiplier,
        )
        super().__init__(
            mapping,
            synthesis,
            name="stylegan2",
            init_kwargs=init_kwargs,
            truncation_psi=truncation_psi,
            noise_mode=noise_mode,
        )
