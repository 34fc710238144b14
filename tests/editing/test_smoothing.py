"""editing.smoothing: the Savitzky-Golay filter in q and the filling of frames without a face."""

import math

import pytest
import torch

from editing.smoothing import TemporalFilter, fill_missing
from nrsfm.model import AttributeLayout

LAYOUT = AttributeLayout(2)


def test_savgol_keeps_quadratic_motion_and_removes_jitter():
    time = torch.linspace(-1, 1, 40, dtype=torch.float64)
    clean = (0.3 * time**2 - 0.2 * time)[:, None].expand(-1, LAYOUT.dim).clone()
    torch.testing.assert_close(TemporalFilter(window=9, order=2)(clean, LAYOUT), clean)
    noisy = clean + 0.01 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    smoothed = TemporalFilter(window=9, order=2)(noisy, LAYOUT)
    jitter = lambda q: q.diff(2, dim=0).abs().mean()  # noqa: E731
    assert jitter(smoothed) < 0.3 * jitter(noisy)
    assert (smoothed - clean).abs().mean() < (noisy - clean).abs().mean()


def test_short_clips_shrink_the_window_and_none_keeps_q():
    q = torch.randn(4, LAYOUT.dim, dtype=torch.float64)
    assert TemporalFilter(window=9, order=2)(q, LAYOUT).shape == q.shape  # window 3 fits
    torch.testing.assert_close(TemporalFilter(window=9, order=2)(q[:2], LAYOUT), q[:2])
    torch.testing.assert_close(TemporalFilter(name="none")(q, LAYOUT), q)
    assert "Savitzky-Golay filter, window 9 frames, polynomial degree 2" in TemporalFilter().describe()


def test_rotation_is_unwrapped_before_smoothing():
    q = torch.zeros(11, LAYOUT.dim, dtype=torch.float64)
    yaw = torch.linspace(math.pi - 0.5, math.pi + 0.5, 11, dtype=torch.float64)
    q[:, 4] = torch.remainder(yaw + math.pi, 2 * math.pi) - math.pi  # wraps through +-180 degrees
    smoothed = TemporalFilter(window=5, order=1)(q, LAYOUT)
    torch.testing.assert_close(
        torch.remainder(smoothed[:, 4] - yaw + math.pi, 2 * math.pi) - math.pi,
        torch.zeros(11, dtype=torch.float64),
        atol=1e-9,
        rtol=0,
    )


def test_fill_missing_interpolates_between_found_frames():
    q = torch.tensor([[0.0], [math.nan], [math.nan], [3.0], [math.nan]])
    filled = fill_missing(q, torch.tensor([True, False, False, True, False]))
    torch.testing.assert_close(filled, torch.tensor([[0.0], [1.0], [2.0], [3.0], [3.0]]))
    with pytest.raises(ValueError, match="at least one frame with a face"):
        fill_missing(q, torch.zeros(5, dtype=torch.bool))


def test_bad_filter_settings():
    with pytest.raises(ValueError, match="smoothing.name must be one of savgol, none"):
        TemporalFilter(name="kalman")
    with pytest.raises(ValueError, match="odd window"):
        TemporalFilter(window=8)
    with pytest.raises(ValueError, match="order < window"):
        TemporalFilter(window=5, order=5)
