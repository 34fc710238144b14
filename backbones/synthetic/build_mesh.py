"""Compute the astronaut face mesh once: MediaPipe's 468-point face mesh on `skimage.data.astronaut()`.

Writes backbones/synthetic/data/astronaut_face_mesh.npz (see data/README.md). MediaPipe does not
install next to the project's torch, so this runs in its own environment and imports nothing of
the project:

    python -m venv /tmp/mpvenv && /tmp/mpvenv/bin/pip install mediapipe==0.10.21 scikit-image
    /tmp/mpvenv/bin/python backbones/synthetic/build_mesh.py [--out backbones/synthetic/data/astronaut_face_mesh.npz]

Arrays written: ``points`` (468, 3) float32, the landmarks in portrait pixels (x right, y down; z
away from the camera, in the same pixel scale as x, MediaPipe's convention); ``triangles`` (T, 3)
int32, the triangles of MediaPipe's face-mesh tessellation (its edge list's 3-cliques that are
faces), oriented counter-clockwise on screen (y down) as seen in the photo; ``metadata`` a JSON
string (source image, MediaPipe version, options).
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

import numpy as np

DEFAULT_OUT = Path(__file__).parent / "data" / "astronaut_face_mesh.npz"


def face_mesh_points(image: np.ndarray) -> np.ndarray:
    """MediaPipe face mesh of the single face in `image` (H, W, 3) uint8 -> (468, 3) pixels."""
    import mediapipe as mp

    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=False) as mesh:
        result = mesh.process(image)
    if not result.multi_face_landmarks:
        raise SystemExit("error: MediaPipe found no face in skimage.data.astronaut(); check the mediapipe install")
    width = image.shape[1]
    landmarks = result.multi_face_landmarks[0].landmark
    return np.array([[p.x * width, p.y * image.shape[0], p.z * width] for p in landmarks], dtype=np.float64)


def tessellation_triangles(edges: set[tuple[int, int]]) -> np.ndarray:
    """Triangles (T, 3) of a triangulated surface given only as its edges.

    Every face is a 3-clique of the edge graph; a clique whose three edges each border two other
    cliques is a "separating" triangle, not a face, and is dropped.
    """
    undirected = {tuple(sorted(edge)) for edge in edges}
    neighbours = collections.defaultdict(set)
    for a, b in undirected:
        neighbours[a].add(b)
        neighbours[b].add(a)
    cliques = sorted({tuple(sorted((a, b, c))) for a, b in undirected for c in neighbours[a] & neighbours[b]})
    uses = collections.Counter(edge for a, b, c in cliques for edge in ((a, b), (b, c), (a, c)))
    faces = [t for t in cliques if min(uses[(t[0], t[1])], uses[(t[1], t[2])], uses[(t[0], t[2])]) <= 2]
    return np.array(faces, dtype=np.int64)


def oriented(triangles: np.ndarray, points_2d: np.ndarray) -> np.ndarray:
    """Make the triangles (T, 3) consistently oriented, counter-clockwise on screen (y down) in the majority.

    Orientation is propagated across shared edges (breadth first from the largest triangle), so
    triangles seen edge-on or from behind in the photo still agree with their neighbours.
    """
    triangles = triangles.copy()
    by_edge = collections.defaultdict(list)
    for index, (a, b, c) in enumerate(triangles):
        for edge in ((a, b), (b, c), (c, a)):
            by_edge[tuple(sorted(edge))].append(index)
    a, b, c = (points_2d[triangles[:, i]] for i in range(3))
    cross = (b - a)[:, 0] * (c - a)[:, 1] - (b - a)[:, 1] * (c - a)[:, 0]
    start = int(np.argmax(np.abs(cross)))
    if cross[start] < 0:
        triangles[start] = triangles[start, [0, 2, 1]]
    done, queue = {start}, collections.deque([start])
    while queue:
        index = queue.popleft()
        corners = triangles[index]
        for u, v in ((corners[0], corners[1]), (corners[1], corners[2]), (corners[2], corners[0])):
            for other in by_edge[tuple(sorted((u, v)))]:
                if other in done:
                    continue
                o = list(triangles[other])
                directed = {(o[0], o[1]), (o[1], o[2]), (o[2], o[0])}
                if (u, v) in directed:  # same direction as in `index`: flip to agree
                    triangles[other] = triangles[other, [0, 2, 1]]
                done.add(other)
                queue.append(other)
    if len(done) != len(triangles):
        raise SystemExit(
            f"error: the tessellation is not connected ({len(done)} of {len(triangles)} triangles reached)"
        )
    return triangles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    import mediapipe as mp
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_TESSELATION
    from skimage import data

    image = data.astronaut()
    points = face_mesh_points(image)
    triangles = oriented(tessellation_triangles(set(FACEMESH_TESSELATION)), points[:, :2])
    metadata = {
        "source": "skimage.data.astronaut() (public domain), 512x512",
        "method": "mediapipe.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=False)",
        "triangles": "3-cliques of FACEMESH_TESSELATION that are faces, oriented counter-clockwise on screen (y down)",
        "units": "pixels of the 512x512 portrait; z in the same scale as x (MediaPipe: z = landmark.z * width)",
        "mediapipe": mp.__version__,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out,
        points=points.astype(np.float32),
        triangles=triangles.astype(np.int32),
        metadata=np.array(json.dumps(metadata)),
    )
    print(f"wrote {args.out}: {len(points)} points, {len(triangles)} triangles")


if __name__ == "__main__":
    main()
