"""The head mesh: landmark vertices, a closed and oriented surface, depth, and blend shapes."""

import collections

import pytest
import torch

from backbones.synthetic.face_model import EXPRESSION_NAMES, IDENTITY_NAMES, NECK_COLUMNS, build_face_mesh
from backbones.synthetic.portrait import portrait_landmarks


@pytest.fixture(scope="module")
def mesh():
    return build_face_mesh()


def test_mesh_layout(mesh):
    num_vertices = mesh.vertices.shape[0]
    assert mesh.vertices.shape == (num_vertices, 3) and num_vertices > 300
    assert mesh.faces.min() >= 0 and mesh.faces.max() < num_vertices
    assert mesh.identity_basis.shape == (len(IDENTITY_NAMES), num_vertices, 3)
    assert mesh.expression_basis.shape == (len(EXPRESSION_NAMES), num_vertices, 3)
    assert mesh.uv.abs().max() <= 1.0 and mesh.texture.shape == (3, 512, 512)
    assert len(torch.unique(mesh.faces.flatten())) == num_vertices, "every vertex belongs to a triangle"


def test_landmark_vertices_are_the_portrait_landmarks(mesh):
    pixels = torch.tensor(portrait_landmarks(), dtype=torch.float32)
    uv_pixels = (mesh.uv[:68] + 1.0) / 2.0 * 511.0
    torch.testing.assert_close(uv_pixels, pixels, atol=1e-3, rtol=0)
    eyes = mesh.vertices[36:42, :2].mean(0), mesh.vertices[42:48, :2].mean(0)
    torch.testing.assert_close(eyes[1] - eyes[0], torch.tensor([1.0, 0.0]), atol=1e-5, rtol=0)


def test_triangles_at_the_landmarks_face_the_camera(mesh):
    a, b, c = mesh.vertices[mesh.faces].unbind(1)
    cross = (b - a)[:, 0] * (c - a)[:, 1] - (b - a)[:, 1] * (c - a)[:, 0]
    at_landmarks = (mesh.faces < 68).any(1)
    assert at_landmarks.sum() >= 3 * 68 and (cross[at_landmarks] > 0).all()


def test_head_is_a_closed_consistently_oriented_surface(mesh):
    """Every edge borders two triangles, once in each direction, except the neck tube's two open ends."""
    directed = collections.Counter(
        (int(u), int(v)) for a, b, c in mesh.faces.tolist() for u, v in ((a, b), (b, c), (c, a))
    )
    assert max(directed.values()) == 1
    open_edges = [edge for edge in directed if edge[::-1] not in directed]
    assert len(open_edges) == 2 * NECK_COLUMNS


def test_depth_nose_forward_eyes_back_outline_behind(mesh):
    depth = mesh.vertices[:, 2]
    nose_tip, eye_centre, lower_jaw = depth[30], depth[36:48].mean(), depth[[3, 13]].mean()
    assert abs(eye_centre) < 1e-5
    assert nose_tip < eye_centre - 0.4 and lower_jaw > eye_centre + 0.3
    assert depth.max() == pytest.approx(2.7, abs=1e-5), "the back of the head lies head_depth behind the eyes"


def test_head_depth_moves_only_the_back(mesh):
    deeper = build_face_mesh(head_depth=3.5)
    torch.testing.assert_close(deeper.vertices[:68], mesh.vertices[:68])
    assert deeper.vertices[:, 2].max() == pytest.approx(3.5, abs=1e-5)
    with pytest.raises(ValueError, match="head_depth"):
        build_face_mesh(head_depth=0.5)


def test_delighting_gains_are_bounded_and_leave_the_back_alone(mesh):
    assert (mesh.delighting >= 0.6).all() and (mesh.delighting <= 1.6).all()
    assert mesh.delighting[:68].std() > 0, "the face's own shading is divided out"
    assert (mesh.delighting[mesh.vertices[:, 2] > 1.5] == 1.0).all()


def test_expressions_move_the_right_landmarks(mesh):
    basis = mesh.expression_basis
    lids_gap = lambda v: v[[40, 41, 46, 47], 1].mean() - v[[37, 38, 43, 44], 1].mean()  # noqa: E731
    lip_gap = lambda v: v[65:68, 1].mean() - v[61:64, 1].mean()  # noqa: E731
    neutral = mesh.vertices
    closed = neutral + basis[EXPRESSION_NAMES.index("eyes_close")]
    assert lids_gap(closed).abs() < 0.2 * lids_gap(neutral)
    opened = neutral + basis[EXPRESSION_NAMES.index("mouth_open")]
    assert lip_gap(opened) > lip_gap(neutral) + 0.15
    smiled = neutral + basis[EXPRESSION_NAMES.index("smile")]
    assert (smiled[[48, 54], 1] < neutral[[48, 54], 1] - 0.03).all()
    raised = neutral + basis[EXPRESSION_NAMES.index("brows_raise")]
    assert (raised[17:27, 1] < neutral[17:27, 1] - 0.02).all()
    assert (raised[17:27, 1] - neutral[17:27, 1]).mean() < -0.05


def test_identity_modes_are_distinct(mesh):
    flat = mesh.identity_basis.reshape(len(IDENTITY_NAMES), -1)
    assert torch.linalg.matrix_rank(flat) == len(IDENTITY_NAMES)
