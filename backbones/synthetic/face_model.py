"""A textured 3D head mesh authored around the astronaut portrait, with identity and expression
blend shapes.

Face frame (as `nrsfm.geometry`): x to image right, y down, z away from the camera; the unit of
length is the portrait's inter-ocular distance (between eye centres); the origin is the midpoint
between the eyes. The neutral head looks straight at the camera (rotation 0).

Construction (deterministic, no file is read but the installed portrait and dlib model):
1. the portrait's 68 dlib landmarks are levelled (roll removed) and expressed in face units;
2. vertices = the 68 landmarks (vertex i is iBUG landmark i) + a regular grid inside a head-and-neck
   outline (hair ellipse on top, jaw line and neck below) + points on that outline, minus grid points inside the eyes and the mouth (so lids and lips can
   close and open) and too close to a landmark; faces = their Delaunay triangulation;
3. depth is an authored profile: a flattened ellipsoid fitted to the outline (the head) plus a nose ridge, nostril wings,
   recessed eyes, a brow ridge, lips and chin brought forward and a neck set back;
4. texture coordinates are each vertex's pixel position in the portrait; the portrait's background
   between the jaw line and the outline is painted over with mirrored skin (`texture`).

Blend shapes are displacement fields (I or E, V, 3) in face units per unit coefficient:
- identity (I = 16): face width, lower-face length, jaw width, nose protrusion, nose width, eye
  spacing, eye size, mouth width, brow height, chin length, chin protrusion, cheek fullness, face
  depth, lip thickness, and two seeded smooth random fields;
- expression (E = 5): smile (the portrait already smiles: negative values relax it), mouth open
  (0 = the portrait's parted lips, negative closes them), brows raise, eyes close (1 = shut), jaw
  sideways.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial import Delaunay

from backbones.synthetic.portrait import portrait_image, portrait_landmarks
from backbones.synthetic.texture import paint_jaw_band

IDENTITY_NAMES = (
    "face_width", "lower_face_length", "jaw_width", "nose_protrusion", "nose_width", "eye_spacing",
    "eye_size", "mouth_width", "brow_height", "chin_length", "chin_protrusion", "cheek_fullness",
    "face_depth", "lip_thickness", "random_field_1", "random_field_2",
)
EXPRESSION_NAMES = ("smile", "mouth_open", "brows_raise", "eyes_close", "jaw_sideways")
NUM_LANDMARKS = 68

# Hair ellipse in face units (centre x, centre y, half width, half height); below SIDE_CUT the
# outline follows the jaw line, JAW_MARGIN outside it, and then the neck.
HEAD_ELLIPSE = (0.03, 0.35, 1.62, 2.2)
SIDE_CUT = 0.2
JAW_MARGIN = 0.1
NECK_INSET = 0.05
# Eye indices (iBUG, 0-based): right eye in the image's left half is 36..41, the other 42..47.
EYE_INDICES = (tuple(range(36, 42)), tuple(range(42, 48)))
INNER_MOUTH = tuple(range(60, 68))


@dataclass(frozen=True)
class FaceMesh:
    """The neutral head and its blend shapes, all float32 tensors.

    vertices (V, 3); faces (T, 3) int64, counter-clockwise in the image when the face is frontal;
    uv (V, 2) portrait texture coordinates in [-1, 1] (grid_sample, align_corners=True);
    skin_weight (V,), hair_weight (V,) in [0, 1]; identity_basis (I, V, 3); expression_basis (E, V, 3);
    texture (3, Ht, Wt) in [0, 1]. Vertices 0..67 are the iBUG landmarks.
    """

    vertices: torch.Tensor
    faces: torch.Tensor
    uv: torch.Tensor
    skin_weight: torch.Tensor
    hair_weight: torch.Tensor
    identity_basis: torch.Tensor
    expression_basis: torch.Tensor
    texture: torch.Tensor


def build_face_mesh(grid_spacing: float = 0.17, seed: int = 0, head_depth: float = 1.15, head_roundness: float = 3.5) -> FaceMesh:
    """Build the head mesh from the portrait.

    Args:
        grid_spacing: distance between interior grid vertices in inter-ocular units (0.05..0.5).
        seed: seed of the two random identity fields.
        head_depth: depth of the head's front below its outline, in inter-ocular units (0.5..3).
        head_roundness: superellipse exponent of the head's profile (1.5..6): 2 is an ellipsoid,
            larger is flatter in front and steeper at the outline.
    """
    for label, value, low, high in (("grid_spacing", grid_spacing, 0.05, 0.5), ("head_depth", head_depth, 0.5, 3.0), ("head_roundness", head_roundness, 1.5, 6.0)):
        if not low <= value <= high:
            raise ValueError(f"{label} must lie in [{low}, {high}], got {value}")
    photo = portrait_image()
    pixels = portrait_landmarks()
    to_face, to_pixels = _face_frame(pixels)
    landmarks = to_face(pixels)
    points_2d, outline = _mesh_points(landmarks, grid_spacing)
    faces = _triangulate(points_2d, outline)
    depth = _depth_profile(points_2d, landmarks, head_depth, head_roundness)
    vertices = np.concatenate([points_2d, depth[:, None]], axis=1)
    photo_size = np.array([photo.shape[1], photo.shape[0]], dtype=np.float64)
    uv = to_pixels(points_2d) / (photo_size - 1.0) * 2.0 - 1.0
    skin, hair = _region_weights(points_2d, landmarks)
    identity = _identity_basis(vertices, landmarks, seed)
    expression = _expression_basis(vertices, landmarks)
    photo = paint_jaw_band(photo, landmarks[0:17], outline, SIDE_CUT, to_face, to_pixels, _inside_polygon)
    texture = torch.from_numpy(photo.astype(np.float32) / 255.0).permute(2, 0, 1).contiguous()
    as_float = lambda array: torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))  # noqa: E731
    return FaceMesh(
        vertices=as_float(vertices),
        faces=torch.from_numpy(faces.astype(np.int64)),
        uv=as_float(uv),
        skin_weight=as_float(skin),
        hair_weight=as_float(hair),
        identity_basis=as_float(identity),
        expression_basis=as_float(expression),
        texture=texture,
    )


def _face_frame(pixels: np.ndarray):
    """Maps between portrait pixels (N, 2) and levelled face units (N, 2)."""
    left_eye, right_eye = (pixels[list(eye)].mean(0) for eye in EYE_INDICES)
    origin = (left_eye + right_eye) / 2.0
    delta = right_eye - left_eye
    scale = float(np.linalg.norm(delta))
    angle = float(np.arctan2(delta[1], delta[0]))
    cos, sin = np.cos(angle), np.sin(angle)
    level = np.array([[cos, sin], [-sin, cos]])  # rotates the eye line onto the x axis

    def to_face(points: np.ndarray) -> np.ndarray:
        return (points - origin) @ level.T / scale

    def to_pixels(points: np.ndarray) -> np.ndarray:
        return points * scale @ level + origin

    return to_face, to_pixels


def _inside_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """(N, 2) points, (P, 2) polygon -> (N,) bool, even-odd rule."""
    x, y = points[:, 0:1], points[:, 1:2]
    x0, y0 = polygon[:, 0], polygon[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    crosses = (y0 > y) != (y1 > y)
    x_at = x0 + (y - y0) * (x1 - x0) / np.where(y1 == y0, 1.0, y1 - y0)
    return (crosses & (x < x_at)).sum(1) % 2 == 1


def _head_outline(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The head-and-neck outline: the hair ellipse above `SIDE_CUT`, then the jaw line pushed out by
    `JAW_MARGIN` and a neck (`NECK_INSET` inside jaw points 5 and 11) down to the ellipse's bottom.

    Returns:
        polygon (P, 2) closed implicitly, and its left and right side chains below the cut, each
        (S, 2) ordered by increasing y.
    """
    cx, cy, ax, ay = HEAD_ELLIPSE
    top_angle = np.arcsin((SIDE_CUT - cy) / ay)
    angles = np.linspace(top_angle, np.pi - top_angle - 2 * np.pi, 48)
    arc = np.stack([cx + ax * np.cos(angles), cy + ay * np.sin(angles)], -1)  # right to left over the top
    centre = landmarks[0:17].mean(0)
    jaw = landmarks[0:17]
    outward = (jaw - centre) / np.linalg.norm(jaw - centre, axis=1, keepdims=True)
    jaw = jaw + JAW_MARGIN * outward
    bottom = cy + ay
    ear = lambda side, point: [(point + side) / 2.0 + (0.0, 0.05)]  # noqa: E731
    left = np.concatenate([arc[-1:], ear(arc[-1], jaw[1]), jaw[1:6], [[landmarks[5, 0] + NECK_INSET, bottom]]])
    right = np.concatenate([arc[:1], ear(arc[0], jaw[15]), jaw[15:10:-1], [[landmarks[11, 0] - NECK_INSET, bottom]]])
    polygon = np.concatenate([arc, left[1:], right[::-1][:-1]])
    return polygon, left, right


