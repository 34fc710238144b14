"""Resampling and activation operators of StyleGAN2/3 in plain torch (no custom CUDA kernels).

Conventions (as NVIDIA's `torch_utils.ops`):
- images and feature maps are NCHW (B, C, H, W);
- FIR filters are float32, either separable (K,) or full (K, K); `None` is the identity filter;
- padding is (x_before, x_after, y_before, y_after) in pixels of the upsampled image, negative
  values crop;
- filtering is true convolution (NVIDIA's `flip_filter=False`); the designed filters are
  symmetric, so this only fixes the summation order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

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
    inplace: bool = False,
) -> torch.Tensor:
    """Add a per-channel bias, apply leaky ReLU, scale, clamp.

    Args:
        x: (B, C, ...) activations; `bias` broadcasts over dimension 1.
        bias: (C,) or None.
        slope: negative-side slope of leaky ReLU; None (or 1) = linear.
        gain: multiplier applied after the activation.
        clamp: clamp the result to [-clamp, clamp]; None = no clamping.
        inplace: overwrite `x` (only for tensors no autograd graph needs).
    Returns:
        Tensor of the shape of `x`.
    """
    if bias is not None:
        bias = bias.reshape([1, -1] + [1] * (x.ndim - 2))
        x = x.add_(bias) if inplace else x + bias
    if slope is not None and slope != 1:
        x = F.leaky_relu(x, slope, inplace=inplace)
    if gain != 1:
        x = x.mul_(gain) if inplace else x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp_(-clamp, clamp) if inplace else x.clamp(-clamp, clamp)
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
) -> torch.Tensor:
    """Upsample by zero insertion, pad, FIR-filter (true convolution), keep every `down`-th sample.

    Computed without materialising the zeros or the dropped samples: upsampling is a transposed
    convolution with stride `up` (cropped/padded to the requested window), downsampling a strided
    convolution; separable filters run as two 1-D passes.

    Args:
        x: (B, C, H, W).
        fir: (K,) separable or (K, K) filter, or None for the identity.
        up, down: integer factors.
        padding: (x0, x1, y0, y1) applied to the upsampled signal, negative crops.
        gain: overall gain (a separable filter gets sqrt(gain) per pass).
    Returns:
        (B, C, H', W') with H' = (H * up + y0 + y1 - K + 1 + down - 1) // down (same for W).
    """
    if fir is None:
        fir = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    fir = (fir * (gain ** (fir.ndim / 2))).to(x.dtype)
    pad_x0, pad_x1, pad_y0, pad_y1 = (int(p) for p in padding)
    if fir.ndim == 2:
        return _fir_pass(x, fir, (up, up), (down, down), (pad_x0, pad_x1, pad_y0, pad_y1))
    x = _fir_pass(x, fir[None, :], (1, up), (1, down), (pad_x0, pad_x1, 0, 0))
    return _fir_pass(x, fir[:, None], (up, 1), (down, 1), (0, 0, pad_y0, pad_y1))


def _fir_pass(
    x: torch.Tensor, fir: torch.Tensor, up: tuple[int, int], down: tuple[int, int], padding: tuple[int, int, int, int]
) -> torch.Tensor:
    """One depthwise pass of filter (Kh, Kw) with factors up/down given as (y, x)."""
    num_channels = x.shape[1]
    taps_y, taps_x = fir.shape
    weight = fir[None, None].repeat([num_channels, 1, 1, 1])
    pad_x0, pad_x1, pad_y0, pad_y1 = padding
    if up == (1, 1):
        x = F.pad(x, [pad_x0, pad_x1, pad_y0, pad_y1])
        return F.conv2d(x, weight.flip([2, 3]), stride=down, groups=num_channels)
    # Zero insertion, padding and convolution together are a transposed convolution, re-windowed.
    x = F.conv_transpose2d(x, weight, stride=up, groups=num_channels)
    x = _pad_or_crop(x, [pad_x0 - taps_x + 1, up[1] + pad_x1 - taps_x, pad_y0 - taps_y + 1, up[0] + pad_y1 - taps_y])
    return x[:, :, :: down[0], :: down[1]] if down != (1, 1) else x


def _pad_or_crop(x: torch.Tensor, pads: Sequence[int]) -> torch.Tensor:
    """F.pad with (x0, x1, y0, y1); all-negative pads crop with a view instead of a copy."""
    if any(p > 0 for p in pads):
        return F.pad(x, list(pads))
    x0, x1, y0, y1 = (-p for p in pads)
    return x[:, :, y0 : x.shape[2] - y1, x0 : x.shape[3] - x1]


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
    # x is a fresh tensor here: overwrite it unless autograd needs it.
    x = bias_act(x, slope=slope, gain=gain, clamp=clamp, inplace=not (torch.is_grad_enabled() and x.requires_grad))
    return upfirdn2d(x, down_filter, down=down)


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(B, D) -> (B, D) rows scaled to unit mean square."""
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()
