"""dlib's HOG frontal face detector + its 68-point shape predictor (iBUG 300-W numbering).

The predictor file ``shape_predictor_68_face_landmarks.dat`` comes from the
``face-recognition-models`` package, located without importing it (its ``__init__`` imports
``pkg_resources``, which recent setuptools no longer ships). When the HOG detector finds several
faces, the one with the highest detector score is used; that score is the returned ``score``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import dlib
import numpy as np

from backbones.landmarks.boxes import BoxDetector, HogFaceFinder, fit_disagreement, probe_box
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


class DlibDetector(BoxDetector):
    """68 landmarks from dlib (HOG detector + shape predictor).

    The face box is searched on a small copy of the image (`HogFaceFinder`); the predictor places the
    points on the full-resolution image inside the box scaled back. With ``aligned=True`` one face
    box replaces the search, verified per image by the predictor's fit from two nearby boxes (see
    `BoxDetector`); a verified face's ``score`` is 1 - disagreement / fit_tolerance.

    Args:
        predictor_path: the 68-point predictor ``.dat``; None uses the one from face-recognition-models.
        upsample, threshold, search_size, max_upsample, search_face_px: the box search (see `HogFaceFinder`).
        aligned: use one face box for every image, verified per image (see `BoxDetector`).
        face_box: that box as fractions (left, top, right, bottom) of the image width and height;
            None: `calibrate` estimates it.
        fit_tolerance: largest disagreement, in box widths, of a verified fit.
    """

    name = "dlib"
    num_landmarks = 68

    def __init__(
        self,
        predictor_path: str | None = None,
        upsample: int = 0,
        threshold: float = 0.0,
        search_size: int | None = 256,
        max_upsample: int | None = 1,
        search_face_px: int | None = 150,
        aligned: bool = False,
        face_box: Sequence[float] | None = None,
        fit_tolerance: float = 0.02,
    ):
        faces = HogFaceFinder(upsample, threshold, search_size, max_upsample, search_face_px)
        super().__init__(faces, aligned, face_box, fit_tolerance)
        self._args = (
            predictor_path,
            upsample,
            threshold,
            search_size,
            max_upsample,
            search_face_px,
            aligned,
            face_box,
            fit_tolerance,
        )
        path = Path(predictor_path) if predictor_path is not None else face_recognition_models_file(PREDICTOR_FILE)
        if not path.is_file():
            raise UserError(
                f"dlib shape predictor {path} not found; put {PREDICTOR_FILE} there or set landmarks.predictor_path"
            )
        try:
            self._predictor = dlib.shape_predictor(str(path))
        except RuntimeError as error:
            raise UserError(
                f"{path} is not a dlib shape predictor ({error}); reinstall face-recognition-models"
            ) from error

    def detect_one(self, image: np.ndarray) -> tuple[np.ndarray, float] | None:
        """(H, W, 3) uint8 RGB -> (landmarks (68, 2) pixels, score) or None."""
        if self.aligned:
            verified = self.verified_fit(image)
            if verified is not None:
                return verified
        face = self._faces.find(image)
        if face is None:
            return None
        box, score = face
        return self.place_points(image, box), score

    def place_points(self, image: np.ndarray, box: dlib.rectangle) -> np.ndarray:
        """The predictor's 68 points (68, 2) float32 pixels in `box` of the (H, W, 3) image."""
        return np.array([(part.x, part.y) for part in self._predictor(image, box).parts()], np.float32)

    def verified_fit(self, image: np.ndarray) -> tuple[np.ndarray, float] | None:
        """Landmarks (68, 2) and fit score from the fixed face box, or None when the fit fails the check."""
        box = self.fixed_box(*image.shape[:2])
        points = self.place_points(image, box)
        disagreement = float(fit_disagreement(points, self.place_points(image, probe_box(box)), box.width()))
        if disagreement > self.fit_tolerance:
            return None
        return points, 1.0 - disagreement / self.fit_tolerance
