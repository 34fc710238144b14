"""Rasterizer properties in float64: coverage against a brute-force inside test, z-buffering,
back-face culling, linear precision of interpolation, gradcheck, batch vs single, bad input."""

import pytest
import torch

from backbones.synthetic.rasterizer import composite, interpolate, rasterize, triangle_planes


def _brute_force_coverage(triangle: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(3, 2) counter-clockwise triangle -> (H, W) bool, pixel centres at integers."""
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=triangle.dtype), torch.arange(width, dtype=triangle.dtype), indexing="ij"
    )
    pixel = torch.stack([xs, ys], -1)
    inside = torch.ones(height, width, dtype=torch.bool)
    for start, stop in ((0, 1), (1, 2), (2, 0)):
        edge = triangle[stop] - triangle[start]
        rel = pixel - triangle[start]
        inside &= edge[0] * rel[..., 1] - edge[1] * rel[..., 0] >= -1e-9
    return inside


def test_single_triangle_coverage_matches_brute_force():
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        triangle = torch.rand(3, 2, generator=generator, dtype=torch.float64) * 30.0 - 5.0
        a, b, c = triangle
        if (b - a)[0] * (c - a)[1] - (b - a)[1] * (c - a)[0] < 0:
            triangle = triangle[[0, 2, 1]]
        ids = rasterize(triangle[None], torch.zeros(1, 3, dtype=torch.float64), torch.tensor([[0, 1, 2]]), 24, 20)
        expected = _brute_force_coverage(triangle, 24, 20)
        assert torch.equal(ids[0] == 0, expected)


def test_back_facing_triangle_is_culled():
    triangle = torch.tensor([[[2.0, 2.0], [2.0, 12.0], [12.0, 2.0]]], dtype=torch.float64)  # clockwise on screen
    ids = rasterize(triangle, torch.zeros(1, 3, dtype=torch.float64), torch.tensor([[0, 1, 2]]), 16, 16)
    assert (ids == -1).all()
    flipped = rasterize(triangle, torch.zeros(1, 3, dtype=torch.float64), torch.tensor([[0, 2, 1]]), 16, 16)
    assert (flipped == 0).sum() > 20


def test_nearer_triangle_wins_where_they_overlap():
    square = torch.tensor([[1.0, 1.0], [14.0, 1.0], [14.0, 14.0], [1.0, 14.0]], dtype=torch.float64)
    screen = torch.cat([square, square])[None]
    faces = torch.tensor([[0, 2, 1], [4, 6, 5]]).flip(-1)  # both counter-clockwise on screen
    for near in (0, 1):
        depth = (
            torch.tensor([[1.0] * 4 + [2.0] * 4], dtype=torch.float64)
            if near == 0
            else torch.tensor([[2.0] * 4 + [1.0] * 4], dtype=torch.float64)
        )
        ids = rasterize(screen, depth, faces, 16, 16)
        covered = ids >= 0
        assert covered.sum() > 50 and (ids[covered] == near).all()


def test_interpolating_positions_returns_pixel_centres():
    screen = torch.tensor([[[0.5, 0.3], [15.2, 1.1], [3.3, 14.7], [14.9, 15.6]]], dtype=torch.float64)
    faces = torch.tensor([[0, 1, 2], [1, 3, 2]])
    ids = rasterize(screen, torch.zeros(1, 4, dtype=torch.float64), faces, 16, 16)
    fragments = interpolate(screen, screen, faces, ids)
    expected = torch.stack([fragments.pixel_index % 16, fragments.pixel_index // 16], -1).to(torch.float64)
    assert len(fragments.pixel_index) > 100
    torch.testing.assert_close(fragments.values, expected, atol=1e-9, rtol=0)


def test_interpolation_gradcheck_float64():
    screen = torch.tensor([[[1.3, 0.7], [9.6, 1.4], [2.2, 8.9], [9.1, 9.3]]], dtype=torch.float64, requires_grad=True)
    values = torch.rand(1, 4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1), requires_grad=True)
    faces = torch.tensor([[0, 1, 2], [1, 3, 2]])
    ids = rasterize(screen.detach(), torch.zeros(1, 4, dtype=torch.float64), faces, 10, 10)
    assert (ids >= 0).sum() > 40
    background = torch.zeros(1, 2, 10, 10, dtype=torch.float64)

    def render(screen, values):
        fragments = interpolate(screen, values, faces, ids)
        return composite(fragments.values, fragments, background)

    assert torch.autograd.gradcheck(render, (screen, values), eps=1e-6, atol=1e-6)


def test_batch_matches_single():
    generator = torch.Generator().manual_seed(2)
    screen = torch.rand(3, 6, 2, generator=generator, dtype=torch.float64) * 20.0
    depth = torch.rand(3, 6, generator=generator, dtype=torch.float64)
    faces = torch.tensor([[0, 1, 2], [3, 4, 5], [0, 2, 4], [0, 4, 2], [1, 3, 5], [1, 5, 3]])
    batch = rasterize(screen, depth, faces, 20, 20)
    for index in range(3):
        assert torch.equal(
            batch[index], rasterize(screen[index : index + 1], depth[index : index + 1], faces, 20, 20)[0]
        )


def test_planes_reproduce_vertex_values():
    screen = torch.tensor([[[1.0, 2.0], [7.0, 3.0], [2.0, 9.0]]], dtype=torch.float64)
    values = torch.tensor([[[1.0], [5.0], [-2.0]]], dtype=torch.float64)
    anchor, planes = triangle_planes(screen, values, torch.tensor([[0, 1, 2]]))
    for corner in range(3):
        offset = screen[0, corner] - anchor[0, 0]
        value = planes[0, 0, 0] + planes[0, 0, 1] * offset[0] + planes[0, 0, 2] * offset[1]
        torch.testing.assert_close(value, values[0, corner])


def test_bad_shapes_raise():
    faces = torch.tensor([[0, 1, 2]])
    with pytest.raises(ValueError, match="screen"):
        rasterize(torch.zeros(1, 3, 3), torch.zeros(1, 3), faces, 8, 8)
    with pytest.raises(ValueError, match="depth"):
        rasterize(torch.zeros(1, 3, 2), torch.zeros(2, 3), faces, 8, 8)
    with pytest.raises(ValueError, match="values"):
        interpolate(torch.zeros(1, 3, 2), torch.zeros(1, 4, 2), faces, torch.zeros(1, 8, 8, dtype=torch.long))
