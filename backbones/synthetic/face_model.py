"""A textured 3D head mesh around the astronaut portrait, with identity and expression blend shapes.

Face frame (as `nrsfm.geometry`): x to image right, y down, z away from the camera; the unit of
length is the portrait's inter-ocular distance (between dlib's eye centres); the origin is the
midpoint between the eyes, at the eye centres' depth. The neutral head looks straight at the camera.

Construction (deterministic; reads the installed portrait, the dlib model and
`data/astronaut_face_mesh.npz`, MediaPipe's face mesh of the portrait, see data/README.md):
1. the portrait's 68 dlib landmarks are levelled (roll removed) and expressed in face units; the
   468 face-mesh points follow in the same frame, their depth in the same scale;
2. the face: the face-mesh triangles, with the eyes and the mouth (holes of the tessellation)
   closed by triangles between their rims, so lids and lips can close and open;
3. around it, rings of vertices from the face-mesh rim out to the head's outline (a hair ellipse
   above `SIDE_CUT`, the jaw line `JAW_MARGIN` outside dlib's jaw below it), whose depth follows,
   along each ray from the face centre, the ellipse through the rim point that meets the outline
   at `SILHOUETTE_DEPTH` with a vertical tangent: the outline is the occluding contour of a
   rounded head, and the side of the head comes into view as it turns;
4. behind the outline, the back of the head: rings closing to a pole `head_depth` behind the eyes,
   textured from the hair just inside the outline on its ray (the skin on rays that meet the jaw);
   below the chin, an elliptic neck cylinder;
5. the 68 landmarks are inserted as vertices 0..67 at their portrait positions (splitting the
   front triangle under each), so the truth landmarks are mesh points;
6. texture coordinates are each front vertex's pixel in the portrait (the rings beside the jaw
   take the skin nearer the rim, `JAW_SOURCE_REACH`); the portrait's background
   between the jaw line and the outline is painted over with mirrored skin (`texture`);
7. `delighting` (V,): per-vertex gains that divide out the portrait's own smooth shading, fitted
   on the face's skin as ambient + Lambert of the mesh normals, so the renderer's light does the shading.

Blend shapes are displacement fields (I or E, V, 3) in face units per unit coefficient, on the
front of the head (fading out behind the outline, none on the neck):
- identity (I = 16): face width, lower-face length, jaw width, nose protrusion, nose width, eye
  spacing, eye size, mouth width, brow height, chin length, chin protrusion, cheek fullness,
  face depth, lip thickness, and two seeded smooth random fields;
- expression (E = 5): smile (the portrait already smiles: negative values relax it), mouth open
  (0 = the portrait's parted lips, negative closes them), brows raise, eyes close (1 = shut), jaw
  sideways.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.spatial import Delaunay

from backbones.synthetic.portrait import portrait_image, portrait_landmarks
from backbones.synthetic.texture import paint_jaw_band

IDENTITY_NAMES = (
    "face_width",
    "lower_face_length",
    "jaw_width",
    "nose_protrusion",
    "nose_width",
    "eye_spacing",
    "eye_size",
    "mouth_width",
    "brow_height",
    "chin_length",
    "chin_protrusion",
    "cheek_fullness",
    "face_depth",
    "lip_thickness",
    "random_field_1",
    "random_field_2",
)
EXPRESSION_NAMES = ("smile", "mouth_open", "brows_raise", "eyes_close", "jaw_sideways")
NUM_LANDMARKS = 68
FACE_MESH_PATH = Path(__file__).parent / "data" / "astronaut_face_mesh.npz"

# Hair ellipse in face units (centre x, centre y, half width, half height); below SIDE_CUT the
# outline follows the jaw line, JAW_MARGIN outside it.
HEAD_ELLIPSE = (0.03, 0.35, 1.62, 2.2)
SIDE_CUT = 0.2
JAW_MARGIN = 0.1
# Depth of the head's outline (the occluding contour seen from the front) behind the eyes; at least
# SILHOUETTE_CLEARANCE behind the face-mesh rim on every ray.
SILHOUETTE_DEPTH = 1.1
SILHOUETTE_CLEARANCE = 0.15
NUM_RAYS = 72  # vertices per ring (twice the face-mesh rim)
FRONT_RINGS = 7  # rings from the rim to the outline
BACK_RINGS = 6  # rings from the outline to the pole
HAIR_BAND = 0.3  # the back of the head is textured from this outer fraction of each ray above SIDE_CUT,
JAW_BAND = 0.03  # and from this one on the rays that meet the jaw line
JAW_SOURCE_REACH = 0.4  # on those rays the rings take the photo from this fraction of the way to the outline
# Neck: an elliptic cylinder below the chin (half width from jaw points 5 and 11 minus NECK_INSET).
NECK_INSET = 0.05
NECK_TOP_ABOVE_CHIN = 0.7
NECK_BOTTOM = 2.55
NECK_CENTRE_DEPTH = 1.25
NECK_HALF_DEPTH = 0.75
NECK_COLUMNS, NECK_ROWS = 24, 6
DELIGHTING_RANGE = (0.8, 1.25)
DELIGHTING_STRENGTH = 0.5  # exponent on the fitted gain: 1 divides out all of the fitted shading
# Eye indices (iBUG, 0-based): right eye in the image's left half is 36..41, the other 42..47.
EYE_INDICES = (tuple(range(36, 42)), tuple(range(42, 48)))
INNER_MOUTH = tuple(range(60, 68))


@dataclass(frozen=True)
class FaceMesh:
    """The neutral head and its blend shapes, all float32 tensors.

    vertices (V, 3); faces (T, 3) int64, counter-clockwise on screen when they face the camera;
    uv (V, 2) portrait texture coordinates in [-1, 1] (grid_sample, align_corners=True);
    skin_weight (V,), hair_weight (V,) in [0, 1]; delighting (V,) gains on the texture;
    identity_basis (I, V, 3); expression_basis (E, V, 3); texture (3, Ht, Wt) in [0, 1].
    Vertices 0..67 are the iBUG landmarks.
    """

    vertices: torch.Tensor
    faces: torch.Tensor
    uv: torch.Tensor
    skin_weight: torch.Tensor
    hair_weight: torch.Tensor
    delighting: torch.Tensor
    identity_basis: torch.Tensor
    expression_basis: torch.Tensor
    texture: torch.Tensor


@dataclass
class _Parts:
    """The head under construction: vertices (V, 3) in face units, texture source points (V, 2) in
    face units, front weights (V,) (where blend shapes act), triangles (T, 3) and which of them are
    on the front (T,) bool."""

    vertices: np.ndarray
    sources: np.ndarray
    front: np.ndarray
    triangles: np.ndarray
    front_triangles: np.ndarray


def build_face_mesh(seed: int = 0, head_depth: float = 2.7) -> FaceMesh:
    """Build the head mesh from the portrait and its face mesh.

    Args:
        seed: seed of the two random identity fields.
        head_depth: depth of the back of the head behind the eyes, in inter-ocular units (1.5..4).
    """
    if not 1.5 <= head_depth <= 4.0:
        raise ValueError(f"head_depth must lie in [1.5, 4.0], got {head_depth}")
    photo = portrait_image()
    pixels = portrait_landmarks()
    to_face, to_pixels, scale = _face_frame(pixels)
    landmarks = to_face(pixels)
    face_points, face_triangles = _face_mesh_points(to_face, scale, pixels)
    outline = _head_outline(landmarks)
    parts = _head_parts(face_points, face_triangles, outline, landmarks, head_depth)
    parts = _with_landmark_vertices(parts, landmarks)
    faces = parts.triangles
    photo_size = np.array([photo.shape[1], photo.shape[0]], dtype=np.float64)
    uv = to_pixels(parts.sources) / (photo_size - 1.0) * 2.0 - 1.0
    skin, hair = _region_weights(parts.sources, landmarks)
    front = parts.front[:, None]
    identity = _identity_basis(parts.vertices, landmarks, seed, parts.front > 0.5) * front
    expression = _expression_basis(parts.vertices, landmarks) * front
    photo = paint_jaw_band(photo, landmarks[0:17], outline, SIDE_CUT, to_face, to_pixels, _inside_polygon)
    delighting = _delighting(photo, parts, faces, uv, skin, len(face_points))
    texture = torch.from_numpy(photo.astype(np.float32) / 255.0).permute(2, 0, 1).contiguous()
    as_float = lambda array: torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))  # noqa: E731
    return FaceMesh(
        vertices=as_float(parts.vertices),
        faces=torch.from_numpy(faces.astype(np.int64)),
        uv=as_float(uv),
        skin_weight=as_float(skin),
        hair_weight=as_float(hair),
        delighting=as_float(delighting),
        identity_basis=as_float(identity),
        expression_basis=as_float(expression),
        texture=texture,
    )


def _face_frame(pixels: np.ndarray):
    """Maps between portrait pixels (N, 2) and levelled face units (N, 2), and the scale (pixels per face unit)."""
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

    return to_face, to_pixels, scale


def _face_mesh_points(to_face, scale: float, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MediaPipe's face mesh in face units: points (468, 3) with depth 0 at the eye centres (the
    depth interpolated at dlib's eye landmarks), and triangles (T, 3) with the eyes and mouth closed."""
    with np.load(FACE_MESH_PATH, allow_pickle=False) as data:
        points_px, triangles = data["points"].astype(np.float64), data["triangles"].astype(np.int64)
    points = np.concatenate([to_face(points_px[:, :2]), points_px[:, 2:3] / scale], 1)
    _, holes = _boundary_loops(triangles)
    triangles = np.concatenate([triangles] + [_fill_loop(points[:, :2], loop) for loop in holes])
    eyes = to_face(pixels[36:48])
    depth, _ = _depth_at(points, triangles, eyes)
    points[:, 2] -= np.nanmean(depth)
    return points, triangles


