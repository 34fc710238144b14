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
from PIL import Image

from backbones.landmarks.base import LandmarkDetector
from common.errors import UserError
from common.shapes import check_shape

PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"
# Offset of the probe box of the aligned fit check, in box widths (right and down).
PROBE_SHIFT = 0.05


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
    """dlib's HOG face detector keeping the highest-scoring face of an image, searched on a small copy.

    "Find the box small, place the points large": an image whose longer side exceeds `search_size`
    is shrunk by the smallest integer factor that brings it within `search_size` (box filter), the
    box is searched there and scaled back to the full image, where the landmark model then runs.
    The scan starts at `upsample` doublings of that copy; when it finds nothing it repeats with one
    more doubling, up to `max_upsample`, and then scans the full image (`upsample` doublings), so it
    finds every face that the full-resolution search finds.

    Args:
        upsample: doublings of the search copy for the first scan (HOG finds faces of >= ~80 px).
        threshold: minimum detector score; raise it to reject weak detections.
        search_size: longest side of the search copy in pixels (None: search the full image). Choose
            it so that the faces are >= ~100 px on the copy.
        max_upsample: most doublings tried when the earlier scans find nothing (None: `upsample`).
    """

    def __init__(
        self, upsample: int = 0, threshold: float = 0.0, search_size: int | None = 256, max_upsample: int | None = 1
    ):
        max_upsample = upsample if max_upsample is None else max_upsample
        if not 0 <= upsample <= max_upsample:
            raise ValueError(f"need 0 <= upsample <= max_upsample, got upsample={upsample} max_upsample={max_upsample}")
        if search_size is not None and search_size < 32:
            raise ValueError(f"search_size must be >= 32 pixels or null, got {search_size}")
        self.upsample, self.max_upsample = int(upsample), int(max_upsample)
        self.threshold = float(threshold)
        self.search_size = None if search_size is None else int(search_size)
        self._detector = dlib.get_frontal_face_detector()

    def shrink_factor(self, height: int, width: int) -> int:
        """The integer factor by which an image of that size is shrunk for the box search (1: not at all)."""
        if self.search_size is None:
            return 1
        return max(1, -(-max(height, width) // self.search_size))

    def find(self, image: np.ndarray) -> tuple[dlib.rectangle, float] | None:
        """(H, W, 3) uint8 RGB -> (box in full-image pixels, score) of the highest-scoring face, or None."""
        factor = self.shrink_factor(*image.shape[:2])
        search = image if factor == 1 else np.asarray(Image.fromarray(image).reduce(factor))
        for upsample in range(self.upsample, self.max_upsample + 1):
            found = self.best_box(search, upsample)
            if found is not None:
                return scale_box(found[0], factor), found[1]
        return self.best_box(image, self.upsample) if factor > 1 else None

    def best_box(self, image: np.ndarray, upsample: int) -> tuple[dlib.rectangle, float] | None:
        """One HOG scan of (H, W, 3) uint8 `image` doubled `upsample` times -> (box, score) of the best face, or None."""
        boxes, scores, _ = self._detector.run(image, upsample, self.threshold)
        if len(boxes) == 0:
            return None
        best = int(np.argmax(scores))
        return boxes[best], float(scores[best])


def scale_box(box: dlib.rectangle, factor: int) -> dlib.rectangle:
    """A box found on a copy shrunk by `factor` -> the same box in full-image pixels (inclusive corners)."""
    if factor == 1:
        return box
    return dlib.rectangle(
        box.left() * factor, box.top() * factor, (box.right() + 1) * factor - 1, (box.bottom() + 1) * factor - 1
    )


class DlibDetector(LandmarkDetector):
    """68 landmarks from dlib (HOG detector + shape predictor).

    The face box is searched on a small copy of the image (`HogFaceFinder`); the predictor places the
    points on the full-resolution image inside the box scaled back.

    Aligned generators (``aligned=True``, FFHQ-aligned checkpoints, where every face sits in about
    the same place): one face box, estimated by `calibrate` from a few images (the median of their
    detected boxes) or given as `face_box`, replaces the search. Each image is verified by the
    predictor's fit: it runs twice, from that box and from the box shifted by `PROBE_SHIFT` of its
    width; where a face fills the box both runs converge to the same points, elsewhere the points
    follow the box. When the two disagree by more than `fit_tolerance` of the box width, the face
    is searched as usual. A verified face's ``score`` is 1 - disagreement / fit_tolerance.

    Args:
        predictor_path: the 68-point predictor ``.dat``; None uses the one from face-recognition-models.
        upsample, threshold, search_size, max_upsample: the box search (see `HogFaceFinder`).
        aligned: use one face box for every image, verified per image (see above).
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
        aligned: bool = False,
        face_box: Sequence[float] | None = None,
        fit_tolerance: float = 0.02,
    ):
        if fit_tolerance <= 0:
            raise ValueError(f"fit_tolerance must be > 0, got {fit_tolerance}")
        if face_box is not None and not (
            len(face_box) == 4 and 0 <= face_box[0] < face_box[2] <= 1 and 0 <= face_box[1] < face_box[3] <= 1
        ):
            raise ValueError(
                f"face_box must be (left, top, right, bottom) fractions of the image with left < right and top < bottom, got {face_box}"
            )
        face_box = None if face_box is None else tuple(float(value) for value in face_box)
        self._args = (predictor_path, upsample, threshold, search_size, max_upsample, aligned, face_box, fit_tolerance)
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
        self._faces = HogFaceFinder(upsample, threshold, search_size, max_upsample)
        self.aligned = bool(aligned)
        self.face_box = face_box
        self.fit_tolerance = float(fit_tolerance)

    def __reduce__(self):
        """Pickle by constructor arguments (dlib objects do not pickle): each process reloads the files."""
        return (type(self), self._args)

    @property
    def needs_calibration(self) -> bool:
        """True for an aligned detector that has no face box yet (call `calibrate`)."""
        return self.aligned and self.face_box is None

    def calibrate(self, images: np.ndarray) -> tuple[float, float, float, float]:
        """Estimate the face box of an aligned generator: images (N, H, W, 3) uint8 -> the median of
        their detected boxes as fractions (left, top, right, bottom), also kept as `face_box`."""
        check_shape(images, ("N", "H", "W", 3), "calibration images")
        height, width = images.shape[1:3]
        boxes = [face[0] for face in map(self._faces.find, images) if face is not None]
        if not boxes:
            raise UserError(
                f"no face found in any of the {len(images)} calibration images; check the generator or set landmarks.aligned=false"
            )
        corners = np.array([(box.left(), box.top(), box.right() + 1, box.bottom() + 1) for box in boxes], np.float64)
        self.face_box = tuple(
            float(value) for value in np.median(corners, axis=0) / np.array([width, height, width, height])
        )
        self._args = (*self._args[:6], self.face_box, self._args[7])
        return self.face_box

    def detect_one(self, image: np.ndarray) -> tuple[np.ndarray, float] | None:
        """(H, W, 3) uint8 RGB -> (landmarks (68, 2) pixels, score) or None."""
        if self.aligned:
            if self.face_box is None:
                raise ValueError("an aligned dlib detector needs a face box: call calibrate(images) or set face_box")
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
        height, width = image.shape[:2]
        left, top, right, bottom = np.rint(np.array(self.face_box) * (width, height, width, height)).astype(int)
        shift = max(1, round(PROBE_SHIFT * (right - left)))
        points = self.place_points(image, dlib.rectangle(left, top, right - 1, bottom - 1))
        probe = self.place_points(
            image, dlib.rectangle(left + shift, top + shift, right - 1 + shift, bottom - 1 + shift)
        )
        disagreement = float(np.linalg.norm(points - probe, axis=-1).mean()) / (right - left)
        if disagreement > self.fit_tolerance:
            return None
        return points, 1.0 - disagreement / self.fit_tolerance
