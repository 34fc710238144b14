"""A landmark detector stand-in for the re-enactment tests that sees what the regressor sees.

`OracleDetector` inverts `editing_standins.TinyGenerator`'s synthesis (tanh of a linear map of ws) by
least squares, and returns R(phi(w)) of the recovered latent in pixels: the landmarks the saved
regressor predicts for the pictured face. So the q fitted to a driving frame is one the target can
reach, and edits can be checked against their targets. Frames darker than `missing_below` (mean
pixel) have no face.
"""

import torch
from editing_standins import RESOLUTION, TinyGenerator

from backbones.landmarks.base import Detections
from regressor.export import load_attribute_regressor


class OracleDetector:
    """Named after the detector the regressor's NRSfM model was fit on, so the layout check passes quietly."""

    def __init__(self, regressor_path, missing_below=-0.9):
        self.regressor = load_attribute_regressor(regressor_path).double()
        self.name = self.regressor.nrsfm.metadata.get("landmarks", "oracle")
        self.num_landmarks = self.regressor.nrsfm.num_landmarks
        self.synthesis_matrix = TinyGenerator(dtype=torch.float64).synthesis_matrix
        self.missing_below = missing_below

    def detect(self, images):
        pixels = torch.atanh(images.double().flatten(1).clamp(-0.995, 0.995))
        ws = torch.linalg.lstsq(self.synthesis_matrix.T, pixels.T).solution.T.view(
            len(images), -1, self.synthesis_matrix.shape[0] // 3
        )
        with torch.no_grad():
            landmarks = RESOLUTION * self.regressor.nrsfm(self.regressor(ws.mean(1)))
        found = images.double().mean((1, 2, 3)) >= self.missing_below
        landmarks = torch.where(found[:, None, None], landmarks, 0.0).float()
        return Detections(landmarks, found, found.float())