def _boundary_loops(triangles: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Closed chains of the edges used by one triangle: the longest (the rim) and the others (holes)."""
    uses = collections.Counter(tuple(sorted(edge)) for a, b, c in triangles for edge in ((a, b), (b, c), (c, a)))
    neighbours = collections.defaultdict(list)
    for (a, b), count in uses.items():
        if count == 1:
            neighbours[a].append(b)
            neighbours[b].append(a)
    loops, seen = [], set()
    for start in sorted(neighbours):
        if start in seen:
            continue
        loop, previous = [start], None
        seen.add(start)
        while True:
            following = [v for v in neighbours[loop[-1]] if v != previous and v not in seen]
            if not following:
                break
            previous = loop[-1]
            loop.append(following[0])
            seen.add(following[0])
        loops.append(np.array(loop))
    loops.sort(key=len, reverse=True)
    return loops[0], loops[1:]


def _fill_loop(points_2d: np.ndarray, loop: np.ndarray) -> np.ndarray:
    """Triangles (T, 3) covering a closed loop of vertex indices: the Delaunay triangles of its
    points whose centroids lie inside it, counter-clockwise on screen."""
    polygon = points_2d[loop]
    local = Delaunay(polygon).simplices
    local = local[_inside_polygon(polygon[local].mean(1), polygon)]
    return _counter_clockwise(loop[local], points_2d)


def _counter_clockwise(triangles: np.ndarray, points_2d: np.ndarray) -> np.ndarray:
    a, b, c = (points_2d[triangles[:, i]] for i in range(3))
    cross = (b - a)[:, 0] * (c - a)[:, 1] - (b - a)[:, 1] * (c - a)[:, 0]
    return np.where((cross < 0)[:, None], triangles[:, [0, 2, 1]], triangles)


def _barycentric_2d(points_2d: np.ndarray, triangles: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Barycentric weights (Q, T, 3) of query points (Q, 2) in every triangle (T, 3)."""
    a, b, c = (points_2d[triangles[:, i]][None] for i in range(3))
    q = query[:, None]
    cross = lambda u, v: u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]  # noqa: E731
    area = cross(b - a, c - a)
    area = np.where(np.abs(area) > 1e-12, area, np.nan)
    weight_a, weight_b = cross(b - q, c - q) / area, cross(c - q, a - q) / area
    return np.stack([weight_a, weight_b, 1.0 - weight_a - weight_b], -1)


