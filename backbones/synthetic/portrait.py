"""The portrait the synthetic faces are made from: `skimage.data.astronaut()` (public domain) and
its 68 iBUG landmarks, found once per process by the project's dlib detector
(`backbones.landmarks.dlib`: HOG detector + 68-point predictor, highest-scoring face).

Conventions: the photo is (H, W, 3) uint8; landmarks are (68, 2) float64 pixels (x right, y down),
pixel centres at integer coordinates (dlib's convention).
"""

from __future__ import annotations

import functools

import numpy as np

from common.errors import UserError


def portrait_image() -> np.ndarray:
    """The astronaut portrait shipped with scikit-image: (512, 512, 3) uint8 RGB."""
    from skimage import data

    return data.astronaut()


@functools.lru_cache(maxsize=1)
def portrait_landmarks() -> np.ndarray:
    """The portrait's 68 iBUG landmarks: (68, 2) float64 pixels (x, y), deterministic."""
    from backbones.landmarks.dlib import DlibDetector

    # Full-resolution search with one doubling: the settings the portrait's landmarks were first found with.
    found = DlibDetector(upsample=1, search_size=None).detect_one(portrait_image())
    if found is None:
        raise UserError("dlib found no face in skimage.data.astronaut(); reinstall scikit-image and dlib-bin")
    landmarks = found[0].astype(np.float64)
    landmarks.setflags(write=False)
    return landmarks
