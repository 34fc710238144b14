"""The resampling ops against their definition (zero insertion, padding, convolution, decimation)."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from backbones.stylegan.ops import bias_act, filtered_lrelu, upfirdn2d


def upfirdn2d_by_definition(x, fir, up, down, padding, gain):
    """Float64 reference written from the definition, one step at a time."""
    batch, channels, height, width = x.shape
    upsampled = x.new_zeros(batch, channels, height * up, width * up)
    upsampled[:, :, ::up, ::up] = x
    pad_x0, pad_x1, pad_y0, pad_y1 = padding
    padded = F.pad(upsampled, [max(pad_x0, 0), max(pad_x1, 0), max(pad_y0, 0), max(pad_y1, 0)])
    padded = padded[
        :, :, max(-pad_y0, 0) : padded.shape[2] - max(-pad_y1, 0), max(-pad_x0, 0) : padded.shape[3] - max(-pad_x1, 0)
    ]
    kernel = torch.outer(fir, fir) if fir.ndim == 1 else fir
    kernel = (kernel * gain).flip([0, 1])  # convolution = correlation with the flipped kernel
    kernel = kernel[None, None].repeat(channels, 1, 1, 1)
    return F.conv2d(padded, kernel, groups=channels)[:, :, ::down, ::down]


@pytest.mark.parametrize(
    "up, down, padding, separable",
    [
        (1, 1, (0, 0, 0, 0), True),
        (2, 1, (2, 1, 2, 1), False),
        (1, 2, (1, 2, 0, 3), True),
        (2, 2, (-1, 3, 4, -2), False),
        (4, 2, (5, -3, 0, 2), True),
        (3, 1, (-2, -2, -1, -3), True),
    ],
)
def test_upfirdn2d_matches_its_definition(up, down, padding, separable):
    generator = torch.Generator().manual_seed(up * 10 + down)
    x = torch.randn(2, 3, 7, 9, generator=generator, dtype=torch.float64)
    fir = torch.rand(6, generator=generator, dtype=torch.float64)  # asymmetric: checks orientation
    fir = fir if separable else torch.rand(5, 5, generator=generator, dtype=torch.float64)
    ours = upfirdn2d(x, fir, up=up, down=down, padding=padding, gain=up * up)
    expected = upfirdn2d_by_definition(x, fir, up, down, padding, up * up)
    assert ours.shape == expected.shape
    assert torch.allclose(ours, expected, atol=1e-12)


def test_bias_act_inplace_equals_out_of_place():
    x = torch.randn(3, 4, 5, 5, dtype=torch.float64) * 300
    bias = torch.randn(4, dtype=torch.float64)
    expected = bias_act(x, bias, slope=0.2, gain=2**0.5, clamp=256)
    assert float(expected.abs().max()) == 256
    ours = bias_act(x.clone(), bias, slope=0.2, gain=2**0.5, clamp=256, inplace=True)
    assert torch.equal(ours, expected)
    assert torch.equal(bias_act(x, None), x)


def test_filtered_lrelu_gradients():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, 2, 6, 6, generator=generator, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(2, generator=generator, dtype=torch.float64)
    up_filter = torch.rand(4, generator=generator, dtype=torch.float64)
    down_filter = torch.rand(4, 4, generator=generator, dtype=torch.float64)

    def layer(inputs):
        return filtered_lrelu(
            inputs, up_filter, down_filter, bias, up=2, down=2, padding=(3, 3, 3, 3), gain=2**0.5, slope=0.2, clamp=0.8
        )

    assert torch.autograd.gradcheck(layer, (x,))
    with torch.no_grad():
        assert torch.allclose(layer(x), layer(x.detach()))


@pytest.mark.parametrize("up, down", list(itertools.product([1, 2], [1, 2])))
def test_identity_filter_shapes(up, down):
    x = torch.randn(1, 1, 8, 8)
    y = upfirdn2d(x, None, up=up, down=down)
    assert y.shape == (1, 1, (8 * up + down - 1) // down, (8 * up + down - 1) // down)