def _depth_at(points: np.ndarray, triangles: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Depth (Q,) of the nearest triangle under each query point (Q, 2) and its index (Q,), NaN and
    -1 where none covers it."""
    weights = _barycentric_2d(points[:, :2], triangles, query)
    inside = (weights >= -1e-9).all(-1)
    depth = np.einsum("qtc,tc->qt", weights, points[triangles, 2])
    depth = np.where(inside, depth, np.inf)
    nearest = depth.argmin(1)
    found = np.isfinite(depth.min(1))
    return np.where(found, depth.min(1), np.nan), np.where(found, nearest, -1)


def _inside_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """(N, 2) points, (P, 2) polygon -> (N,) bool, even-odd rule."""
    x, y = points[:, 0:1], points[:, 1:2]
    x0, y0 = polygon[:, 0], polygon[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    crosses = (y0 > y) != (y1 > y)
    x_at = x0 + (y - y0) * (x1 - x0) / np.where(y1 == y0, 1.0, y1 - y0)
    return (crosses & (x < x_at)).sum(1) % 2 == 1


def _head_outline(landmarks: np.ndarray) -> np.ndarray:
    """The head's outline (P, 2), closed implicitly: the hair ellipse above `SIDE_CUT`, an ear
    point on each side, then the jaw line (points 1..15) pushed out by `JAW_MARGIN` under the chin."""
    cx, cy, ax, ay = HEAD_ELLIPSE
    top_angle = np.arcsin((SIDE_CUT - cy) / ay)
    angles = np.linspace(top_angle, np.pi - top_angle - 2 * np.pi, 48)
    arc = np.stack([cx + ax * np.cos(angles), cy + ay * np.sin(angles)], -1)  # right to left over the top
    jaw = landmarks[0:17]
    centre = jaw.mean(0)
    outward = (jaw - centre) / np.linalg.norm(jaw - centre, axis=1, keepdims=True)
    jaw = jaw + JAW_MARGIN * outward
    left_ear = (arc[-1] + jaw[1]) / 2.0 + (0.0, 0.05)
    right_ear = (arc[0] + jaw[15]) / 2.0 + (0.0, 0.05)
    return np.concatenate([arc, [left_ear], jaw[1:16], [right_ear]])


def _ray_hits(centre: np.ndarray, directions: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Distance (R,) from `centre` (2,) along unit `directions` (R, 2) to the farthest crossing of the polygon (P, 2)."""
    start, stop = polygon, np.roll(polygon, -1, axis=0)
    edge = stop - start  # (P, 2)
    cross = lambda u, v: u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]  # noqa: E731
    denominator = cross(directions[:, None], edge[None])  # (R, P)
    offset = start[None] - centre
    with np.errstate(divide="ignore", invalid="ignore"):
        distance = cross(offset, edge[None]) / denominator
        along = cross(offset, directions[:, None]) / denominator
    valid = (np.abs(denominator) > 1e-12) & (along >= 0) & (along <= 1) & (distance > 0)
    return np.where(valid, distance, -np.inf).max(1)


