"""FAN (2D-FAN-4, 68 landmarks; Bulat & Tzimiropoulos 2017) through the face-alignment package.

The face-alignment package (optional extra: ``pip install -e ".[fan]"``) builds the network and
loads its weights from ``$TORCH_HOME/hub/checkpoints/2DFAN4-11f355bf06.pth.tar`` (the file its
release names), downloading the file when it is absent. Nothing is downloaded here: the file is
looked for first (``torch.hub.get_dir()``, which follows ``$TORCH_HOME``) and a missing one fails
with a line naming the file and the folder. The package's own face detectors download their
weights too, so it is built with its "folder" detector (which loads nothing) and the boxes come
from dlib's HOG detector, searched on a shrunk copy of the image (`HogFaceFinder`).

Batched on the GPU when there is one: face-alignment's own ``get_landmarks_from_batch`` runs the
network image by image on crops cut with OpenCV on the CPU and rounds the points to whole pixels,
so the crops of a whole batch are cut here on the device (`crop_images`, FAN's crop geometry: centre
moved up by 12% of the box height, side 200 * scale with scale = (width + height) /
`reference_scale`, resampled to 256x256 in [0, 1]) and the network, the package's, runs once per
batch. The (B, 68, 64, 64) heatmaps' arg-max, nudged a quarter pixel toward the higher neighbour, is
mapped back to image pixels; with `flip_input` the mirrored crop's heatmaps are added first, as the
package does. ``score`` is the mean heatmap maximum over the 68 points.

HOG boxes are tighter than the S3FD boxes FAN was trained with (S3FD boxes include the forehead),
so the default `reference_scale` is 165 instead of face-alignment's 195: a ~18% larger crop. This,
and the aligned mode's `fit_tolerance` for FAN's fits, were not checked against the real weights here
(they cannot be downloaded on this machine).
"""

from __future__ import annotations

import importlib
import pickle
from collections.abc import Sequence
from pathlib import Path

import dlib
import numpy as np
import torch
import torch.nn.functional as F

from backbones.landmarks.base import Detections
from backbones.landmarks.boxes import BoxDetector, HogFaceFinder, fit_disagreement, probe_box
from common.errors import UserError
from common.shapes import check_shape

INSTALL_HINT = 'pip install -e ".[fan]"'
NETWORK_NAME = "2DFAN-4"
CROP_SIZE = 256
HEATMAP_SIZE = 64


def import_face_alignment():
    """The face_alignment module; UserError naming the extra when it is not installed."""
    try:
        return importlib.import_module("face_alignment")
    except ImportError as error:
        raise UserError(
            f"landmarks=fan needs the face-alignment package ({error}); install it with `{INSTALL_HINT}`"
        ) from error


def weights_url(face_alignment) -> str:
    """Where face-alignment would download the 2D-FAN-4 weights from (its file name is the one it looks for)."""
    return face_alignment.api.models_urls[NETWORK_NAME]


