"""A short test clip made from skimage.data.astronaut(): the portrait re-posed frame by frame.

The astronaut's 68 dlib landmarks are lifted to 3D with a crude face depth (deepest at the nose,
falling off toward the cheeks), turned about the vertical axis by each frame's yaw and projected
back; a piecewise-affine warp (`skimage.transform.PiecewiseAffineTransform`, anchored at points
on the image border) moves the picture with them. The warped landmarks are each frame's truth.
"""

import numpy as np
import skimage.data
from skimage.transform import PiecewiseAffineTransform, resize, warp

from backbones.landmarks.dlib import DlibDetector

SIZE = 256


def astronaut_portrait(size=SIZE):
    """The astronaut's face crop (size, size, 3) uint8 and its 68 dlib landmarks (68, 2) in pixels."""
    image = skimage.data.astronaut()[:300, 80:380]
    image = (resize(image, (size, size), anti_aliasing=True) * 255).round().astype(np.uint8)
    detections = DlibDetector().detect_uint8(image[None])
    assert bool(detections.found[0]), "dlib must find the astronaut"
    return image, detections.landmarks[0].numpy().astype(np.float64)


def turned_landmarks(landmarks, yaw_deg):
    """(68, 2) pixels -> (68, 2) after turning the lifted face by `yaw_deg` about its vertical axis."""
    centre = landmarks.mean(0)
    width = landmarks[:, 0].max() - landmarks[:, 0].min()
    offset = (landmarks[:, 0] - centre[0]) / (width / 2)
    depth = 0.35 * width * (1 - np.clip(offset, -1, 1) ** 2)
    depth[27:36] += 0.15 * width  # the nose stands out
    angle = np.radians(yaw_deg)
    turned = landmarks.copy()
    turned[:, 0] = centre[0] + (landmarks[:, 0] - centre[0]) * np.cos(angle) + depth * np.sin(angle)
    return turned


def piecewise_affine(source, destination):
    """The piecewise-affine map taking source (N, 2) points to destination (N, 2)."""
    if hasattr(PiecewiseAffineTransform, "from_estimate"):
        return PiecewiseAffineTransform.from_estimate(source, destination)
    transform = PiecewiseAffineTransform()
    transform.estimate(source, destination)
    return transform


def astronaut_clip(yaws_deg, size=SIZE):
    """Frames (T, size, size, 3) uint8 of the astronaut turned by each yaw, and the true landmarks (T, 68, 2) pixels."""
    image, landmarks = astronaut_portrait(size)
    edge = np.linspace(0, size - 1, 5)
    border = np.concatenate(
        [
            np.stack([edge, np.zeros(5)], 1),
            np.stack([edge, np.full(5, size - 1.0)], 1),
            np.stack([np.zeros(3), edge[1:4]], 1),
            np.stack([np.full(3, size - 1.0), edge[1:4]], 1),
        ]
    )
    frames, truths = [], []
    for yaw in yaws_deg:
        moved = turned_landmarks(landmarks, yaw)
        transform = piecewise_affine(np.concatenate([moved, border]), np.concatenate([landmarks, border]))
        frames.append((warp(image, transform, preserve_range=True)).round().astype(np.uint8))
        truths.append(moved)
    return np.stack(frames), np.stack(truths)
