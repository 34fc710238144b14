"""The state behind the browser editor (`editing.app`): one face at a time, with its Jacobian cached.

A face comes from a seed, a random seed, or an uploaded latent file (``w`` (N, num_ws, w_dim), NVIDIA's
layout; its first face). Sliders hold absolute values: degrees for pitch, yaw and roll; units of q for
scale (k11 and k22 together), tx, ty and ``alpha.<k>``; training standard deviations along the direction
for the expression presets (`editing.presets`, 68-landmark models only). The page sends only the sliders
the user moved, as changes in the names of `editing.attributes.edit_target`.

Two ways to edit, both toward the same target (`edit_target`, then `editing.session.hold_alpha`):
- `EditorSession.preview` (while a slider moves): the linear editor's first step from the face's cached
  Jacobian J (D, P), i.e. one small (C, C) solve and one synthesis;
- `EditorSession.refine` (when it is let go): the chosen editor (conf/edit/linear or gradient) through
  `editing.session.apply_editor`.
Every view is the grid original | edit | edit with the target landmarks (green rings) and, when asked, the
landmarks detected on the edit (red dots), as a PNG. Bad input raises `UserError` with a message for the page.
"""

from __future__ import annotations

import io
import math
import secrets
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from PIL import Image, UnidentifiedImageError
from torch import nn

from backbones.generator import Generator
from common.errors import UserError
from editing.attributes import EditTarget, attribute_range, edit_target
from editing.compatibility import check_regressor_matches
from editing.latents import latents_from_file, latents_from_seeds, row_mask
from editing.linear import latent_jacobian, minimum_norm_step
from editing.outputs import ACHIEVED_COLOR, TARGET_COLOR, draw_landmarks, images_to_uint8, save_latents
from editing.pose_coupling import couple_held_alpha, pose_coupling
from editing.presets import PRESET_NAMES, derive_expression_directions, expression_coordinates
from editing.render import render
from editing.session import apply_editor, choice, editable_rows, latent_metric, training_attributes
from nrsfm.fit_q import fit_q
from regressor.export import load_attribute_regressor

ANGLES = ("pitch", "yaw", "roll")
TRANSFER_PARTS = ("rotation", "expression")


@dataclass
class Face:
    """The face being edited.

    Attributes:
        label: where it came from, e.g. "seed 7".
        latent0: (1, *S) its latent in the regressor's space.
        q0: (1, D) phi(latent0).
        jacobian: (1, D, P) d phi / d latent at latent0 (P = prod(S)).
        image0: (1, 3, R, R) the original image in [-1, 1].
    """

    label: str
    latent0: torch.Tensor
    q0: torch.Tensor
    jacobian: torch.Tensor
    image0: torch.Tensor


@dataclass
class EditView:
    """One shown edit: the grid (H, 3 W, 3) uint8, the edited latent (1, *S), its target, phi of it (1, D),
    and whether the detector found the face on it (None: not asked)."""

    grid: np.ndarray
    latent: torch.Tensor
    target: EditTarget
    q: torch.Tensor
    detected: bool | None
    editor: str


