"""Face boxes for the detectors whose landmark model starts from a box (dlib's predictor, FAN).

"Find the box small, place the points large": `HogFaceFinder` searches the face box with dlib's HOG
detector on a shrunk copy of the image and scales it back; the landmark model then runs on the
full-resolution image. How much the copy is shrunk comes from the size of the faces when it is
known (`search_face_px`, after `calibrate`), else from the image size (`search_size`).

`BoxDetector` is the base of those detectors: the calibration on a few images of the generator
(the typical face size for the search, and for ``aligned`` generators one fixed face box), which
travels with the pickled detector to the sampling workers.

Boxes are dlib rectangles in full-image pixels with inclusive right and bottom corners; a face box
given as fractions (left, top, right, bottom) of the image width and height has exclusive ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dlib
import numpy as np
from PIL import Image

from backbones.landmarks.base import LandmarkDetector
from common.errors import UserError
from common.shapes import check_shape

# Offset of the probe box of the aligned fit check, in box widths (right and down).
PROBE_SHIFT = 0.05


class HogFaceFinder:
    """dlib's HOG face detector keeping the highest-scoring face of an image, searched on a small copy.

    The image is shrunk by an integer factor (box filter), the box is searched there and scaled back
    to the full image. The factor:
    - after `calibrate` with `search_face_px` set: the one that brings the calibration faces' median
      box width nearest to `search_face_px` pixels on the copy;
    - otherwise (images of unknown content: photos, videos): the smallest that brings the image's
      longer side within `search_size`.
    The scan starts at `upsample` doublings of that copy; when it finds nothing it repeats with one
    more doubling, up to `max_upsample`, and then scans the full image (`upsample` doublings), so it
    finds every face that the full-resolution search finds.

    Args:
        upsample: doublings of the search copy for the first scan (HOG finds faces of >= ~80 px).
        threshold: minimum detector score; raise it to reject weak detections.
        search_size: longest side of the search copy in pixels when the face size is not known
            (None: search the full image). Choose it so that the faces are >= ~100 px on the copy.
        max_upsample: most doublings tried when the earlier scans find nothing (None: `upsample`).
        search_face_px: width in pixels the faces should have on the copy once `calibrate` has
            measured them (None: always use `search_size`).
    """

    def __init__(
        self,
        upsample: int = 0,
        threshold: float = 0.0,
        search_size: int | None = 256,
        max_upsample: int | None = 1,
        search_face_px: int | None = None,
    ):
        max_upsample = upsample if max_upsample is None else max_upsample
        if not 0 <= upsample <= max_upsample:
            raise ValueError(f"need 0 <= upsample <= max_upsample, got upsample={upsample} max_upsample={max_upsample}")
        if search_size is not None and search_size < 32:
            raise ValueError(f"search_size must be >= 32 pixels or null, got {search_size}")
        if search_face_px is not None and search_face_px < 40:
            raise ValueError(f"search_face_px must be >= 40 pixels or null, got {search_face_px}")
        self.upsample, self.max_upsample = int(upsample), int(max_upsample)
        self.threshold = float(threshold)
        self.search_size = None if search_size is None else int(search_size)
        self.search_face_px = None if search_face_px is None else int(search_face_px)
        self.face_width: float | None = None  # median face box width over the image width, from `calibrate`
        self._detector = dlib.get_frontal_face_detector()

    @property
    def needs_calibration(self) -> bool:
        """True when the copy's size should follow the face size but the faces were not measured yet."""
        return self.search_face_px is not None and self.face_width is None

    def shrink_factor(self, height: int, width: int) -> int:
        """The integer factor by which an image of that size is shrunk for the box search (1: not at all)."""
        if self.search_face_px is not None and self.face_width is not None:
            return max(1, round(self.face_width * width / self.search_face_px))
        return self.size_factor(height, width)

    def size_factor(self, height: int, width: int) -> int:
        """The smallest integer factor that brings the longer side within `search_size` (1 when it is None)."""
        if self.search_size is None:
            return 1
        return max(1, -(-max(height, width) // self.search_size))

    def find(self, image: np.ndarray, factor: int | None = None) -> tuple[dlib.rectangle, float] | None:
        """(H, W, 3) uint8 RGB -> (box in full-image pixels, score) of the highest-scoring face, or None.

        `factor`: the shrink factor of the search copy (None: `shrink_factor`)."""
        factor = self.shrink_factor(*image.shape[:2]) if factor is None else factor
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

    def calibrate(self, images: np.ndarray) -> tuple[float, float, float, float] | None:
        """Measure the faces of a generator: images (N, H, W, 3) uint8, searched by image size ->
        the median of their boxes as fractions (left, top, right, bottom), or None when no face is
        found. Sets `face_width` (the median box width over the image width)."""
        check_shape(images, ("N", "H", "W", 3), "calibration images")
        height, width = images.shape[1:3]
        factor = self.size_factor(height, width)
        boxes = [face[0] for face in (self.find(image, factor) for image in images) if face is not None]
        if not boxes:
            return None
        corners = np.array([(box.left(), box.top(), box.right() + 1, box.bottom() + 1) for box in boxes], np.float64)
        fractions = corners / np.array([width, height, width, height])
        self.face_width = float(np.median(fractions[:, 2] - fractions[:, 0]))
        left, top, right, bottom = (float(value) for value in np.median(fractions, axis=0))
        return left, top, right, bottom


def scale_box(box: dlib.rectangle, factor: int) -> dlib.rectangle:
    """A box found on a copy shrunk by `factor` -> the same box in full-image pixels (inclusive corners)."""
    if factor == 1:
        return box
    return dlib.rectangle(
        box.left() * factor, box.top() * factor, (box.right() + 1) * factor - 1, (box.bottom() + 1) * factor - 1
    )


def check_face_box(face_box: Sequence[float] | None) -> tuple[float, float, float, float] | None:
    """A face box given as fractions (left, top, right, bottom) -> a tuple of floats; ValueError when it is not one."""
    if face_box is None:
        return None
    if not (len(face_box) == 4 and 0 <= face_box[0] < face_box[2] <= 1 and 0 <= face_box[1] < face_box[3] <= 1):
        raise ValueError(
            f"face_box must be (left, top, right, bottom) fractions of the image with left < right and top < bottom, got {face_box}"
        )
    left, top, right, bottom = (float(value) for value in face_box)
    return left, top, right, bottom


class BoxDetector(LandmarkDetector):
    """A landmark detector that places its points in a face box: the box search and the aligned mode.

    Boxes come from `HogFaceFinder` (``self._faces``). Aligned generators (``aligned=True``,
    FFHQ-aligned checkpoints, where every face sits in about the same place): one face box, given as
    `face_box` or estimated by `calibrate` (the median of the boxes found on a few images),
    replaces the search; each image is verified by the landmark model's fit from that box and from
    the box shifted by `PROBE_SHIFT` of its width (`fit_disagreement`): where a face fills the box
    both fits converge to the same points, elsewhere the points follow the box. When they disagree
    by more than `fit_tolerance` of the box width, the face is searched as usual.

    `calibrate(images)` measures what the detector needs to know about a generator's faces (see
    `needs_calibration`); the sampling stage calls it on seeds 0..7 before it starts its workers,
    and the measurements travel with the pickled detector. A calibrated detector belongs to that
    generator: build a new one for another. Subclasses set ``self._args``, the
    arguments of their constructor (a detector pickles by them: each process loads its own models).
    """

    _args: tuple

    def __init__(
        self, faces: HogFaceFinder, aligned: bool, face_box: Sequence[float] | None, fit_tolerance: float
    ) -> None:
        if fit_tolerance <= 0:
            raise ValueError(f"fit_tolerance must be > 0, got {fit_tolerance}")
        self._faces = faces
        self.aligned = bool(aligned)
        self.face_box = check_face_box(face_box)
        self.fit_tolerance = float(fit_tolerance)

    def __reduce__(self):
        """Pickle by constructor arguments plus the calibration (dlib and torch models are rebuilt in each process)."""
        return (type(self), self._args, self.calibration)

    def __setstate__(self, calibration: dict[str, Any]) -> None:
        self.face_box, self._faces.face_width = calibration["face_box"], calibration["face_width"]

    @property
    def calibration(self) -> dict[str, Any]:
        """What `calibrate` measured (or was given): ``face_box`` fractions and the search's ``face_width``."""
        return {"face_box": self.face_box, "face_width": self._faces.face_width}

    @property
    def needs_calibration(self) -> bool:
        """True while `calibrate` has something to measure: the aligned face box or the face size of the search."""
        return (self.aligned and self.face_box is None) or self._faces.needs_calibration

    def calibrate(self, images: np.ndarray) -> None:
        """Measure a generator's faces on images (N, H, W, 3) uint8: the search's face size and, for an
        aligned detector without a `face_box`, that box (the median of the detected boxes)."""
        face_box = self._faces.calibrate(images)
        if self.aligned and self.face_box is None:
            if face_box is None:
                raise UserError(
                    f"no face found in any of the {len(images)} calibration images; check the generator or set landmarks.aligned=false"
                )
            self.face_box = face_box

    def search_factor(self, height: int, width: int) -> int:
        """How much the box search shrinks an image of that size (`HogFaceFinder.shrink_factor`)."""
        return self._faces.shrink_factor(height, width)

    def fixed_box(self, height: int, width: int) -> dlib.rectangle:
        """The aligned mode's face box in pixels of an image of that size; ValueError before calibration."""
        if self.face_box is None:
            raise ValueError(
                f"an aligned {self.name} detector needs a face box: call calibrate(images) or set face_box"
            )
        left, top, right, bottom = np.rint(np.array(self.face_box) * (width, height, width, height)).astype(int)
        return dlib.rectangle(int(left), int(top), int(right) - 1, int(bottom) - 1)


def probe_box(box: dlib.rectangle) -> dlib.rectangle:
    """`box` shifted right and down by `PROBE_SHIFT` of its width (at least one pixel): the aligned fit check's second box."""
    shift = max(1, round(PROBE_SHIFT * box.width()))
    return dlib.rectangle(box.left() + shift, box.top() + shift, box.right() + shift, box.bottom() + shift)


def fit_disagreement(points: np.ndarray, probe_points: np.ndarray, box_width: float) -> np.ndarray:
    """Mean distance between the fits from the box and from its probe box, in box widths:
    points, probe_points (..., L, 2) pixels -> (...)."""
    return np.linalg.norm(points - probe_points, axis=-1).mean(-1) / box_width