def _head_parts(
    face_points: np.ndarray, face_triangles: np.ndarray, outline: np.ndarray, landmarks: np.ndarray, head_depth: float
) -> _Parts:
    """The face, the rings out to the outline, the back of the head and the neck (module docstring)."""
    rim, _ = _boundary_loops(face_triangles)
    centre = face_points[rim, :2].mean(0)
    angles = np.arctan2(*(face_points[rim, :2] - centre).T[::-1])
    if np.sum(np.sin(np.diff(np.unwrap(angles)))) < 0:
        rim, angles = rim[::-1], angles[::-1]
    # Ray j passes through rim vertex j // 2 (even j) or midway between two rim vertices (odd j).
    rim_next = np.roll(rim, -1)
    rim_2d = np.stack([face_points[rim, :2], (face_points[rim, :2] + face_points[rim_next, :2]) / 2.0], 1).reshape(
        -1, 2
    )
    rim_depth = np.stack([face_points[rim, 2], (face_points[rim, 2] + face_points[rim_next, 2]) / 2.0], 1).reshape(-1)
    num_rays = len(rim_2d)
    offset = rim_2d - centre
    rim_distance = np.linalg.norm(offset, axis=1)
    directions = offset / rim_distance[:, None]
    outline_distance = _ray_hits(centre, directions, outline)
    silhouette = np.maximum(SILHOUETTE_DEPTH, rim_depth + SILHOUETTE_CLEARANCE)
    # Front rings k = 1..FRONT_RINGS at fractions t of the way from the rim to the outline, denser
    # toward the outline where the depth turns fastest; the last ring is the outline itself.
    t = np.sin(0.5 * np.pi * np.arange(1, FRONT_RINGS + 1) / FRONT_RINGS)
    distance = rim_distance[None] + t[:, None] * (outline_distance - rim_distance)[None]  # (rings, rays)
    ratio = (distance / outline_distance).clip(0.0, 1.0)
    rim_ratio = rim_distance / outline_distance
    amplitude = (silhouette - rim_depth) / np.sqrt(1.0 - rim_ratio**2)
    front_depth = silhouette - amplitude * np.sqrt(1.0 - ratio**2)
    front_2d = centre + distance[..., None] * directions[None]
    # Texture sources: the photo's own pixels, except that on the rays that meet the jaw line the
    # steep side of the face (seen edge-on in the photo) takes the skin next to the rim instead.
    jaw_ray = centre[1] + outline_distance * directions[:, 1] >= SIDE_CUT
    source_t = np.where(jaw_ray[None], JAW_SOURCE_REACH * t[:, None], t[:, None])
    front_sources = (
        centre + (rim_distance[None] + source_t * (outline_distance - rim_distance)[None])[..., None] * directions[None]
    )
    # Back rings k = 1..BACK_RINGS shrink toward the pole; depth: an ellipse behind the outline.
    back_fraction = np.cos(0.5 * np.pi * np.arange(1, BACK_RINGS + 1) / (BACK_RINGS + 1))
    back_2d = centre + (back_fraction[:, None, None] * outline_distance[None, :, None]) * directions[None]
    back_depth = silhouette[None] + (head_depth - silhouette)[None] * np.sqrt(1.0 - back_fraction[:, None] ** 2)
    band = np.where(jaw_ray, JAW_BAND, HAIR_BAND)
    source_fraction = 1.0 - band[None] * (1.0 - back_fraction[:, None])  # (rings, rays)
    back_sources = centre + (source_fraction[..., None] * outline_distance[None, :, None]) * directions[None]
    pole = np.array([[*centre, head_depth]])

    num_face = len(face_points)
    ring_vertices = np.concatenate([front_2d, front_depth[..., None]], -1).reshape(-1, 3)
    back_vertices = np.concatenate([back_2d, back_depth[..., None]], -1).reshape(-1, 3)
    front_start, back_start = num_face, num_face + FRONT_RINGS * num_rays
    pole_index = back_start + BACK_RINGS * num_rays
    ring_index = lambda first, k: first + k * num_rays + np.arange(num_rays)  # noqa: E731
    # Rim -> first ring: each rim edge meets three rays (2j, 2j + 1, 2j + 2).
    first = ring_index(front_start, 0)
    j = np.arange(len(rim))
    joints = np.concatenate(
        [
            np.stack([rim[j], first[2 * j], first[2 * j + 1]], -1),
            np.stack([rim[j], first[2 * j + 1], rim_next[j]], -1),
            np.stack([rim_next[j], first[2 * j + 1], first[(2 * j + 2) % num_rays]], -1),
        ]
    )
    strips = [_strip(ring_index(front_start, k), ring_index(front_start, k + 1)) for k in range(FRONT_RINGS - 1)]
    back_rings = [ring_index(front_start, FRONT_RINGS - 1)] + [ring_index(back_start, k) for k in range(BACK_RINGS)]
    back = [_strip(inner, outer) for inner, outer in zip(back_rings[:-1], back_rings[1:])]
    last = back_rings[-1]
    back.append(np.stack([last, np.roll(last, -1), np.full(num_rays, pole_index)], -1))
    neck_vertices, neck_sources, neck_triangles = _neck(landmarks, pole_index + 1)

    sources = np.concatenate(
        [face_points[:, :2], front_sources.reshape(-1, 2), back_sources.reshape(-1, 2), pole[:, :2], neck_sources]
    )
    fade = np.concatenate(
        [
            np.full(num_face + FRONT_RINGS * num_rays, 1.0),
            np.repeat(_smoothstep(0.75, 0.98, back_fraction), num_rays),
            [0.0],
            np.zeros(len(neck_vertices)),
        ]
    )
    front_2d_all = np.concatenate([face_points[:, :2], front_2d.reshape(-1, 2)])
    front_triangles = np.concatenate(
        [face_triangles, _counter_clockwise(np.concatenate([joints, *strips]), front_2d_all)]
    )
    vertices = np.concatenate([face_points, ring_vertices, back_vertices, pole, neck_vertices])
    back = _outward(np.concatenate(back), vertices, np.array([*centre, SILHOUETTE_DEPTH]))
    neck_axis = vertices[neck_triangles].mean(1) * (0.0, 1.0, 0.0) + (
        neck_vertices[:, 0].mean(),
        0.0,
        NECK_CENTRE_DEPTH,
    )
    neck_triangles = _outward(neck_triangles, vertices, neck_axis)
    triangles = np.concatenate([front_triangles, back, neck_triangles])
    is_front = np.arange(len(triangles)) < len(front_triangles)
    return _Parts(vertices, sources, fade, triangles, is_front)