class EditorSession:
    """The generator, regressor and detector of one app, the face being edited and its latest edit.

    Args:
        cfg: the app's config (conf/app.yaml: the editing settings of conf/editing/common.yaml and
            ``editors``, conf/edit nodes by name).
        generator, regressor: as the editing commands load them (`editing.session`).
        detector: a LandmarkDetector of the regressor's landmark type (for the red landmarks and photos).
    """

    def __init__(self, cfg: DictConfig, generator: Generator, regressor: nn.Module, detector: Any):
        self.cfg = cfg
        self.generator = generator
        self.detector = detector
        self.editors: dict[str, DictConfig] = dict(cfg.editors)
        self.face: Face | None = None
        self.view: EditView | None = None
        self.note = ""
        self._use(regressor)

    # Choosing the model and the face

    def use_regressor_file(self, path: str) -> dict[str, Any]:
        """Switch to the regressor in `path` (regressor.pt) if it fits the generator; the face is kept."""
        path = Path(str(path).strip())
        if not path.is_file():
            raise UserError(
                f"regressor file {path} not found; give the path of a regressor.pt from python -m regressor.train"
            )
        try:
            regressor = load_attribute_regressor(path).requires_grad_(False)
            check_regressor_matches(regressor, self.generator, self.cfg.latent_space)
        except (ValueError, OSError, RuntimeError, KeyError) as error:
            raise UserError(f"cannot use {path}: {error}") from error
        if regressor.nrsfm.num_landmarks != self.detector.num_landmarks:
            raise UserError(
                f"{path} was fitted to {regressor.nrsfm.num_landmarks} landmarks, but the app's detector "
                f"{self.detector.name} gives {self.detector.num_landmarks}; restart the app with that regressor"
            )
        regressor.metadata["path"] = str(path)
        label = None if self.face is None else self.face.label
        latent0 = None if self.face is None else self.face.latent0
        self._use(regressor)
        if latent0 is not None:
            self._set_face(label, latent0)
        return self.state()

    def choose_seed(self, seed: Any) -> dict[str, Any]:
        """Edit the face of integer `seed`; returns `state`."""
        try:
            seed = int(seed)
        except (TypeError, ValueError) as error:
            raise UserError(f"seed must be a whole number, got {seed!r}") from error
        if not 0 <= seed < 2**32:
            raise UserError(f"seed must be in 0 .. {2**32 - 1}, got {seed}")
        latent = latents_from_seeds(self.generator, [seed], self.cfg.latent_space, float(self.cfg.truncation_psi))
        self._set_face(f"seed {seed}", latent)
        return self.state()

    def choose_random(self) -> dict[str, Any]:
        """Edit the face of a random seed; returns `state`."""
        return self.choose_seed(secrets.randbelow(2**31))

    def choose_latent_file(self, data: bytes, name: str = "upload.npz") -> dict[str, Any]:
        """Edit the first face of an uploaded latent file (``w`` (N, num_ws, w_dim)); returns `state`."""
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "latents.npz"
            path.write_bytes(data)
            try:
                latents = latents_from_file(self.generator, path, self.cfg.latent_space)
            except (UserError, ValueError) as error:
                raise UserError(str(error).replace(str(path), Path(name).name)) from error
        self._set_face(f"{Path(name).name} (face 1 of {len(latents)})", latents[:1])
        return self.state()

    def state(self) -> dict[str, Any]:
        """What the page shows of the session: the face, the sliders (with the face's values), the editors."""
        return {
            "face": None if self.face is None else self.face.label,
            "sliders": self.sliders(),
            "editors": list(self.editors),
            "presets": self.directions is not None,
            "regressor": str(self.regressor.metadata.get("path", "")),
            "generator": self.generator.name,
            "resolution": int(self.generator.img_resolution),
        }

    def sliders(self) -> list[dict[str, Any]]:
        """One entry per slider: name, min, max, step and the current face's value."""
        model = self.regressor.nrsfm
        low, high = (bound.double() for bound in attribute_range(model, float(self.cfg.num_std)))
        names = model.layout.names()
        q0 = self.face.q0[0].double() if self.face is not None else model.q_mean.double()
        values = self._slider_values(q0[None])
        entries = []
        for name in (*ANGLES, "scale", "tx", "ty"):
            index = names.index("k11" if name == "scale" else name)
            factor = 180 / math.pi if name in ANGLES else 1.0
            entries.append(_slider(name, factor * float(low[index]), factor * float(high[index]), values[name]))
        if self.directions is not None:
            entries += [
                _slider(name, -float(self.cfg.num_std), float(self.cfg.num_std), values[name]) for name in PRESET_NAMES
            ]
        for k in range(model.layout.num_basis):
            index = names.index(f"alpha.{k}")
            entries.append(_slider(f"alpha.{k}", float(low[index]), float(high[index]), values[f"alpha.{k}"]))
        return entries

    # Editing

    def preview(self, changes: Mapping[str, Any], detect: bool = True) -> EditView:
        """The linear editor's first step from the cached Jacobian toward `changes` (absolute slider values)."""
        face = self._current_face()
        target = self.target(changes)
        constrained = target.constrained.nonzero().flatten()
        scale = self.regressor.nrsfm.q_std.to(face.q0)[constrained]
        residual = (target.q[:, constrained] - face.q0[:, constrained]) / scale
        jacobian = face.jacobian[:, constrained] / scale[:, None] * self._editable
        step = minimum_norm_step(jacobian, residual, self._damping, self._metric)
        latent = (face.latent0.flatten(1) + step).view_as(face.latent0)
        return self._show(latent, target, detect, "preview")

    def refine(self, changes: Mapping[str, Any], editor: str, detect: bool = True) -> EditView:
        """Run the editor named `editor` (a key of ``cfg.editors``) toward `changes` through `apply_editor`."""
        face = self._current_face()
        if editor not in self.editors:
            raise UserError(f"unknown editor {editor!r}; choose one of {', '.join(self.editors)}")
        target = self.target(changes)
        result = apply_editor(
            self.cfg,
            self.generator,
            self.regressor,
            face.latent0,
            target,
            editor=self.editors[editor],
            metric=self._metric,
        )
        if not torch.isfinite(result.latent).all():
            raise UserError("the edit diverged (non-finite latents); ask for a smaller change or use the linear editor")
        return self._show(result.latent.detach(), target, detect, editor)

    def target(self, changes: Mapping[str, Any]) -> EditTarget:
        """EditTarget (1, D) for absolute slider values `changes` (names as `sliders`), held as ``cfg.hold_alpha`` asks;
        a target outside the training range is clamped and `note` says so (else it is empty)."""
        face = self._current_face()
        values = {}
        for name, value in changes.items():
            if name not in self._slider_names:
                raise UserError(f"unknown slider {name!r}; valid: {', '.join(self._slider_names)}")
            try:
                values[name] = float(value)
            except (TypeError, ValueError) as error:
                raise UserError(f"slider {name} needs a number, got {value!r}") from error
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                target = edit_target(
                    face.q0,
                    values,
                    self.regressor.nrsfm,
                    free=list(self.cfg.free),
                    num_std=float(self.cfg.num_std),
                    directions=self.directions,
                )
        except ValueError as error:
            raise UserError(str(error)) from error
        self.note = "; ".join(str(warning.message) for warning in caught)
        if self._coupling is None:
            return target
        return couple_held_alpha(target, face.q0, self._coupling, self.regressor.nrsfm.layout)

    # Transfer from a photo

    def transfer_from_photo(self, data: bytes, parts: list[str]) -> dict[str, float]:
        """Slider values (absolute) that give the face the `parts` (rotation, expression) of the face in a photo.

        The photo's landmarks come from the app's detector, its q from `nrsfm.fit_q.fit_q`."""
        unknown = [part for part in parts if part not in TRANSFER_PARTS]
        if unknown or not parts:
            raise UserError(f"transfer needs parts among {', '.join(TRANSFER_PARTS)}, got {parts}")
        images = photo_to_images(data)
        detections = self.detector.detect(images)
        if not bool(detections.found[0]):
            raise UserError("no face found in the photo; upload a photo with one face, seen from the front or the side")
        height, width = images.shape[-2:]
        model = self.regressor.nrsfm
        landmarks = detections.landmarks.to(model.q_mean.dtype) / torch.tensor(
            [width, height], dtype=model.q_mean.dtype
        )
        q_photo = fit_q(model, landmarks)
        values = self._slider_values(q_photo)
        names = (list(ANGLES) if "rotation" in parts else []) + (
            [f"alpha.{k}" for k in range(model.layout.num_basis)] if "expression" in parts else []
        )
        return {name: values[name] for name in names}

    # Downloads

    def edited_npz(self) -> bytes:
        """The latest edit as ``edited.npz`` (``w`` (1, num_ws, w_dim), NVIDIA's layout; see `editing.outputs`)."""
        view, face = self._current_view(), self._current_face()
        space = self.regressor.latent_space
        psi = float(self.cfg.truncation_psi)
        with torch.no_grad():
            ws, ws0 = (self.generator.to_ws(latent, space, psi) for latent in (view.latent, face.latent0))
        metadata = {
            "generator": self.generator.name,
            "generator_checksum": self.generator.checksum(),
            "latent_space": space,
            "truncation_psi": psi,
            "command": "app",
            "face": face.label,
            "editor": view.editor,
            "regressor": str(self.regressor.metadata.get("path", "")),
        }
        with tempfile.TemporaryDirectory() as folder:
            path = save_latents(
                Path(folder) / "edited.npz",
                ws,
                metadata,
                w_original=ws0,
                q_original=face.q0,
                q_target=view.target.q,
                q_edit=view.q,
                mask=view.target.mask,
            )
            return path.read_bytes()

    def edit_png(self) -> bytes:
        """The latest view (original | edit | edit with landmarks) as PNG bytes."""
        return encode_image(self._current_view().grid)

    # Internals

    def _use(self, regressor: nn.Module) -> None:
        self.regressor = regressor
        self.face = None
        model = regressor.nrsfm
        self.directions = None
        if model.num_landmarks == 68:
            self.directions = derive_expression_directions(
                model, training_attributes(self.cfg, self.generator, regressor)
            )
        self._metric = latent_metric(self.cfg, self.generator)
        self._coupling = None  # editing.session.hold_alpha, with the coupling fitted once per regressor
        if choice(self.cfg, "hold_alpha") == "coupled":
            self._coupling = pose_coupling(training_attributes(self.cfg, self.generator, regressor), model.layout)
        self._damping = float(self.editors["linear"].get("damping", 0.0)) if "linear" in self.editors else 0.0
        self._slider_names = [entry["name"] for entry in self.sliders()]
        self.view = None

    def _set_face(self, label: str, latent: torch.Tensor) -> None:
        latent = latent.to(self.regressor.nrsfm.q_mean.dtype)
        with torch.no_grad():
            q0 = self.regressor(latent)
        jacobian = latent_jacobian(self.regressor, latent)
        image0 = self._render(latent)
        mask = row_mask(latent, editable_rows(self.cfg))
        self._editable = mask.expand_as(latent).flatten(1) if mask is not None else 1.0
        self.face = Face(label, latent, q0, jacobian, image0)
        self.view = None

    def _render(self, latent: torch.Tensor) -> torch.Tensor:
        """(1, *S) latent -> (1, 3, R, R) image in [-1, 1]."""
        return render(
            self.generator,
            latent.to(self.generator.w_avg.dtype),
            self.regressor.latent_space,
            float(self.cfg.truncation_psi),
        )

    def _current_face(self) -> Face:
        if self.face is None:
            raise UserError("no face chosen yet; pick a seed, a random face or a latent file")
        return self.face

    def _current_view(self) -> EditView:
        if self.view is None:
            raise UserError("nothing edited yet; move a slider first")
        return self.view

    def _slider_values(self, q: torch.Tensor) -> dict[str, float]:
        """Slider values of attributes q (1, D): degrees, units of q, preset coordinates."""
        model = self.regressor.nrsfm
        names = model.layout.names()
        row = q[0].double()
        values = {name: math.degrees(float(row[names.index(name)])) for name in ANGLES}
        values["scale"] = float(row[0] + row[2]) / 2
        values.update(
            {name: float(row[names.index(name)]) for name in names if name.startswith("alpha.") or name in ("tx", "ty")}
        )
        if self.directions is not None:
            coordinates = expression_coordinates(q.to(model.q_mean.dtype), model, self.directions)[0]
            values.update({name: float(coordinates[list(self.directions).index(name)]) for name in PRESET_NAMES})
        return values

    def _show(self, latent: torch.Tensor, target: EditTarget, detect: bool, editor: str) -> EditView:
        face = self._current_face()
        with torch.no_grad():
            q = self.regressor(latent)
            model = self.regressor.nrsfm
            target_landmarks = model(torch.where(target.constrained.to(q.device), target.q.to(q), q))
        image = self._render(latent)
        detected, found = None, None
        if detect:
            detections = self.detector.detect(image)
            found = bool(detections.found[0])
            detected = detections.landmarks[0].numpy() / np.array([image.shape[-1], image.shape[-2]]) if found else None
        grid = view_grid(face.image0, image, target_landmarks[0].cpu().numpy(), detected)
        self.view = EditView(grid, latent, target, q, found, editor)
        return self.view


