"""A picture of a fitted NRSfM model: the mean shape from three views and each basis shape's effect.

Top row: mean shape B0 (L, 3) seen from the front (x, y), the side (z, y) and above (x, z); image
y points down as in the landmarks. Below: one panel per basis shape k, the mean shape with arrows
to B0 + 2 sigma_k B_k (sigma_k = the model's q_std of alpha_k), drawn in the view (front or side)
where d_k moves the points most. Uses matplotlib's object API (no pyplot, no global backend).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from common.io import save_png_atomic
from nrsfm.model import NRSfMModel

VIEWS = {"front (x, y)": (0, 1), "side (z, y)": (2, 1), "top (x, z)": (0, 2)}


def plot_model(model: NRSfMModel, path: str | Path, num_columns: int = 4) -> None:
    """Write the figure of the module docstring to `path` (PNG) atomically."""
    mean_shape = model.mean_shape.detach().cpu().double().numpy()
    directions = model.directions.detach().cpu().double().numpy()
    basis = model.basis.detach().cpu().double().numpy()
    alpha_std = model.q_std[model.layout.alpha].detach().cpu().double().numpy()
    num_basis = model.num_basis
    num_rows = 1 + math.ceil(num_basis / num_columns)
    figure = Figure(figsize=(3.2 * max(num_columns, 3), 3.2 * num_rows))
    FigureCanvasAgg(figure)
    for column, (title, axes_index) in enumerate(VIEWS.items()):
        axes = figure.add_subplot(num_rows, max(num_columns, 3), column + 1)
        _scatter(axes, mean_shape, axes_index, f"mean shape, {title}")
    for k in range(num_basis):
        offset = 2 * alpha_std[k] * basis[k][:, None] * directions[k][None, :]  # (L, 3)
        view = "front (x, y)" if np.abs(directions[k][:2]).max() >= abs(directions[k][2]) else "side (z, y)"
        axes_index = VIEWS[view]
        axes = figure.add_subplot(num_rows, max(num_columns, 3), max(num_columns, 3) + k + 1)
        _scatter(axes, mean_shape, axes_index, f"basis {k}: +2 sd, {view.split()[0]}")
        axes.quiver(
            mean_shape[:, axes_index[0]],
            mean_shape[:, axes_index[1]],
            offset[:, axes_index[0]],
            offset[:, axes_index[1]],
            angles="xy",
            scale_units="xy",
            scale=1.0,
            color="tab:red",
            width=0.004,
        )
    figure.tight_layout()
    save_png_atomic(figure, path)


def _scatter(axes, shape: np.ndarray, axes_index: tuple[int, int], title: str) -> None:
    """Points of `shape` (L, 3) on the two coordinates `axes_index`, image-style (y down)."""
    axes.scatter(shape[:, axes_index[0]], shape[:, axes_index[1]], s=4, color="black")
    axes.set_aspect("equal")
    axes.invert_yaxis() if axes_index[1] == 1 else None
    axes.set_title(title, fontsize=8)
    axes.tick_params(labelsize=6)
