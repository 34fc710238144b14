"""A z-buffered triangle rasterizer in torch with differentiable attribute interpolation.

Screen convention: pixel (row i, column j) has its centre at (x, y) = (j, i); x right, y down;
depth grows away from the camera (smaller depth wins). Triangles are (T, 3) vertex indices that are
counter-clockwise on screen (positive (b - a) x (c - a) with y down) when they face the camera;
back-facing triangles are culled.

Rendering is split in two passes: `rasterize` decides visibility (which triangle covers each pixel
centre) without gradients, by scanline: each triangle row's covered span is solved in closed form,
so only covered pixels are ever enumerated. `interpolate` then evaluates vertex attributes at each
visible pixel through the barycentric coordinates of its triangle, written as affine functions of
the pixel position whose coefficients are differentiable functions of the vertex positions. So
gradients flow from pixels back to vertex positions and attributes while visibility stays fixed
for the pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from common.shapes import check_shape

_DEPTH_LEVELS = 2**30
_TRIANGLE_BITS = 20
_OFFSET_BIAS = 2**40  # keeps packed row offsets non-negative
_EDGE_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Fragments:
    """The N visible pixels of a batch of size (B, H, W).

    batch_index (N,) int64; pixel_index (N,) int64, flat index y * W + x; values (N, C) the
    interpolated attributes.
    """

    batch_index: torch.Tensor
    pixel_index: torch.Tensor
    values: torch.Tensor
    size: tuple[int, int, int]


def triangle_planes(
    screen: torch.Tensor, values: torch.Tensor, faces: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Affine form of each triangle's interpolated attributes.

    Inside triangle t, value(x, y) = planes[t, 0] + planes[t, 1] (x - anchor_x) + planes[t, 2] (y - anchor_y).

    Args:
        screen: (B, V, 2) vertex pixels; values: (B, V, C); faces: (T, 3).
    Returns:
        anchor (B, T, 2), the first corner (no gradient), and planes (B, T, 3, C), differentiable.
        Degenerate and back-facing triangles get planes that are finite but meaningless.
    """
    anchor, weights = _barycentric_planes(screen, faces)
    return anchor, weights @ values[:, faces]