def _strip(inner: np.ndarray, outer: np.ndarray) -> np.ndarray:
    """Two triangles per quad between two rings of equal length (R,) of vertex indices -> (2R, 3)."""
    inner_next, outer_next = np.roll(inner, -1), np.roll(outer, -1)
    return np.concatenate([np.stack([inner, outer, outer_next], -1), np.stack([inner, outer_next, inner_next], -1)])


def _neck(landmarks: np.ndarray, first_index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The neck cylinder: vertices (N, 3), texture sources (N, 2) (the back takes the front's
    pixels) and triangles (T, 3) with indices from `first_index`."""
    centre_x = (landmarks[5, 0] + landmarks[11, 0]) / 2.0
    half_width = (landmarks[11, 0] - landmarks[5, 0]) / 2.0 - NECK_INSET
    heights = np.linspace(landmarks[8, 1] - NECK_TOP_ABOVE_CHIN, NECK_BOTTOM, NECK_ROWS + 1)
    around = np.linspace(0.0, 2.0 * np.pi, NECK_COLUMNS, endpoint=False)
    x = centre_x + half_width * np.sin(around)
    z = NECK_CENTRE_DEPTH - NECK_HALF_DEPTH * np.cos(around)
    vertices = np.stack(np.broadcast_arrays(x[None], heights[:, None], z[None]), -1).reshape(-1, 3)
    sources = vertices[:, :2].copy()
    rows = [first_index + r * NECK_COLUMNS + np.arange(NECK_COLUMNS) for r in range(NECK_ROWS + 1)]
    triangles = np.concatenate([_strip(upper, lower) for upper, lower in zip(rows[:-1], rows[1:])])
    return vertices, sources, triangles


def _with_landmark_vertices(parts: _Parts, landmarks: np.ndarray) -> _Parts:
    """Insert the 68 landmarks (68, 2) as vertices 0..67, each splitting the nearest front triangle
    under it into three; the other vertices follow in their order."""
    shift = NUM_LANDMARKS
    vertices, sources, fade = parts.vertices, parts.sources, parts.front
    triangles = parts.triangles + shift
    front = parts.front_triangles.copy()
    all_vertices = np.concatenate([np.zeros((shift, 3)), vertices])
    for index, point in enumerate(landmarks):
        candidates = np.flatnonzero(front)
        depth, nearest = _depth_at(all_vertices, triangles[candidates], point[None])
        if nearest[0] < 0:
            raise ValueError(f"landmark {index} lies outside the head's front; the outline does not contain the face")
        chosen = candidates[nearest[0]]
        all_vertices[index] = (*point, depth[0])
        a, b, c = triangles[chosen]
        triangles[chosen] = (a, b, index)
        triangles = np.concatenate([triangles, [(b, c, index), (c, a, index)]])
        front = np.concatenate([front, [True, True]])
    return _Parts(
        all_vertices,
        np.concatenate([landmarks, sources]),
        np.concatenate([np.ones(shift), fade]),
        triangles,
        front,
    )


def _outward(triangles: np.ndarray, points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Triangles (T, 3) ordered so that their normals (shading's convention, cross(c - a, b - a))
    point away from `centres` (T, 3) or (3,)."""
    a, b, c = (points[triangles[:, i]] for i in range(3))
    normal = np.cross(c - a, b - a)
    flip = (normal * ((a + b + c) / 3.0 - centres)).sum(-1) < 0
    return np.where(flip[:, None], triangles[:, [0, 2, 1]], triangles)


def _gaussian(points: np.ndarray, centre, sigma_x: float, sigma_y: float) -> np.ndarray:
    dx = (points[:, 0] - centre[0]) / sigma_x
    dy = (points[:, 1] - centre[1]) / sigma_y
    return np.exp(-0.5 * (dx**2 + dy**2))


def _smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


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


def _identity_basis(vertices: np.ndarray, landmarks: np.ndarray, seed: int, front: np.ndarray) -> np.ndarray:
    """(16, V, 3) identity displacement fields, see the module docstring for their order; `front`
    (V,) bool marks the vertices whose mean depth the face-depth field scales about."""
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
        field(
            dx=sum(0.15 * (x - c[0]) * m for c, m in zip(eye_centres, eye_masks)),
            dy=sum(0.15 * (y - c[1]) * m for c, m in zip(eye_centres, eye_masks)),
        ),
        field(dx=0.12 * (x - mouth[0]) * lips),
        field(dy=-0.06 * _gaussian(points, (0.0, landmarks[17:27, 1].mean()), 0.9, 0.2)),
        field(dy=0.1 * chin_mask),
        field(dz=-0.07 * chin_mask),
        field(dx=0.03 * np.tanh(x / 0.15) * cheek_mask, dz=-0.07 * cheek_mask),
        field(dz=0.1 * (vertices[:, 2] - vertices[front, 2].mean())),
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
        dy=sum(
            -0.06 * _gaussian(points, c, 0.22, 0.2) - 0.035 * _gaussian(points, c + (0.0, -0.3), 0.3, 0.25)
            for c in corners
        ),
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
    brow_weight = (
        _smoothstep(brow_y + 0.85 * (eye_y - brow_y), brow_y, y)
        * _smoothstep(brow_y - 1.2, brow_y - 0.2, y)
        * _smoothstep(1.7, 1.1, np.abs(x))
    )
    brows = field(dy=-0.08 * brow_weight)
    eyes_close = np.zeros_like(vertices)
    for eye in EYE_INDICES:
        lid = landmarks[list(eye)]
        upper_y, lower_y = lid[1:3, 1].mean(), lid[4:6, 1].mean()
        corner_y = lid[[0, 3], 1].mean()
        eye_cx, half_width = lid[:, 0].mean(), (lid[3, 0] - lid[0, 0]) / 2.0
        above = _smoothstep(brow_y + 0.05, upper_y, y) * (y <= upper_y) + (y > upper_y) * _smoothstep(
            corner_y, upper_y, y
        )
        across = _smoothstep(half_width * 1.6, half_width * 0.8, np.abs(x - eye_cx))
        eyes_close[:, 1] += (lower_y - upper_y) * above * across
    jaw_sideways = field(dx=0.06 * jaw_weight)
    return np.stack([smile, mouth_open, brows, eyes_close, jaw_sideways])


def _delighting(
    photo: np.ndarray, parts: _Parts, faces: np.ndarray, uv: np.ndarray, skin: np.ndarray, num_face: int
) -> np.ndarray:
    """Per-vertex gains (V,) that divide the portrait's own smooth shading out of the face.

    The portrait's luminance at the skin vertices of the face mesh is fitted as ambient + Lambert
    (a + n . l, least squares over the vertex normals n of the neutral mesh); each face vertex's
    gain is the fitted shading of a frontal normal over its own, to the power `DELIGHTING_STRENGTH`,
    clipped to `DELIGHTING_RANGE`.
    Vertices off the face mesh keep gain 1.
    """
    points = parts.vertices
    a, b, c = (points[faces[:, i]] for i in range(3))
    normals = np.zeros_like(points)
    for corner in range(3):
        np.add.at(normals, faces[:, corner], np.cross(c - a, b - a))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True).clip(1e-12)
    height, width = photo.shape[:2]
    pixel = ((uv + 1.0) / 2.0 * (np.array([width, height]) - 1.0)).round().astype(np.int64)
    luminance = (
        photo[pixel[:, 1].clip(0, height - 1), pixel[:, 0].clip(0, width - 1)] @ np.array([0.299, 0.587, 0.114]) / 255.0
    )
    on_face = np.zeros(len(points), dtype=bool)
    on_face[NUM_LANDMARKS : NUM_LANDMARKS + num_face] = True
    on_face[:17] = True
    fitted = on_face & (skin > 0.9)
    design = np.concatenate([np.ones((len(points), 1)), normals], 1)
    coefficients, *_ = np.linalg.lstsq(design[fitted], luminance[fitted], rcond=None)
    shading = design @ coefficients
    frontal = coefficients[0] - coefficients[3]
    gain = ((frontal / np.where(shading > 1e-3, shading, frontal)) ** DELIGHTING_STRENGTH).clip(*DELIGHTING_RANGE)
    return np.where(on_face | (np.arange(len(points)) < NUM_LANDMARKS), gain, 1.0)
