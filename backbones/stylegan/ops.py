"""Resampling and activation operators of StyleGAN2/3 in plain torch (no custom CUDA kernels).

Conventions (as NVIDIA's `torch_utils.ops`):
- images and feature maps are NCHW (B, C, H, W);
- FIR filters are float32, either separable (K,) or full (K, K); `None` is the identity filter;
- padding is (x_before, x_after, y_before, y_after) in pixels of the upsampled image, negative
  values crop;
- `flip_filter=False` means true convolution (the filter is flipped before the correlation that
  `torch.nn.functional.conv2d` computes). The designed filters are symmetric, so it only decides
  the summation order.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

SQRT2 = math.sqrt(2.0)


def bias_act(
    x: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    slope: float | None = None,
    gain: float = 1.0,
    clamp: float | None = None,
) -> torch.Tensor:
    """Add a per-channel bias, apply leaky ReLU, scale, clamp.

    Args:
        x: (B, C, ...) activations; `bias` broadcasts over dimension 1.
        bias: (C,) or None.
        slope: negative-side slope of leaky ReLU; None = linear.
        gain: multiplier applied after the activation.
        clamp: clamp the result to [-clamp, clamp]; None = no clamping.
    Returns:
        Tensor of the shape of `x`.
    """
    if bias is not None:
        x = x + bias.reshape([1, -1] + [1] * (x.ndim - 2))
    if slope is not None:
        x = F.leaky_relu(x, slope)
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def box_filter_2d(taps: Sequence[float]) -> torch.Tensor:
    """Separable taps (K,) -> the full normalised 2-D filter (K, K) = outer(taps, taps) / sum."""
    taps_1d = torch.as_tensor(taps, dtype=torch.float32)
    filter_2d = torch.outer(taps_1d, taps_1d)
    return filter_2d / filter_2d.sum()


def upfirdn2d(
    x: torch.Tensor,
    fir: torch.Tensor | None,
    *,
    up: int = 1,
    down: int = 1,
    padding: Sequence[int] = (0, 0, 0, 0),
    gain: float = 1.0,
    flip_filter: bool = False,
) -> torch.Tensor:
    """Upsample by zero insertion, pad, FIR-filter, downsample by dropping samples.

    Args:
        x: (B, C, H, W).
        fir: (K,) separable or (K, K) filter, or None for the identity.
        up, down: integer factors.
        padding: (x0, x1, y0, y1), negative crops.
        gain: overall gain (a separable filter gets sqrt(gain) per pass).
    Returns:
        (B, C, H', W') with H' = (H * up + y0 + y1 - K + 1 + down - 1) // down (same for W).
    """
    batch_size, num_channels, height, width = x.shape
    if fir is None:
        fir = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    pad_x0, pad_x1, pad_y0, pad_y1 = (int(p) for p in padding)
    if up > 1:
        x = x.reshape(batch_size, num_channels, height, 1, width, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(batch_size, num_channels, height * up, width * up)
    x = F.pad(x, [max(pad_x0, 0), max(pad_x1, 0), max(pad_y0, 0), max(pad_y1, 0)])
    x = x[:, :, max(-pad_y0, 0): x.shape[2] - max(-pad_y1, 0), max(-pad_x0, 0): x.shape[3] - max(-pad_x1, 0)]

    fir = (fir * (gain ** (fir.ndim / 2))).to(x.dtype)
    if not flip_filter:
        fir = fir.flip(list(range(fir.ndim)))
    fir = fir[None, None].repeat([num_channels, 1] + [1] * fir.ndim)
    if fir.ndim == 4:
        x = F.conv2d(x, fir, groups=num_channels)
    else:
        x = F.conv2d(x, fir.unsqueeze(2), groups=num_channels)
        x = F.conv2d(x, fir.unsqueeze(3), groups=num_channels)
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


def upsample2d(x: torch.Tensor, fir: torch.Tensor, up: int = 2) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H * up, W * up), FIR interpolation that keeps the signal's scale."""
    taps = fir.shape[-1]
    lo, hi = (taps + up - 1) // 2, (taps - up) // 2
    return upfirdn2d(x, fir, up=up, padding=(lo, hi, lo, hi), gain=up * up)


def filtered_lrelu(
    x: torch.Tensor,
    up_filter: torch.Tensor | None,
    down_filter: torch.Tensor | None,
    bias: torch.Tensor,
    *,
    up: int,
    down: int,
    padding: Sequence[int],
    gain: float,
    slope: float,
    clamp: float | None,
) -> torch.Tensor:
    """StyleGAN3's alias-suppressed nonlinearity: bias, upsample, leaky ReLU, clamp, downsample.

    Args:
        x: (B, C, H, W); bias: (C,); filters (K,) or (K, K) or None.
        padding: (x0, x1, y0, y1) applied to the upsampled signal.
    Returns:
        (B, C, H', W') with H' = (H * up + y0 + y1 - Ku + 1 - Kd + 1 + down - 1) // down.
    """
    x = bias_act(x, bias)
    x = upfirdn2d(x, up_filter, up=up, padding=padding, gain=up * up)
    x = bias_act(x, slope=slope, gain=gain, clamp=clamp)
    return upfirdn2d(x, down_filter, down=down)


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(B, D) -> (B, D) rows scaled to unit mean square."""
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()

