"""Does a real landmark detector read the synthetic faces, and where it does, does it agree with
the ground truth? (The acceptance check of `generator=synthetic`.)

Error of one image: the project's NME (`common.landmarks.nme`) of the detected landmarks against
the true ones; a set of images reports the mean over the images where a face was found.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from backbones.landmarks.base import LandmarkDetector
from backbones.synthetic.generator import SyntheticGenerator
from common.landmarks import nme

YAW_BIN_EDGES = (-90.0, -30.0, -20.0, -10.0, 0.0, 10.0, 20.0, 30.0, 90.0)


@dataclass(frozen=True)
class DetectionReport:
    """found (N,) bool; error (N,) float64 NME, NaN where nothing was found; yaw_deg (N,) true yaw of each sample."""

    found: np.ndarray
    error: np.ndarray
    yaw_deg: np.ndarray

    @property
    def detection_rate(self) -> float:
        return float(self.found.mean())

    @property
    def nme(self) -> float:
        """Mean NME over the samples where a face was found."""
        return float(np.nanmean(self.error)) if self.found.any() else float("nan")

    def per_yaw_bin(self) -> list[tuple[float, float, int, float, float]]:
        """(low, high, count, detection rate, NME) per bin of `YAW_BIN_EDGES` holding samples."""
        rows = []
        for low, high in zip(YAW_BIN_EDGES[:-1], YAW_BIN_EDGES[1:]):
            inside = (self.yaw_deg >= low) & (self.yaw_deg < high)
            if inside.any():
                found = self.found[inside]
                error = float(np.nanmean(self.error[inside])) if found.any() else float("nan")
                rows.append((low, high, int(inside.sum()), float(found.mean()), error))
        return rows

    def summary(self) -> str:
        lines = [f"{len(self.found)} samples: detected {self.detection_rate:.1%}, NME {self.nme:.4f}"]
        for low, high, count, rate, error in self.per_yaw_bin():
            lines.append(
                f"  yaw [{low:+4.0f}, {high:+4.0f}) deg: {count:4d} samples, detected {rate:6.1%}, NME {error:.4f}"
            )
        return "\n".join(lines)


def check_detection(
    generator: SyntheticGenerator, detector: LandmarkDetector, num_samples: int, seed: int = 0, batch_size: int = 32
) -> DetectionReport:
    """Render seeds seed .. seed + num_samples - 1 and compare the detector with the ground truth."""
    if num_samples < 1 or batch_size < 1:
        raise ValueError(f"num_samples and batch_size must be at least 1, got {num_samples} and {batch_size}")
    found, error, yaw = [], [], []
    for start in range(seed, seed + num_samples, batch_size):
        ws = generator.sample(min(batch_size, seed + num_samples - start), seed=start)
        with torch.no_grad():
            images = generator.synthesis(ws)
            truth = generator.ground_truth(ws)
        detections = detector.detect(images)
        batch_error = nme(detections.landmarks.to(truth["landmarks"].dtype), truth["landmarks"])
        found.append(detections.found.numpy())
        error.append(np.where(detections.found.numpy(), batch_error.numpy(), np.nan))
        yaw.append(truth["rotation_deg"][:, 1].numpy())
    return DetectionReport(
        np.concatenate(found), np.concatenate(error).astype(np.float64), np.concatenate(yaw).astype(np.float64)
    )
