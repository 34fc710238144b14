"""dlib's HOG frontal face detector + its 68-point shape predictor (iBUG 300-W numbering).

The predictor file ``shape_predictor_68_face_landmarks.dat`` comes from the
``face-recognition-models`` package, located without importing it (its ``__init__`` imports
``pkg_resources``, which recent setuptools no longer ships). When the HOG detector finds several
faces, the one with the highest detector score is used; that score is the returned ``score``.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import dlib
import numpy as np

from backbones.landmarks.base import LandmarkDetector
from common.errors import UserError

PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"


def face_recognition_models_file(file_name: str) -> Path:
    """Path of a model file shipped by the ``face-recognition-models`` package; UserError if absent."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"{file_name} not found: install it with `pip install face-recognition-models`")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / file_name
    if not path.is_file():
        raise UserError(f"{path} is missing; reinstall it with `pip install --force-reinstall face-recognition-models`")
    return path


class HogFaceFinder:
    """dlib's HOG face detector keeping the highest-scoring face of an image.

    Args:
        upsample: times the image is doubled before scanning (1 finds faces down to ~40 px).
        threshold: minimum detector score; raise it to reject weak detections.
    """

    def __init__(self, upsample: int = 1, threshold: float = 0.0):
        if upsample < 0:
            raise ValueError(f"upsample must be >= 0, got {upsample}")
        self.upsample = int(upsample)
        self.threshold = float(threshold)
        self._detector = dlib.get_frontal_face_detector()

    def find(self, image: np.ndarray) -> tuple[dlib.rectangle, float] | None:
        """(H, W, 3) uint8 RGB -> (box, score) of the highest-scoring face, or None."""
        boxes, scores, _ = self._detector.run(image, self.upsample, self.threshold)
        if len(boxes) == 0:
            return None
        best = int(np.argmax(scores))
        return boxes[best], float(scores[best])


class DlibDetector(LandmarkDetector):
    """68 landmarks from dlib (HOG detector + shape predictor).

    Args:
        predictor_path: the 68-point predictor ``.dat``; None uses the one from face-recognition-models.
        upsample, threshold: passed to the HOG detector (see `HogFaceFinder`).
    """

    name = "dlib"
    num_landmarks = 68

    def __init__(self, predictor_path: str | None = None, upsample: int = 1, threshold: float = 0.0):
        self._args = (predictor_path, upsample, threshold)
        path = Path(predictor_path) if predictor_path is not None else face_recognition_models_file(PREDICTOR_FILE)
        if not path.is_file():
            raise UserError(f"dlib shape predictor {path} not found; put {PREDICTOR_FILE} there or set landmarks.predictor_path")
        try:
            self._predictor = dlib.shape_predictor(str(path))
        except RuntimeError as error:
            raise UserError(f"{path} is not a dlib shape predictor ({error}); reinstall face-recognition-models") from error
        self._faces = HogFaceFinder(upsample, threshold)

    def __reduce__(self):
        """Pickle by constructor arguments (dlib objects do not pickle): each process reloads the files."""
        return (type(self), self._args)

    def detect_one(self, image: np.ndarray) -> tuple[np.ndarray, float] | None:
        """(H, W, 3) uint8 RGB -> (landmarks (68, 2) pixels, HOG score) or None."""
        face = self._faces.find(image)
        if face is None:
            return None
        box, score = face
        shape = self._predictor(image, box)
        points = np.array([(part.x, part.y) for part in shape.parts()], np.float32)
        return points, score
