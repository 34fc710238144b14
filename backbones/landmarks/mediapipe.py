"""MediaPipe face mesh (468 landmarks) through the legacy ``mp.solutions.face_mesh`` API.

mediapipe 0.10.21 ships the face-mesh model inside the wheel (newer releases do not), but it pins
numpy<2 and protobuf<5, so it is an optional extra: ``pip install -e ".[mediapipe]"``. The import
happens when a detector is built, so the rest of the project never needs it.

One face per image: the mesh runs with up to `max_num_faces` faces and the largest one (area of
the landmarks' bounding box) is kept. The legacy API reports no per-face confidence, so ``score``
is 1.0 wherever a face was found (0.0 elsewhere).
"""

from __future__ import annotations

import importlib

import numpy as np

from backbones.landmarks.base import LandmarkDetector
from common.errors import UserError

INSTALL_HINT = 'pip install -e ".[mediapipe]"'


def import_mediapipe():
    """The mediapipe module with its legacy solutions API; UserError naming the extra when missing."""
    try:
        mediapipe = importlib.import_module("mediapipe")
    except ImportError as error:
        raise UserError(
            f"landmarks=mediapipe needs mediapipe 0.10.21 ({error}); install it with `{INSTALL_HINT}`"
        ) from error
    if not hasattr(mediapipe, "solutions"):
        version = getattr(mediapipe, "__version__", "unknown")
        raise UserError(
            f"mediapipe {version} lacks the legacy face_mesh solution; install 0.10.21 with `{INSTALL_HINT}`"
        )
    return mediapipe


class MediaPipeDetector(LandmarkDetector):
    """468 face-mesh landmarks (x, y) in pixels.

    Args:
        min_detection_confidence: face detector threshold in [0, 1].
        max_num_faces: faces the mesh looks for; the largest is kept.
    """

    name = "mediapipe"
    num_landmarks = 468

    def __init__(self, min_detection_confidence: float = 0.5, max_num_faces: int = 2):
        if not 0.0 <= min_detection_confidence <= 1.0:
            raise ValueError(f"min_detection_confidence must be in [0, 1], got {min_detection_confidence}")
        if max_num_faces < 1:
            raise ValueError(f"max_num_faces must be >= 1, got {max_num_faces}")
        self._args = (min_detection_confidence, max_num_faces)
        mediapipe = import_mediapipe()
        self._mesh = mediapipe.solutions.face_mesh.FaceMesh(
            static_image_mode=True,
            max_num_faces=int(max_num_faces),
            refine_landmarks=False,
            min_detection_confidence=float(min_detection_confidence),
        )

    def __reduce__(self):
        """Pickle by constructor arguments: each process builds its own graph."""
        return (type(self), self._args)

    def detect_one(self, image: np.ndarray) -> tuple[np.ndarray, float] | None:
        """(H, W, 3) uint8 RGB -> (landmarks (468, 2) pixels, 1.0) or None."""
        result = self._mesh.process(image)
        if not result.multi_face_landmarks:
            return None
        height, width = image.shape[:2]
        faces = np.array(
            [
                [(point.x, point.y) for point in face.landmark[: self.num_landmarks]]
                for face in result.multi_face_landmarks
            ],
            np.float32,
        ) * np.array([width, height], np.float32)
        extent = faces.max(axis=1) - faces.min(axis=1)
        largest = int(np.argmax(extent[:, 0] * extent[:, 1]))
        return faces[largest], 1.0
