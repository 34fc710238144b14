"""Per-frame attributes q over time: fill frames without a face, then smooth.

Frames where no face was found (NaN rows) are filled by linear interpolation in q between the
nearest frames with a face (held constant before the first and after the last one). The temporal
filter is a zero-phase Savitzky-Golay filter (`scipy.signal.savgol_filter`): each entry of q is
replaced by the value at the centre of a polynomial of degree `order` fitted by least squares over
`window` frames centred on it. It keeps the timing of motion (no lag) and, up to that degree,
its shape, and removes frame-to-frame jitter of the detector and the fit. At the ends the polynomial
of the first or last full window is evaluated (``mode="interp"``). A window longer than the clip
shrinks to the longest odd window that fits; a clip shorter than ``order + 2`` frames is left as it is.
Angles in q are radians and are unwrapped before smoothing, so a turn through +-180 degrees stays smooth.
`TemporalFilter.smooth` applies the same filter to any series, e.g. the edited latents, whose rendered
pose jitters from frame to frame even for smooth targets (phi is piecewise linear, so an edit's step
changes abruptly where its ReLU pattern does).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.signal import savgol_filter

from common.shapes import check_shape
from nrsfm.model import AttributeLayout

FILTERS = ("savgol", "none")


@dataclass(frozen=True)
class TemporalFilter:
    """Savitzky-Golay smoothing over `window` frames (odd, >= 3) with polynomials of degree `order`
    (< window); ``name="none"`` leaves q as it is."""

    name: str = "savgol"
    window: int = 9
    order: int = 2

    def __post_init__(self):
        if self.name not in FILTERS:
            raise ValueError(f"smoothing.name must be one of {', '.join(FILTERS)}, got {self.name!r}")
        if self.name == "savgol" and not (self.window >= 3 and self.window % 2 == 1 and 0 <= self.order < self.window):
            raise ValueError(
                f"smoothing needs an odd window >= 3 and 0 <= order < window, got window={self.window}, "
                f"order={self.order}"
            )

    def describe(self) -> str:
        """The filter and its settings in words, for reports and file metadata."""
        if self.name == "none":
            return "none"
        return f"zero-phase Savitzky-Golay filter, window {self.window} frames, polynomial degree {self.order}"

    def smooth(self, values: torch.Tensor) -> torch.Tensor:
        """Smooth any series (T, ...) along time, entry by entry (no unwrapping): e.g. latents (T, *S)."""
        window = min(self.window, len(values) if len(values) % 2 == 1 else len(values) - 1)
        if self.name == "none" or window <= self.order + 1:
            return values.clone()
        smoothed = savgol_filter(values.detach().cpu().double().numpy(), window, self.order, axis=0, mode="interp")
        return torch.from_numpy(smoothed).to(values)

    def __call__(self, q: torch.Tensor, layout: AttributeLayout) -> torch.Tensor:
        """Smooth q (T, D) along time, per entry (rotation entries unwrapped first)."""
        check_shape(q, ("T", layout.dim), "q")
        if self.name == "none":
            return q.clone()
        window = min(self.window, len(q) if len(q) % 2 == 1 else len(q) - 1)
        if window <= self.order + 1:
            return q.clone()
        values = q.detach().cpu().double().numpy().copy()
        values[:, layout.rotation] = np.unwrap(values[:, layout.rotation], axis=0)
        smoothed = savgol_filter(values, window, self.order, axis=0, mode="interp")
        return torch.from_numpy(smoothed).to(q)


def fill_missing(q: torch.Tensor, found: torch.Tensor) -> torch.Tensor:
    """q (T, D) with NaN rows where `found` (T,) is False -> every row filled by linear interpolation
    between the nearest found frames (constant beyond the first and last); needs one found frame."""
    check_shape(q, ("T", "D"), "q")
    check_shape(found, (q.shape[0],), "found")
    if not bool(found.any()):
        raise ValueError("fill_missing needs at least one frame with a face")
    frames = np.arange(len(q))
    known = found.cpu().numpy().astype(bool)
    values = q.detach().cpu().double().numpy()
    filled = np.stack([np.interp(frames, frames[known], values[known, column]) for column in range(q.shape[1])], -1)
    return torch.from_numpy(filled).to(q)