def _outline_half_width(y: np.ndarray, left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre x and half width (N,) of the head outline at heights y (N,)."""
    cx, cy, ax, ay = HEAD_ELLIPSE
    ellipse_half = ax * np.sqrt(np.clip(1.0 - ((y - cy) / ay) ** 2, 1e-4, None))
    x_left = np.where(y < SIDE_CUT, cx - ellipse_half, np.interp(y, left[:, 1], left[:, 0]))
    x_right = np.where(y < SIDE_CUT, cx + ellipse_half, np.interp(y, right[:, 1], right[:, 0]))
    return (x_left + x_right) / 2.0, (x_right - x_left) / 2.0


def _mesh_points(landmarks: np.ndarray, spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """Landmarks first, then interior grid points, then outline points: (V, 2); and the outline (P, 2)."""
    cx, cy, ax, ay = HEAD_ELLIPSE
    outline, _, _ = _head_outline(landmarks)
    edges = np.concatenate([outline, outline[:1]])
    rim = np.concatenate([
        np.linspace(start, stop, max(1, int(np.ceil(np.linalg.norm(stop - start) / spacing))), endpoint=False)
        for start, stop in zip(edges[:-1], edges[1:])
    ])
    xs = np.arange(cx - ax, cx + ax + spacing, spacing)
    ys = np.arange(cy - ay, cy + ay + spacing, spacing)
    grid = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)
    keep = _inside_polygon(grid, outline)
    keep &= np.linalg.norm(grid[:, None] - rim[None], axis=-1).min(1) > 0.5 * spacing
    holes = [landmarks[list(eye)] for eye in EYE_INDICES] + [landmarks[list(INNER_MOUTH)]]
    for hole in holes:
        centre = hole.mean(0)
        grown = centre + (hole - centre) * 1.3
        keep &= ~_inside_polygon(grid, grown)
    nearest = np.linalg.norm(grid[:, None] - landmarks[None], axis=-1).min(1)
    keep &= nearest > 0.45 * spacing
    return np.concatenate([landmarks, grid[keep], rim]), outline


def _triangulate(points: np.ndarray, outline: np.ndarray) -> np.ndarray:
    """Delaunay triangles (T, 3) inside the outline, oriented counter-clockwise on screen (positive
    cross product with y down)."""
    faces = Delaunay(points).simplices
    faces = faces[_inside_polygon(points[faces].mean(1), outline)]
    a, b, c = (points[faces[:, i]] for i in range(3))
    cross = (b - a)[:, 0] * (c - a)[:, 1] - (b - a)[:, 1] * (c - a)[:, 0]
    faces = np.where((cross < 0)[:, None], faces[:, [0, 2, 1]], faces)
    return faces[np.abs(cross) > 1e-9]


def _gaussian(points: np.ndarray, centre, sigma_x: float, sigma_y: float) -> np.ndarray:
    dx = (points[:, 0] - centre[0]) / sigma_x
    dy = (points[:, 1] - centre[1]) / sigma_y
    return np.exp(-0.5 * (dx**2 + dy**2))


def _smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _depth_profile(points: np.ndarray, landmarks: np.ndarray, head_depth: float, roundness: float) -> np.ndarray:
    """Authored depth (V,) in face units, negative toward the camera: a superellipsoid head of depth
    `head_depth` and exponent `roundness` plus the features."""
    cx, cy, ax, ay = HEAD_ELLIPSE
    _, left, right = _head_outline(landmarks)
    centre_x, half_width = _outline_half_width(points[:, 1], left, right)
    radius = np.hypot((points[:, 0] - centre_x) / half_width, (points[:, 1] - cy) / ay).clip(0.0, 1.0)
    depth = -head_depth * (1.0 - radius**roundness) ** (1.0 / roundness)
    bridge, tip, base = landmarks[27], landmarks[30], landmarks[33]
    nose = np.zeros(len(points))
    for t in np.linspace(0.0, 1.0, 24):
        centre = bridge + t * (tip - bridge)
        height = 0.08 + 0.30 * t
        nose = np.maximum(nose, height * _gaussian(points, centre, 0.07 + 0.09 * t, 0.09))
    for t in np.linspace(0.0, 1.0, 8):
        centre = tip + t * (base - tip)
        nose = np.maximum(nose, (0.38 - 0.22 * t) * _gaussian(points, centre, 0.14, 0.07))
    for wing in (31, 35):
        nose = np.maximum(nose, 0.14 * _gaussian(points, landmarks[wing], 0.1, 0.08))
    depth -= nose
    for eye in EYE_INDICES:
        depth += 0.13 * _gaussian(points, landmarks[list(eye)].mean(0), 0.2, 0.13)
    brow_line = landmarks[17:27, 1].mean()
    depth -= 0.05 * _gaussian(points, (0.0, brow_line), 0.8, 0.1)
    mouth = landmarks[48:68].mean(0)
    depth -= 0.08 * _gaussian(points, mouth, 0.35, 0.18)
    depth -= 0.06 * _gaussian(points, landmarks[8] - (0.0, 0.12), 0.3, 0.15)
    chin_y = landmarks[8, 1]
    depth += 0.7 * _smoothstep(chin_y - 0.05, chin_y + 0.45, points[:, 1]) * _smoothstep(1.4, 0.0, np.abs(points[:, 0]))
    return depth


def _region_weights(points: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Skin (face) and hair weights (V,) in [0, 1]."""
    jaw = landmarks[0:17]
    face_cx = jaw[:, 0].mean()
    half_width = (jaw[:, 0].max() - jaw[:, 0].min()) / 2.0
    top, bottom = landmarks[19, 1] - 0.55, landmarks[8, 1]
    centre_y, half_height = (top + bottom) / 2.0, (bottom - top) / 2.0
    radius = np.hypot((points[:, 0] - face_cx) / half_width, (points[:, 1] - centre_y) / half_height)
    skin = _smoothstep(1.08, 0.9, radius)
    neck = _smoothstep(bottom - 0.1, bottom + 0.3, points[:, 1])
    hair = (1.0 - skin) * (1.0 - neck)
    return skin, hair


def _identity_basis(vertices: np.ndarray, landmarks: np.ndarray, seed: int) -> np.ndarray:
    """(16, V, 3) identity displacement fields, see the module docstring for their order."""
    points, x, y = vertices[:, :2], vertices[:, 0], vertices[:, 1]
    zeros = np.zeros_like(x)
    field = lambda dx=zeros, dy=zeros, dz=zeros: np.stack([dx, dy, dz], -1)  # noqa: E731
    nose_tip, mouth = landmarks[30], landmarks[48:68].mean(0)
    eye_centres = [landmarks[list(eye)].mean(0) for eye in EYE_INDICES]
    chin, mouth_y = landmarks[8], landmarks[48:68, 1].mean()
    nose_mask = _gaussian(points, (nose_tip + landmarks[27]) / 2, 0.2, 0.35)
    eye_masks = [_gaussian(points, centre, 0.28, 0.2) for centre in eye_centres]
    lower = _smoothstep(0.25, 1.6, y)
    chin_mask = _gaussian(points, chin - (0.0, 0.2), 0.45, 0.35)
    cheek_mask = sum(_gaussian(points, (side * 0.7, 0.7), 0.3, 0.35) for side in (-1.0, 1.0))
    lips = _gaussian(points, mouth, 0.45, 0.25)
    fields = [
        field(dx=0.07 * x * _smoothstep(2.6, 1.0, y)),
        field(dy=0.08 * lower * (y - 0.25)),
        field(dx=0.1 * x * _smoothstep(0.5, 1.6, y) * _smoothstep(2.6, 1.8, y)),
        field(dz=-0.09 * nose_mask),
        field(dx=0.1 * (x - nose_tip[0]) * _gaussian(points, nose_tip, 0.25, 0.2)),
        field(dx=0.05 * np.tanh(x / 0.15) * (eye_masks[0] + eye_masks[1])),
        field(dx=sum(0.15 * (x - c[0]) * m for c, m in zip(eye_centres, eye_masks)),
              dy=sum(0.15 * (y - c[1]) * m for c, m in zip(eye_centres, eye_masks))),
        field(dx=0.12 * (x - mouth[0]) * lips),
        field(dy=-0.06 * _gaussian(points, (0.0, landmarks[17:27, 1].mean()), 0.9, 0.2)),
        field(dy=0.1 * chin_mask),
        field(dz=-0.07 * chin_mask),
        field(dx=0.03 * np.tanh(x / 0.15) * cheek_mask, dz=-0.07 * cheek_mask),
        field(dz=0.1 * (vertices[:, 2] - vertices[:, 2].mean())),
        field(dy=0.08 * np.tanh((y - mouth_y) / 0.06) * lips),
    ]
    rng = np.random.default_rng(seed)
    for _ in range(2):
        centres = rng.uniform([-1.2, -1.0], [1.2, 2.0], size=(6, 2))
        weights = rng.normal(0.0, 1.0, size=(6, 3)) * np.array([0.035, 0.035, 0.05])
        fields.append(sum(_gaussian(points, c, 0.45, 0.45)[:, None] * w for c, w in zip(centres, weights)))
    return np.stack(fields)


def _expression_basis(vertices: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """(5, V, 3) expression displacement fields: smile, mouth open, brows raise, eyes close, jaw sideways."""
    points, x, y = vertices[:, :2], vertices[:, 0], vertices[:, 1]
    zeros = np.zeros_like(x)
    field = lambda dx=zeros, dy=zeros, dz=zeros: np.stack([dx, dy, dz], -1)  # noqa: E731
    corners = (landmarks[48], landmarks[54])
    smile = field(
        dx=sum(side * 0.05 * _gaussian(points, c, 0.22, 0.2) for side, c in zip((-1.0, 1.0), corners)),
        dy=sum(-0.06 * _gaussian(points, c, 0.22, 0.2) - 0.035 * _gaussian(points, c + (0.0, -0.3), 0.3, 0.25) for c in corners),
        dz=sum(-0.04 * _gaussian(points, c + (0.0, -0.3), 0.3, 0.25) for c in corners),
    )
    upper_inner, lower_inner = landmarks[61:64, 1].mean(), landmarks[65:68, 1].mean()
    lip_gap = (upper_inner + lower_inner) / 2.0
    mouth_half_width = (landmarks[54, 0] - landmarks[48, 0]) / 2.0
    mouth_cx = landmarks[48:68, 0].mean()
    softness = 0.01 + 0.9 * np.clip(np.abs(x - mouth_cx) - mouth_half_width, 0.0, None)
    below = _smoothstep(lip_gap - softness, lip_gap + softness, y)
    jaw_weight = below * _smoothstep(2.5, 1.9, y) * _smoothstep(1.5, 0.9, np.abs(x - mouth_cx))
    mouth_open = field(dy=0.22 * jaw_weight, dz=0.04 * jaw_weight)
    brow_y = landmarks[17:27, 1].mean()
    eye_y = landmarks[36:48, 1].mean()
    brow_weight = _smoothstep(brow_y + 0.85 * (eye_y - brow_y), brow_y, y) * _smoothstep(brow_y - 1.2, brow_y - 0.2, y) * _smoothstep(1.7, 1.1, np.abs(x))
    brows = field(dy=-0.08 * brow_weight)
    eyes_close = np.zeros_like(vertices)
    for eye in EYE_INDICES:
        lid = landmarks[list(eye)]
        upper_y, lower_y = lid[1:3, 1].mean(), lid[4:6, 1].mean()
        corner_y = lid[[0, 3], 1].mean()
        eye_cx, half_width = lid[:, 0].mean(), (lid[3, 0] - lid[0, 0]) / 2.0
        above = _smoothstep(brow_y + 0.05, upper_y, y) * (y <= upper_y) + (y > upper_y) * _smoothstep(corner_y, upper_y, y)
        across = _smoothstep(half_width * 1.6, half_width * 0.8, np.abs(x - eye_cx))
        eyes_close[:, 1] += (lower_y - upper_y) * above * across
    jaw_sideways = field(dx=0.06 * jaw_weight)
    return np.stack([smile, mouth_open, brows, eyes_close, jaw_sideways])
