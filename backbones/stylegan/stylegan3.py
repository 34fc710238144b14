"""StyleGAN3 (alias-free; configs T and R) synthesis network in plain torch.

Module and parameter names follow NVIDIA's `training/networks_stylegan3.py`: `input` (Fourier
features with `weight`, `transform`, `freqs`, `phases`, `affine`) and layers `L{i}_{size}_{channels}`
with `weight`, `bias`, `magnitude_ema`, `up_filter`, `down_filter`, `affine`. The layer schedule
(cutoffs, stopbands, sampling rates, sizes, channels) is derived from the constructor arguments as
described in the paper (Karras et al. 2021, "Alias-Free Generative Adversarial Networks", Sec. 3
and Appendix F). Computation is float32 throughout.
Shapes: ws (B, num_ws, w_dim) -> images (B, img_channels, R, R); num_ws = num_layers + 2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.signal
import scipy.special
import torch
import torch.nn.functional as F
from torch import nn

from backbones.stylegan.mapping import FullyConnectedLayer, MappingNetwork
from backbones.stylegan.ops import SQRT2, filtered_lrelu
from backbones.stylegan.wrapper import StyleGANGenerator


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    *,
    demodulate: bool,
    padding: int,
    input_gain: torch.Tensor,
) -> torch.Tensor:
    """Modulated convolution with StyleGAN3's pre-normalisation and input gain, computed as input
    scaling, one shared-weight convolution and output scaling (the same linear map as NVIDIA's
    grouped per-sample weights).

    Args:
        x: (B, I, H, W); weight: (O, I, k, k); styles: (B, I); input_gain: () scalar.
        padding: zero padding on every side (k - 1 gives the "full" convolution).
    Returns:
        (B, O, H + 2 * padding - k + 1, W + 2 * padding - k + 1).
    """
    if demodulate:
        weight = weight * weight.square().mean([1, 2, 3], keepdim=True).rsqrt()
        styles = styles * styles.square().mean().rsqrt()
    x = x * (styles * input_gain).reshape(*styles.shape, 1, 1)
    x = F.conv2d(x, weight, padding=padding)
    if demodulate:
        demod = (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()  # (B, O)
        x = x * demod.reshape(*demod.shape, 1, 1)
    return x


def design_lowpass_filter(
    num_taps: int, cutoff: float, width: float, sampling_rate: float, radial: bool = False
) -> torch.Tensor | None:
    """Kaiser-windowed low-pass FIR: (num_taps,) separable, (num_taps, num_taps) radially symmetric
    (jinc-based) when `radial`, or None (identity) for a single tap."""
    if num_taps == 1:
        return None
    if not radial:
        taps = scipy.signal.firwin(numtaps=num_taps, cutoff=cutoff, width=width, fs=sampling_rate)
        return torch.as_tensor(taps, dtype=torch.float32)
    positions = (np.arange(num_taps) - (num_taps - 1) / 2) / sampling_rate
    radius = np.hypot(*np.meshgrid(positions, positions))
    taps = scipy.special.j1(2 * cutoff * (np.pi * radius)) / (np.pi * radius)
    beta = scipy.signal.kaiser_beta(scipy.signal.kaiser_atten(num_taps, width / (sampling_rate / 2)))
    window = np.kaiser(num_taps, beta)
    taps = taps * np.outer(window, window)
    return torch.as_tensor(taps / np.sum(taps), dtype=torch.float32)


@dataclass(frozen=True)
class LayerSpec:
    """Sampling parameters of one synthesis layer (sizes and rates in pixels of that layer)."""

    in_channels: int
    out_channels: int
    in_size: int
    out_size: int
    in_sampling_rate: int
    out_sampling_rate: int
    in_cutoff: float
    out_cutoff: float
    in_half_width: float
    out_half_width: float
    is_torgb: bool
    is_critically_sampled: bool


def layer_schedule(
    img_resolution: int,
    img_channels: int,
    *,
    channel_base: int,
    channel_max: int,
    num_layers: int,
    num_critical: int,
    first_cutoff: float,
    first_stopband: float,
    last_stopband_rel: float,
    margin_size: int,
) -> tuple[dict[str, Any], list[LayerSpec]]:
    """Geometric progression of cutoffs and stopbands from the first layer to the last
    `num_critical` critically sampled ones. Returns the Fourier-input spec (channels, size,
    sampling_rate, bandwidth) and one `LayerSpec` per layer (num_layers + 1, the last is ToRGB)."""
    last_cutoff = img_resolution / 2
    last_stopband = last_cutoff * last_stopband_rel
    exponents = np.minimum(np.arange(num_layers + 1) / (num_layers - num_critical), 1)
    cutoffs = first_cutoff * (last_cutoff / first_cutoff) ** exponents
    stopbands = first_stopband * (last_stopband / first_stopband) ** exponents
    sampling_rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, img_resolution))))
    half_widths = np.maximum(stopbands, sampling_rates / 2) - cutoffs
    sizes = sampling_rates + margin_size * 2
    sizes[-2:] = img_resolution
    channels = np.rint(np.minimum((channel_base / 2) / cutoffs, channel_max))
    channels[-1] = img_channels
    input_spec = dict(
        channels=int(channels[0]),
        size=int(sizes[0]),
        sampling_rate=float(sampling_rates[0]),
        bandwidth=float(cutoffs[0]),
    )
    specs = []
    for index in range(num_layers + 1):
        prev = max(index - 1, 0)
        specs.append(
            LayerSpec(
                in_channels=int(channels[prev]),
                out_channels=int(channels[index]),
                in_size=int(sizes[prev]),
                out_size=int(sizes[index]),
                in_sampling_rate=int(sampling_rates[prev]),
                out_sampling_rate=int(sampling_rates[index]),
                in_cutoff=float(cutoffs[prev]),
                out_cutoff=float(cutoffs[index]),
                in_half_width=float(half_widths[prev]),
                out_half_width=float(half_widths[index]),
                is_torgb=index == num_layers,
                is_critically_sampled=index >= num_layers - num_critical,
            )
        )
    return input_spec, specs


class SynthesisInput(nn.Module):
    """Fourier features: w (B, w_dim) -> (B, channels, size, size). The learned affine maps w to a
    rotation and translation of the features; the `transform` buffer (3, 3) is a user-set inverse
    transform of the output image (identity by default)."""

    def __init__(self, w_dim: int, channels: int, size: int, sampling_rate: float, bandwidth: float):
        super().__init__()
        self.channels, self.size, self.sampling_rate, self.bandwidth = channels, size, sampling_rate, bandwidth
        freqs = torch.randn([channels, 2])
        radii = freqs.square().sum(dim=1, keepdim=True).sqrt()
        freqs = freqs / (radii * radii.square().exp().pow(0.25)) * bandwidth
        self.weight = nn.Parameter(torch.randn([channels, channels]))
        self.affine = FullyConnectedLayer(w_dim, 4, weight_init=0, bias_init=[1, 0, 0, 0])
        self.register_buffer("transform", torch.eye(3, 3))
        self.register_buffer("freqs", freqs)
        self.register_buffer("phases", torch.rand([channels]) - 0.5)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        batch_size = w.shape[0]
        params = self.affine(w)  # (rotation cos, rotation sin, translation x, translation y)
        params = params / params[:, :2].norm(dim=1, keepdim=True)
        rotation = torch.eye(3, device=w.device).repeat([batch_size, 1, 1])
        rotation[:, 0, 0] = params[:, 0]
        rotation[:, 0, 1] = -params[:, 1]
        rotation[:, 1, 0] = params[:, 1]
        rotation[:, 1, 1] = params[:, 0]
        translation = torch.eye(3, device=w.device).repeat([batch_size, 1, 1])
        translation[:, 0, 2] = -params[:, 2]
        translation[:, 1, 2] = -params[:, 3]
        transforms = rotation @ translation @ self.transform.unsqueeze(0)

        freqs = self.freqs.unsqueeze(0)
        phases = self.phases.unsqueeze(0) + (freqs @ transforms[:, :2, 2:]).squeeze(2)
        freqs = freqs @ transforms[:, :2, :2]
        amplitudes = (1 - (freqs.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)

        theta = torch.eye(2, 3, device=w.device)
        theta[0, 0] = 0.5 * self.size / self.sampling_rate
        theta[1, 1] = 0.5 * self.size / self.sampling_rate
        grid = F.affine_grid(theta.unsqueeze(0), [1, 1, self.size, self.size], align_corners=False)
        x = (grid.unsqueeze(3) @ freqs.permute(0, 2, 1).unsqueeze(1).unsqueeze(2)).squeeze(3)  # (B, H, W, C)
        x = x + phases.unsqueeze(1).unsqueeze(2)
        x = torch.sin(x * (np.pi * 2)) * amplitudes.unsqueeze(1).unsqueeze(2)
        x = x @ (self.weight / np.sqrt(self.channels)).t()
        return x.permute(0, 3, 1, 2)


class SynthesisLayer(nn.Module):
    """Modulated conv + filtered leaky ReLU between two sampling rates:
    x (B, I, in_size, in_size), w (B, w_dim) -> (B, O, out_size, out_size)."""

    def __init__(
        self,
        w_dim: int,
        spec: LayerSpec,
        *,
        conv_kernel: int = 3,
        filter_size: int = 6,
        lrelu_upsampling: int = 2,
        use_radial_filters: bool = False,
        conv_clamp: float | None = 256,
    ):
        super().__init__()
        self.is_torgb = spec.is_torgb
        self.in_channels = spec.in_channels
        self.conv_kernel = 1 if spec.is_torgb else conv_kernel
        self.conv_clamp = conv_clamp
        tmp_sampling_rate = max(spec.in_sampling_rate, spec.out_sampling_rate) * (
            1 if spec.is_torgb else lrelu_upsampling
        )

        self.affine = FullyConnectedLayer(w_dim, spec.in_channels, bias_init=1)
        self.weight = nn.Parameter(
            torch.randn([spec.out_channels, spec.in_channels, self.conv_kernel, self.conv_kernel])
        )
        self.bias = nn.Parameter(torch.zeros([spec.out_channels]))
        self.register_buffer("magnitude_ema", torch.ones([]))

        self.up_factor = int(np.rint(tmp_sampling_rate / spec.in_sampling_rate))
        up_taps = filter_size * self.up_factor if self.up_factor > 1 and not spec.is_torgb else 1
        self.register_buffer(
            "up_filter", design_lowpass_filter(up_taps, spec.in_cutoff, spec.in_half_width * 2, tmp_sampling_rate)
        )
        self.down_factor = int(np.rint(tmp_sampling_rate / spec.out_sampling_rate))
        down_taps = filter_size * self.down_factor if self.down_factor > 1 and not spec.is_torgb else 1
        self.register_buffer(
            "down_filter",
            design_lowpass_filter(
                down_taps,
                spec.out_cutoff,
                spec.out_half_width * 2,
                tmp_sampling_rate,
                radial=use_radial_filters and not spec.is_critically_sampled,
            ),
        )

        # Padding so that sample positions follow the symmetric interpretation (paper, App. C.3).
        pad_total = (spec.out_size - 1) * self.down_factor + 1
        pad_total -= (spec.in_size + self.conv_kernel - 1) * self.up_factor
        pad_total += up_taps + down_taps - 2
        pad_lo = (pad_total + self.up_factor) // 2
        pad_hi = pad_total - pad_lo
        self.padding = (pad_lo, pad_hi, pad_lo, pad_hi)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w)
        if self.is_torgb:
            styles = styles * (1 / np.sqrt(self.in_channels * self.conv_kernel**2))
        x = modulated_conv2d(
            x,
            self.weight,
            styles,
            demodulate=not self.is_torgb,
            padding=self.conv_kernel - 1,
            input_gain=self.magnitude_ema.rsqrt(),
        )
        return filtered_lrelu(
            x,
            self.up_filter,
            self.down_filter,
            self.bias,
            up=self.up_factor,
            down=self.down_factor,
            padding=self.padding,
            gain=1 if self.is_torgb else SQRT2,
            slope=1 if self.is_torgb else 0.2,
            clamp=self.conv_clamp,
        )


class SynthesisNetwork(nn.Module):
    """ws (B, num_ws, w_dim) -> img (B, img_channels, R, R): Fourier input, num_layers layers,
    ToRGB, times `output_scale`."""

    def __init__(
        self,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        *,
        channel_base: int = 32768,
        channel_max: int = 512,
        num_layers: int = 14,
        num_critical: int = 2,
        first_cutoff: float = 2,
        first_stopband: float = 2**2.1,
        last_stopband_rel: float = 2**0.3,
        margin_size: int = 10,
        output_scale: float = 0.25,
        conv_kernel: int = 3,
        filter_size: int = 6,
        lrelu_upsampling: int = 2,
        use_radial_filters: bool = False,
        conv_clamp: float | None = 256,
    ):
        super().__init__()
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.num_ws = num_layers + 2
        self.output_scale = output_scale
        input_spec, specs = layer_schedule(
            img_resolution,
            img_channels,
            channel_base=channel_base,
            channel_max=channel_max,
            num_layers=num_layers,
            num_critical=num_critical,
            first_cutoff=first_cutoff,
            first_stopband=first_stopband,
            last_stopband_rel=last_stopband_rel,
            margin_size=margin_size,
        )
        self.input = SynthesisInput(w_dim, **input_spec)
        self.layer_names = []
        for index, spec in enumerate(specs):
            layer = SynthesisLayer(
                w_dim,
                spec,
                conv_kernel=conv_kernel,
                filter_size=filter_size,
                lrelu_upsampling=lrelu_upsampling,
                use_radial_filters=use_radial_filters,
                conv_clamp=conv_clamp,
            )
            name = f"L{index}_{spec.out_size}_{spec.out_channels}"
            setattr(self, name, layer)
            self.layer_names.append(name)

    def forward(self, ws: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        """`noise_mode` is accepted for interface compatibility; StyleGAN3 has no noise inputs."""
        rows = ws.unbind(dim=1)
        x = self.input(rows[0])
        for name, w in zip(self.layer_names, rows[1:]):
            x = getattr(self, name)(x, w)
        return x * self.output_scale if self.output_scale != 1 else x


def make_input_transform(translate_x: float, translate_y: float, angle_deg: float) -> torch.Tensor:
    """(3, 3) float32 value for `synthesis.input.transform` that rotates the output image by
    `angle_deg` and translates it by (translate_x, translate_y) (in units of half the image),
    i.e. the inverse of [[cos, sin, tx], [-sin, cos, ty], [0, 0, 1]] (NVIDIA gen_images.py)."""
    angle = math.radians(angle_deg)
    forward = np.array(
        [
            [math.cos(angle), math.sin(angle), translate_x],
            [-math.sin(angle), math.cos(angle), translate_y],
            [0.0, 0.0, 1.0],
        ]
    )
    return torch.as_tensor(np.linalg.inv(forward), dtype=torch.float32)


class StyleGAN3Generator(StyleGANGenerator):
    """StyleGAN3 behind the `Generator` interface; name "stylegan3-r" when `use_radial_filters`
    (config R: conv_kernel 1, radial filters), else "stylegan3-t".

    Constructor arguments mirror NVIDIA's `Generator(z_dim, c_dim, w_dim, img_resolution,
    img_channels, mapping_kwargs, **synthesis_kwargs)` for unconditional networks.
    """

    architecture = "stylegan3"

    def __init__(
        self,
        z_dim: int,
        w_dim: int,
        img_resolution: int,
        *,
        img_channels: int = 3,
        num_mapping_layers: int = 2,
        mapping_lr_multiplier: float = 0.01,
        truncation_psi: float = 1.0,
        noise_mode: str = "const",
        **synthesis_kwargs: Any,
    ):
        init_kwargs = dict(
            z_dim=z_dim,
            w_dim=w_dim,
            img_resolution=img_resolution,
            img_channels=img_channels,
            num_mapping_layers=num_mapping_layers,
            mapping_lr_multiplier=mapping_lr_multiplier,
            **synthesis_kwargs,
        )
        synthesis = SynthesisNetwork(w_dim, img_resolution, img_channels, **synthesis_kwargs)
        mapping = MappingNetwork(
            z_dim, w_dim, synthesis.num_ws, num_mapping_layers, lr_multiplier=mapping_lr_multiplier
        )
        name = "stylegan3-r" if synthesis_kwargs.get("use_radial_filters", False) else "stylegan3-t"
        super().__init__(
            mapping,
            synthesis,
            name=name,
            init_kwargs=init_kwargs,
            truncation_psi=truncation_psi,
            noise_mode=noise_mode,
        )

    def set_input_transform(self, transform: torch.Tensor) -> None:
        """Write (3, 3) `transform` (see `make_input_transform`) into `synthesis.input.transform`."""
        if tuple(transform.shape) != (3, 3) or not bool(torch.isfinite(transform).all()):
            raise ValueError(f"input transform must be a finite (3, 3) matrix, got shape {tuple(transform.shape)}")
        self.synthesis_network.input.transform.copy_(transform)