def view_grid(
    original: torch.Tensor, edited: torch.Tensor, target_landmarks: np.ndarray, detected: np.ndarray | None
) -> np.ndarray:
    """(H, 3 W, 3) uint8: original | edit | edit with target landmarks (L, 2) as green rings and detected ones (L, 2)
    as red dots (none drawn when None); images (1, 3, H, W) in [-1, 1], landmarks normalised."""
    before, after = images_to_uint8(original)[0], images_to_uint8(edited)[0]
    marked = draw_landmarks(after, target_landmarks, TARGET_COLOR, ring=True)
    if detected is not None:
        marked = draw_landmarks(marked, detected, ACHIEVED_COLOR)
    return np.concatenate([before, after, marked], axis=1)


def encode_image(pixels: np.ndarray) -> bytes:
    """(H, W, 3) uint8 -> PNG bytes (lossless, so the page shows what downloads; the fastest zlib level)."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def photo_to_images(data: bytes, max_side: int = 1024) -> torch.Tensor:
    """An uploaded photo (any format PIL reads) -> images (1, 3, H, W) in [-1, 1], shrunk to at most `max_side`."""
    try:
        with Image.open(io.BytesIO(data)) as photo:
            photo.thumbnail((max_side, max_side))
            pixels = np.asarray(photo.convert("RGB"), dtype=np.float32)
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise UserError("the upload is not an image PIL can read; upload a PNG or JPEG photo of a face") from error
    return torch.from_numpy(pixels).permute(2, 0, 1)[None] / 127.5 - 1


def _slider(name: str, low: float, high: float, value: float) -> dict[str, Any]:
    low, high = min(low, value), max(high, value)
    span = high - low
    return {"name": name, "min": low, "max": high, "step": span / 200 if span > 0 else 1.0, "value": value}