def default_weights_path(face_alignment) -> Path:
    """Where face-alignment reads the FAN weights: ``torch.hub.get_dir()/checkpoints/<file of its release>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights_url(face_alignment)).name


def load_fan(device: str) -> torch.nn.Module:
    """face-alignment's 2D-FAN-4 network on `device` with the user's weights; UserError when they are absent or broken."""
    face_alignment = import_face_alignment()
    path = default_weights_path(face_alignment)
    if not path.is_file():
        raise UserError(
            f"FAN weights not found: put {path.name} (from {weights_url(face_alignment)}) in {path.parent}/ (set TORCH_HOME to use another folder)"
        )
    try:
        aligner = face_alignment.FaceAlignment(
            face_alignment.LandmarksType.TWO_D, device=device, face_detector="folder", flip_input=False, compile=False
        )
    except (RuntimeError, ValueError, OSError, EOFError, pickle.UnpicklingError) as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:120]
        raise UserError(f"{path} is not face-alignment's FAN weights ({reason}); download {path.name} again") from error
    return aligner.face_alignment_net.eval().requires_grad_(False)


def flip_heatmaps(heatmaps: torch.Tensor) -> torch.Tensor:
    """Heatmaps (B, 68, S, S) of a mirrored crop -> those of the crop itself (face-alignment's left-right pairs)."""
    from face_alignment.utils import flip

    return flip(heatmaps, is_label=True)


def crop_boxes(boxes: torch.Tensor, reference_scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Face boxes (B, 4) as (left, top, right, bottom) -> crop centres (B, 2) and sides (B,) in pixels."""
    check_shape(boxes, ("B", 4), "boxes")
    left, top, right, bottom = boxes.unbind(-1)
    height = bottom - top
    centre = torch.stack(((left + right) / 2, (top + bottom) / 2 - 0.12 * height), -1)
    side = 200.0 * (right - left + height) / reference_scale
    return centre, side


def crop_images(images: torch.Tensor, centre: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
    """Square crops resampled to 256x256: images (B, 3, H, W), centre (B, 2), side (B,) -> (B, 3, 256, 256).

    Output pixel i (centre i + 0.5) samples the image at centre - side/2 + (i + 0.5) * side / 256.
    """
    sizes = check_shape(images, ("B", 3, "H", "W"), "images")
    check_shape(centre, (sizes["B"], 2), "centre")
    height, width = sizes["H"], sizes["W"]
    size = torch.tensor([width, height], dtype=images.dtype, device=images.device)
    # grid_sample (align_corners=False) reads normalised u at pixel coordinate (u + 1) * size / 2 - 0.5.
    scale = side[:, None] / size
    offset = (2 * centre + 1) / size - 1
    theta = torch.zeros(len(images), 2, 3, dtype=images.dtype, device=images.device)
    theta[:, 0, 0], theta[:, 1, 1] = scale[:, 0], scale[:, 1]
    theta[:, :, 2] = offset
    grid = F.affine_grid(theta, [len(images), 3, CROP_SIZE, CROP_SIZE], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def heatmaps_to_landmarks(
    heatmaps: torch.Tensor, centre: torch.Tensor, side: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """FAN heatmaps (B, L, S, S) -> landmarks (B, L, 2) in image pixels and scores (B,) (mean peak value)."""
    sizes = check_shape(heatmaps, ("B", "L", "S", "S"), "heatmaps")
    size = sizes["S"]
    flat = heatmaps.flatten(2)
    peak, index = flat.max(-1)
    x, y = index % size, index // size

    def value(dx, dy):
        xs, ys = (x + dx).clamp(0, size - 1), (y + dy).clamp(0, size - 1)
        return flat.gather(-1, (ys * size + xs)[..., None])[..., 0]

    nudge_x = 0.25 * torch.sign(value(1, 0) - value(-1, 0))
    nudge_y = 0.25 * torch.sign(value(0, 1) - value(0, -1))
    points = torch.stack((x + nudge_x, y + nudge_y), -1).to(side.dtype)
    pixel = side[:, None, None] / size
    landmarks = centre[:, None, :] - side[:, None, None] / 2 + (points + 0.5) * pixel
    return landmarks, peak.mean(-1)


class FanDetector(BoxDetector):
    """68 landmarks from face-alignment's FAN on dlib HOG face boxes, a batch at a time.

    With ``aligned=True`` one face box replaces the search (see `BoxDetector`): the network runs on
    the crops of that box and of the box shifted by `PROBE_SHIFT`, batched; images whose two fits
    disagree by more than `fit_tolerance` of the box width are searched as usual.

    Args:
        upsample, threshold, search_size, max_upsample, search_face_px: the box search (see `HogFaceFinder`).
        reference_scale: box size (width + height) that maps to a 200-pixel crop; smaller = larger crop.
        device: "auto" (CUDA when available), "cpu", "cuda", "cuda:1", ...
        batch_size: crops per network call.
        flip_input: add the heatmaps of the mirrored crop (face-alignment's default; twice the work).
        aligned, face_box, fit_tolerance: the aligned mode (see `BoxDetector`).
    """

    name = "fan"
    num_landmarks = 68

    def __init__(
        self,
        upsample: int = 0,
        threshold: float = 0.0,
        search_size: int | None = 256,
        max_upsample: int | None = 1,
        search_face_px: int | None = 150,
        reference_scale: float = 165.0,
        device: str = "auto",
        batch_size: int = 32,
        flip_input: bool = True,
        aligned: bool = False,
        face_box: Sequence[float] | None = None,
        fit_tolerance: float = 0.02,
    ):
        if reference_scale <= 0:
            raise ValueError(f"reference_scale must be > 0, got {reference_scale}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        faces = HogFaceFinder(upsample, threshold, search_size, max_upsample, search_face_px)
        super().__init__(faces, aligned, face_box, fit_tolerance)
        self._args = (
            upsample,
            threshold,
            search_size,
            max_upsample,
            search_face_px,
            reference_scale,
            device,
            batch_size,
            flip_input,
            aligned,
            face_box,
            fit_tolerance,
        )
        self.device = torch.device(
            "cuda" if device == "auto" and torch.cuda.is_available() else "cpu" if device == "auto" else device
        )
        self._network = load_fan(str(self.device))
        self.reference_scale, self.batch_size, self.flip_input = (
            float(reference_scale),
            int(batch_size),
            bool(flip_input),
        )

    @torch.no_grad()
    def heatmaps(self, crops: torch.Tensor) -> torch.Tensor:
        """Crops (B, 3, 256, 256) in [0, 1] on the device -> FAN heatmaps (B, 68, 64, 64) float32."""

        def run(batch):
            output = self._network(batch)
            return (output[-1] if isinstance(output, (list, tuple)) else output).float()

        heatmaps = run(crops)
        if self.flip_input:
            heatmaps = heatmaps + flip_heatmaps(run(crops.flip(-1)))
        check_shape(heatmaps, (len(crops), self.num_landmarks, "S", "S"), "FAN heatmaps")
        return heatmaps

    @torch.no_grad()
    def landmarks_in_boxes(self, images: np.ndarray, boxes: list[dlib.rectangle]) -> tuple[np.ndarray, np.ndarray]:
        """The network's points in one box per image, `batch_size` crops per call: images (B, H, W, 3)
        uint8 RGB, B boxes -> landmarks (B, 68, 2) float32 pixels, scores (B,) float32."""
        check_shape(images, (len(boxes), "H", "W", 3), "uint8 images")
        landmarks = np.zeros((len(boxes), self.num_landmarks, 2), np.float32)
        score = np.zeros(len(boxes), np.float32)
        for start in range(0, len(boxes), self.batch_size):
            rows = slice(start, start + self.batch_size)
            corners = [(box.left(), box.top(), box.right(), box.bottom()) for box in boxes[rows]]
            centre, side = crop_boxes(
                torch.tensor(corners, dtype=torch.float32, device=self.device), self.reference_scale
            )
            pixels = torch.from_numpy(images[rows]).to(self.device).permute(0, 3, 1, 2).float() / 255.0
            points, peaks = heatmaps_to_landmarks(self.heatmaps(crop_images(pixels, centre, side)), centre, side)
            landmarks[rows], score[rows] = points.cpu().numpy(), peaks.cpu().numpy()
        return landmarks, score

    def verified_fits(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The aligned mode's fits from the fixed face box: images (B, H, W, 3) uint8 -> landmarks
        (B, 68, 2) pixels, scores (B,), verified (B,) bool (the two fits agree within `fit_tolerance`)."""
        box = self.fixed_box(*images.shape[1:3])
        points, score = self.landmarks_in_boxes(images, [box] * len(images))
        probe_points, _ = self.landmarks_in_boxes(images, [probe_box(box)] * len(images))
        return points, score, fit_disagreement(points, probe_points, box.width()) <= self.fit_tolerance

    def detect_uint8(self, images: np.ndarray) -> Detections:
        """images (B, H, W, 3) uint8 RGB -> Detections (landmarks (B, 68, 2) pixels)."""
        check_shape(images, ("B", "H", "W", 3), "uint8 images")
        landmarks = np.zeros((len(images), self.num_landmarks, 2), np.float32)
        score = np.zeros(len(images), np.float32)
        found = np.zeros(len(images), bool)
        if self.aligned:
            landmarks, score, found = self.verified_fits(images)
            landmarks[~found], score[~found] = 0.0, 0.0
        search = np.flatnonzero(~found)
        faces = {index: self._faces.find(np.ascontiguousarray(images[index])) for index in search}
        rows = np.array([index for index, face in faces.items() if face is not None], np.int64)
        if len(rows):
            landmarks[rows], score[rows] = self.landmarks_in_boxes(images[rows], [faces[index][0] for index in rows])
            found[rows] = True
        return Detections(torch.from_numpy(landmarks), torch.from_numpy(found), torch.from_numpy(score))
