"""The evaluation's report files: aligned text and Markdown tables, CSV, and the rotation figure."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from common.io import save_png_atomic, write_text_atomic
from editing.metrics import ROTATION_NAMES, RotationChange


def plot_rotation_changes(changes: dict[str, RotationChange], path: Path) -> Path:
    """One column per method: achieved against requested yaw change per face (top; the diagonal is a
    perfect edit) and histograms of achieved - requested (bottom), on the image (model degrees) and,
    with truth, true. Written atomically."""
    figure = Figure(figsize=(4.4 * len(changes), 7.6))
    FigureCanvasAgg(figure)
    yaw = ROTATION_NAMES.index("yaw")
    for column, (method, change) in enumerate(changes.items()):
        series = {"on the image (model deg)": change.on_image[:, yaw]}
        if change.true is not None:
            series["true"] = change.true[:, yaw]
        requested = change.requested[:, yaw]
        scatter = figure.add_subplot(2, len(changes), column + 1)
        errors = figure.add_subplot(2, len(changes), len(changes) + column + 1)
        for label, achieved in series.items():
            scatter.scatter(requested.cpu().numpy(), achieved.cpu().numpy(), s=9, alpha=0.6, label=label)
            errors.hist((achieved - requested).cpu().numpy(), bins=20, alpha=0.5, label=label)
        low, high = (
            (min(0.0, float(requested.min())), max(1.0, float(requested.max()))) if len(requested) else (0.0, 1.0)
        )
        scatter.plot([low, high], [low, high], color="black", linewidth=0.8)
        scatter.set(title=f"{method}: yaw", xlabel="requested change [deg]", ylabel="achieved change [deg]")
        errors.axvline(0.0, color="black", linewidth=0.8)
        errors.set(title=f"{method}: yaw, achieved - requested", xlabel="[deg]", ylabel="faces")
        for axes in (scatter, errors):
            axes.legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    return save_png_atomic(figure, path)


def rotation_rows(changes: dict[str, RotationChange], first_seed: int) -> tuple[list[str], list[list[Any]]]:
    """Header and one row per method and face (seed, then requested / on the image / true pitch, yaw, roll)."""
    header = ["method", "seed"] + [
        f"{kind} {name} [deg]" for kind in ("requested", "on the image", "true") for name in ROTATION_NAMES
    ]
    rows = []
    for method, change in changes.items():
        true = change.true if change.true is not None else torch.full_like(change.requested, math.nan)
        values = torch.cat([change.requested, change.on_image, true], 1).tolist()
        rows += [[method, first_seed + int(i), *row] for i, row in zip(change.index, values)]
    return header, rows


def format_table(header: list[str], rows: list[list[Any]], markdown: bool) -> str:
    """Rows of cells as aligned text or a Markdown table; floats with 4 significant digits."""
    cells = [[_cell(value) for value in row] for row in rows]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells]) + "\n"
    widths = [max(len(str(h)), *(len(row[i]) for row in cells)) for i, h in enumerate(header)]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths))]
    return "\n".join(lines + ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]) + "\n"


def write_csv_atomic(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return write_text_atomic(path, buffer.getvalue())


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)
