"""The portrait the synthetic faces are made from: `skimage.data.astronaut()` (public domain) and
its 68 iBUG landmarks, found once per process by dlib's HOG detector and 68-point predictor.

Conventions: the photo is (H, W, 3) uint8; landmarks are (68, 2) float64 pixels (x right, y down),
pixel centres at integer coordinates (dlib's convention).
"""
from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np

from nrsfm.errors import UserError

PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"


def face_recognition_models_dir() -> Path:
    """The folder holding the dlib model files of the installed `face-recognition-models` package.

    The package itself is not imported (its `__init__` needs `pkg_resources`).
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the dlib landmark model is missing; run `pip install face-recognition-models`")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def portrait_image() -> np.ndarray:
    """The astronaut portrait shipped with scikit-image: (512, 512, 3) uint8 RGB."""
    from skimage import data

    return data.astronaut()


@functools.lru_cache(maxsize=1)
def portrait_landmarks() -> np.ndarray:
    """The portrait's 68 iBUG landmarks: (68, 2) float64 pixels (x, y), deterministic."""
    import dlib

    predictor_path = face_recognition_models_dir() / PREDICTOR_FILE
    if not predictor_path.is_file():
        raise UserError(f"{predictor_path} is missing; reinstall it with `pip install --force-reinstall face-recognition-models`")
    image = portrait_image()
    detector = dlib.get_frontal_face_detector()
    boxes, scores, _ = detector.run(image, 1, 0.0)
    if not boxes:
        raise UserError("dlib found no face in skimage.data.astronaut(); reinstall scikit-image and dlib-bin")
    best_box = boxes[int(np.argmax(scores))]
    shape = dlib.shape_predictor(str(predictor_path))(image, best_box)
    landmarks = np.array([[part.x, part.y] for part in shape.parts()], dtype=np.float64)
    landmarks.setflags(write=False)
    return landmarks
