"""Face landmark detectors behind one interface (`LandmarkDetector.detect` -> `Detections`).

Implementations live in their own modules so that importing this package loads none of dlib,
mediapipe or FAN: ``backbones.landmarks.dlib.DlibDetector``, ``backbones.landmarks.mediapipe.MediaPipeDetector``,
``backbones.landmarks.fan.FanDetector``; Hydra group ``conf/landmarks/``.
"""

from backbones.landmarks.base import Detections, LandmarkDetector, images_to_uint8

__all__ = ["Detections", "LandmarkDetector", "images_to_uint8"]