def _barycentric_planes(screen: torch.Tensor, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """anchor (B, T, 2) and the barycentrics' affine coefficients (B, T, 3 terms, 3 corners)."""
    corners = screen[:, faces]  # (B, T, 3, 2)
    a, b, c = corners.unbind(2)
    area = _cross(b - a, c - a)
    area = torch.where(area.abs() > 1e-12, area, torch.ones_like(area))
    anchor = a.detach()
    at_anchor = _barycentric(corners, anchor, area)  # (B, T, 3)
    step_x = _barycentric(corners, anchor + anchor.new_tensor([1.0, 0.0]), area) - at_anchor
    step_y = _barycentric(corners, anchor + anchor.new_tensor([0.0, 1.0]), area) - at_anchor
    return anchor, torch.stack([at_anchor, step_x, step_y], 2)


@torch.no_grad()
def rasterize(screen: torch.Tensor, depth: torch.Tensor, faces: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Index of the nearest front-facing triangle covering each pixel centre.

    Args:
        screen: (B, V, 2) vertex positions in pixels (x, y).
        depth: (B, V) vertex depths, smaller is nearer.
        faces: (T, 3) int64 vertex indices, T < 2**20.
        height, width: image size in pixels.
    Returns:
        (B, H, W) int64 triangle indices, -1 where no triangle covers the pixel.
    """
    sizes = check_shape(screen, ("B", "V", 2), "screen")
    check_shape(depth, ("B", "V"), "depth", sizes)
    check_shape(faces, ("T", 3), "faces")
    num_batch, num_faces = screen.shape[0], faces.shape[0]
    if num_faces >= 2**_TRIANGLE_BITS:
        raise ValueError(f"at most {2**_TRIANGLE_BITS - 1} triangles are supported, got {num_faces}")
    empty = torch.iinfo(torch.long).max
    buffer = torch.full((num_batch * height * width,), empty, dtype=torch.long, device=screen.device)
    corners = screen[:, faces]  # (B, T, 3, 2)
    a, b, c = corners.unbind(2)
    front = _cross(b - a, c - a) > 1e-9
    top = corners[..., 1].amin(2).ceil().clamp(min=0.0)
    bottom = corners[..., 1].amax(2).floor().clamp(max=height - 1.0)
    num_rows = (bottom - top + 1.0).clamp(min=0.0).long() * front
    batch_index, face_index = num_rows.nonzero(as_tuple=True)
    if len(batch_index) == 0:
        return buffer.fill_(-1).view(num_batch, height, width)
    # Barycentrics (3) and depth (1) as affine functions of the pixel, anchored at the first corner.
    anchor, weights = _barycentric_planes(screen, faces)
    planes = torch.cat([weights, weights @ depth[:, faces][..., None]], -1)[batch_index, face_index]  # (N, 3 terms, 4)
    anchor = anchor[batch_index, face_index]
    # One entry per (triangle, row): solve base + slope * x >= 0 for the three barycentrics.
    rows_per_triangle = num_rows[batch_index, face_index]
    row_owner = torch.repeat_interleave(torch.arange(len(rows_per_triangle), device=screen.device), rows_per_triangle)
    row_y = top[batch_index, face_index][row_owner] + _local_index(rows_per_triangle, row_owner).to(screen.dtype)
    row_planes = planes[row_owner]  # (R, 3 terms, 4)
    row_anchor = anchor[row_owner]
    row_base = (
        row_planes[:, 0]
        + row_planes[:, 2] * (row_y - row_anchor[:, 1])[:, None]
        - row_planes[:, 1] * row_anchor[:, 0:1]
    )
    slope = row_planes[:, 1]  # value(x) = row_base + slope * x
    bound = -row_base[:, :3] / torch.where(slope[:, :3] == 0, torch.ones_like(slope[:, :3]), slope[:, :3])
    infinity = torch.full_like(bound, float("inf"))
    lower = torch.where(slope[:, :3] > 0, bound, -infinity).amax(-1)
    upper = torch.where(slope[:, :3] < 0, bound, infinity).amin(-1)
    blocked = ((slope[:, :3] == 0) & (row_base[:, :3] < 0)).any(-1)
    start = (lower - _EDGE_TOLERANCE).ceil().clamp(min=0.0)
    stop = (upper + _EDGE_TOLERANCE).floor().clamp(max=width - 1.0)
    row_length = ((stop - start + 1.0).clamp(min=0.0) * ~blocked).long()
    if int(row_length.sum()) == 0:
        return buffer.fill_(-1).view(num_batch, height, width)
    # Per row: depth at x = 0 and its slope, and (first pixel's flat index - position in the pixel
    # list) packed with the triangle index, so each pixel needs two gathers.
    pixel_owner = torch.repeat_interleave(torch.arange(len(row_length), device=screen.device), row_length)
    first_pixel = (batch_index[row_owner] * height + row_y.long()) * width + start.long()
    row_offset = first_pixel - (torch.cumsum(row_length, 0) - row_length)
    packed = ((row_offset + _OFFSET_BIAS) << _TRIANGLE_BITS) | face_index[row_owner]
    pixel_packed = packed[pixel_owner]
    pixel_flat = torch.arange(len(pixel_owner), device=screen.device) + (pixel_packed >> _TRIANGLE_BITS) - _OFFSET_BIAS
    depth_line = torch.stack([row_base[:, 3], slope[:, 3]], -1)[pixel_owner]
    pixel_depth = depth_line[:, 0] + depth_line[:, 1] * (pixel_flat % width).to(screen.dtype)
    low_depth, high_depth = pixel_depth.min(), pixel_depth.max()
    scale = (_DEPTH_LEVELS - 1) / (high_depth - low_depth).clamp(min=1e-12)
    key = (((pixel_depth - low_depth) * scale).long() << _TRIANGLE_BITS) | (pixel_packed & (2**_TRIANGLE_BITS - 1))
    buffer.scatter_reduce_(0, pixel_flat, key, reduce="amin")
    ids = torch.where(buffer == empty, torch.full_like(buffer, -1), buffer & (2**_TRIANGLE_BITS - 1))
    return ids.view(num_batch, height, width)


def interpolate(
    screen: torch.Tensor, values: torch.Tensor, faces: torch.Tensor, triangle_ids: torch.Tensor
) -> Fragments:
    """Vertex attributes at every visible pixel centre, differentiable w.r.t. `screen` and `values`.

    Args:
        screen: (B, V, 2) vertex pixels; values: (B, V, C) vertex attributes; faces: (T, 3).
        triangle_ids: (B, H, W) from `rasterize` (-1 = background).
    Returns:
        `Fragments` of the N covered pixels with values (N, C).
    """
    sizes = check_shape(screen, ("B", "V", 2), "screen")
    check_shape(values, ("B", "V", "C"), "values", sizes)
    check_shape(triangle_ids, ("B", "H", "W"), "triangle_ids", sizes)
    num_batch, height, width = triangle_ids.shape
    num_channels = values.shape[-1]
    anchor, planes = triangle_planes(screen, values, faces)
    flat_ids = triangle_ids.reshape(num_batch, -1)
    batch_index, pixel_index = (flat_ids >= 0).nonzero(as_tuple=True)
    flat_triangle = batch_index * faces.shape[0] + flat_ids[batch_index, pixel_index]
    pixel_planes = planes.reshape(-1, 3, num_channels)[flat_triangle]  # (N, 3, C)
    pixel_anchor = anchor.reshape(-1, 2)[flat_triangle]
    offset = torch.stack([pixel_index % width, pixel_index // width], -1).to(screen.dtype) - pixel_anchor
    interpolated = pixel_planes[:, 0] + pixel_planes[:, 1] * offset[:, 0:1] + pixel_planes[:, 2] * offset[:, 1:2]
    return Fragments(batch_index, pixel_index, interpolated, (num_batch, height, width))


def composite(colours: torch.Tensor, fragments: Fragments, background: torch.Tensor) -> torch.Tensor:
    """Put fragment colours over a background: colours (N, C), background (B, C, H, W) -> (B, C, H, W)."""
    num_batch, height, width = fragments.size
    check_shape(background, (num_batch, "C", height, width), "background")
    flat = background.permute(0, 2, 3, 1).reshape(num_batch * height * width, -1)
    flat = flat.index_put((fragments.batch_index * height * width + fragments.pixel_index,), colours)
    return flat.view(num_batch, height, width, -1).permute(0, 3, 1, 2)


def _local_index(counts: torch.Tensor, owner: torch.Tensor) -> torch.Tensor:
    """Position of each repeated element within its group: counts (G,), owner (M,) -> (M,)."""
    starts = torch.cumsum(counts, 0) - counts
    return torch.arange(len(owner), device=owner.device) - starts[owner]


def _cross(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]


def _barycentric(corners: torch.Tensor, pixel: torch.Tensor, area: torch.Tensor) -> torch.Tensor:
    """corners (..., 3, 2), pixel (..., 2), area (...) -> weights (..., 3) of a, b, c."""
    a, b, c = corners.unbind(-2)
    weight_a = _cross(b - pixel, c - pixel) / area
    weight_b = _cross(c - pixel, a - pixel) / area
    return torch.stack([weight_a, weight_b, 1.0 - weight_a - weight_b], -1)
