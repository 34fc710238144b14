"""The paper's Table 1 for this project's editors: ``python -m editing.evaluate``.

Faces: seeds ``seed .. seed + num_faces - 1`` (default from 1 000 000, disjoint from the sampling
stage's training seeds 0 .. N - 1). Linear editing runs on all of them, gradient editing (slow: every
step passes through G and the identity network) on the first ``num_faces_gradient``.

Edit protocol (``changes``):
- ``changes={}`` (default), a random target per face, seeded by ``seed``: yaw turned by a uniform
  offset in [-random_target.yaw_deg, +yaw_deg] degrees, pitch by one in [-pitch_deg, +pitch_deg], and
  (``random_target.expression=true``) every alpha taken from another evaluation face (a fixed random
  permutation). Camera, roll and translation are held at q0. This is our protocol: the paper does not
  say how its targets were drawn.
- any edit request of `editing.attributes`, the same for every face, e.g.
  ``+changes.delta.yaw=20`` (turn every face by 20 degrees, everything else held).
Targets outside mean +- num_std std of q are clamped (`editing.attributes.clamp_to_range`).

Metrics (per editor, means over faces). Landmarks are compared in normalised image units (x / width,
y / height); a "squared landmark error" of two (B, L, 2) sets is the mean over landmarks of the
squared 2D distance (`regressor.module.landmark_squared_error`, the training loss):
- ``L_L(w)``: R(phi(w0)) against psi_L(G(w0)), the detector on the original image;
- ``L_L(w_edit)``: R(phi(w_edit)) against psi_L(G(w_edit));
- ``L_phi``: mean over the constrained entries c of q of ((phi(w_edit)_c - q_edit_c) / q_std_c)^2,
  i.e. squared error in standardised units of q (1 = one training std);
- ``L_R``: R(q_edit) against psi_L(G(w_edit)): does the image show the requested landmarks;
- ``L_ID``: 1 - cos of the identity network's embeddings of G(w0) and G(w_edit) (dlib's 128-d
  descriptor by default; the paper uses ArcFace). The identity network runs with
  ``on_missing=centre`` so that one face it cannot find does not stop the evaluation.
- rotation on the image: q of the original and of the edited image fitted to their detected landmarks
  (`nrsfm.fit_q`, once per image, `Observation.q`), achieved = the change of its angles, against the
  requested change, in the model's degrees: does the image turn as far as the model asked (L_R's
  question for the angles alone).
Each landmark metric is also given in px^2 at the render size, as the mean 2D error in px, and as
NME (mean 2D error over the inter-ocular distance of the detected outer eye corners 36, 45; for
L != 68 the landmark bounding-box diagonal, see `regressor.report.nme_normaliser`). Faces where the
detector finds no face (in the original or the edit) are counted and left out of the landmark metrics.

Ground truth (generators with ``ground_truth(ws)``, i.e. generator=synthetic):
- rotation: achieved = true (pitch, yaw, roll) after minus before (degrees, wrapped to +-180);
  requested = the change of q's angles (degrees); reported per axis: median |achieved - requested|,
  mean achieved - requested, and the slope sum(achieved * requested) / sum(requested^2) (1 is right);
- untouched attributes: how far the true expression and identity coefficients moved, per face the
  RMS over coefficients of |after - before| / (std of that coefficient over all original faces),
  reported as mean and median over faces (two independent random faces are about 1.41 apart), and
  for scale the median movement under a random step of each face's edit length in the latent entries
  the edit changed (`random_step_metrics`);
  expression is an edited part under the random protocol, so it is untouched only for rigid edits;
- calibration: true degrees per model degree on the image (slope of the true change on the change
  measured on the image), what the detector and the factorization make of a true rotation;
- expression presets (68-landmark models): Pearson correlation of each face's coordinate along the
  derived smile / mouth_open / brows_raised direction (`editing.presets`, from phi(w0)) with each true
  expression coefficient.

With both editors and fewer gradient faces, the table also has the column ``linear (first N)``: the
linear editor on the gradient editor's faces, for a like-for-like comparison. ``latent step`` is the
median norm of w_edit - w0.

Writes ``metrics.csv``, ``metrics.md``, ``rotation.png`` (achieved against requested yaw change per
face and the histogram of the misses, on the image and true), ``rotation.csv`` (those numbers per
face and method) (and ``presets.csv``/``presets.md`` when there is truth) into
``out_dir`` (default ``${paths.work_dir}/evaluate/<generator>-<hash of the request>``) and prints the
table and where it went.
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import hydra
import torch
from hydra.utils import instantiate
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from editing.attributes import EditTarget, attribute_indices, clamp_to_range, edit_target, flatten_changes
from editing.latents import latents_from_seeds
from editing.linear import linear_edit
from editing.presets import NUM_IBUG_LANDMARKS, derive_expression_directions, expression_coordinates
from editing.session import editable_rows, hold_alpha, latent_metric, load_generator, load_regressor, output_dir
from nrsfm.errors import UserError, exit_on_user_error
from nrsfm.fit_q import fit_q
from nrsfm.model import NRSfMModel
from nrsfm.plot import save_png_atomic
from nrsfm.sample import build
from regressor.module import landmark_squared_error
from regressor.report import landmark_distances, nme_normaliser

METHODS = ("linear", "gradient")
ROTATION_NAMES = ("pitch", "yaw", "roll")


@dataclass
class Observation:
    """What the detector, the identity network and the ground truth see in rendered faces.

    Attributes:
        landmarks: (B, L, 2) detected landmarks in normalised image units (zeros where not found).
        found: (B,) bool.
        embedding: (B, E) identity embeddings.
        truth: ground truth of the generator (rotation_deg (B, 3), expression (B, E), identity (B, I)) or None.
        q: (B, D) q the image shows, `image_attributes` of the landmarks (NaN rows where not found).
    """

    landmarks: torch.Tensor
    found: torch.Tensor
    embedding: torch.Tensor
    truth: dict[str, torch.Tensor] | None
    q: torch.Tensor


def image_attributes(model: NRSfMModel, landmarks: torch.Tensor, found: torch.Tensor, q_init: torch.Tensor) -> torch.Tensor:
    """`nrsfm.fit_q` of the found faces' landmarks (B, L, 2), warm-started from q_init (B, D); NaN rows elsewhere."""
    q = torch.full_like(q_init, math.nan)
    if found.any():
        q[found] = fit_q(model, landmarks[found].to(q_init), q_init=q_init[found]).to(q)
    return q


def observe(generator, detector, identity, regressor, latents: torch.Tensor, truncation_psi: float,
            batch_size: int, label: str) -> Observation:
    """Render latents (B, *S) in chunks, detect landmarks, embed identities, read the truth and fit the
    q each image shows (warm-started from phi)."""
    parts: dict[str, list] = {"landmarks": [], "found": [], "embedding": [], "truth": []}
    size = float(generator.img_resolution)
    has_truth = callable(getattr(generator, "ground_truth", None))
    with torch.no_grad():
        for chunk in tqdm(latents.split(batch_size), desc=f"render + detect ({label})", unit="batch", leave=False):
            ws = generator.to_ws(chunk, regressor.latent_space, truncation_psi)
            images = generator.synthesis(ws)
            detections = detector.detect(images)
            parts["landmarks"].append(detections.landmarks / size)
            parts["found"].append(detections.found)
            parts["embedding"].append(identity.embed(images).float())
            if has_truth:
                truth = generator.ground_truth(ws)
                parts["truth"].append({key: truth[key].float() for key in ("rotation_deg", "expression", "identity")})
    truth = {key: torch.cat([t[key] for t in parts["truth"]]) for key in parts["truth"][0]} if has_truth else None
    landmarks, found = torch.cat(parts["landmarks"]), torch.cat(parts["found"])
    with torch.no_grad():
        q = image_attributes(regressor.nrsfm, landmarks, found, regressor(latents))
    return Observation(landmarks, found, torch.cat(parts["embedding"]), truth, q)


def evaluation_target(q0: torch.Tensor, cfg: DictConfig, model: NRSfMModel) -> EditTarget:
    """The edit target of every face (B, 8 + K) under the protocol of the module docstring."""
    changes = flatten_changes(OmegaConf.to_container(cfg.changes, resolve=True)) if cfg.changes else {}
    if changes:
        return edit_target(q0, changes, model, free=list(cfg.free), strict=bool(cfg.strict), num_std=float(cfg.num_std))
    layout = model.layout
    random = cfg.random_target
    generator = torch.Generator().manual_seed(int(cfg.seed))
    offsets = (2 * torch.rand(len(q0), 2, generator=generator, dtype=torch.float64) - 1)
    offsets = offsets * torch.tensor([float(random.pitch_deg), float(random.yaw_deg)], dtype=torch.float64)
    target = q0.detach().clone()
    mask = torch.zeros(layout.dim, dtype=torch.bool)
    pitch, yaw = layout.rotation.start, layout.rotation.start + 1
    target[:, [pitch, yaw]] += torch.deg2rad(offsets).to(target)
    mask[[pitch, yaw]] = True
    if bool(random.expression) and len(q0) > 1:
        permutation = torch.randperm(len(q0), generator=generator)
        permutation = torch.where(permutation == torch.arange(len(q0)), permutation.roll(1), permutation)
        target[:, layout.alpha] = q0[permutation][:, layout.alpha]
        mask[layout.alpha] = True
    free = torch.zeros(layout.dim, dtype=torch.bool)
    free[attribute_indices(list(cfg.free), layout)] = True
    if (free & mask).any():
        raise UserError("an attribute is both edited by the random protocol and listed in free; remove it from free")
    target = clamp_to_range(target, mask, model, strict=bool(cfg.strict), num_std=float(cfg.num_std))
    return EditTarget(target, mask, ~free)


def landmark_metrics(prefix: str, predicted: torch.Tensor, detected: torch.Tensor, image_size: tuple[int, int]) -> dict[str, float]:
    """``prefix`` in normalised units, px^2, mean px and NME over the rows given: (B, L, 2) x2."""
    if len(predicted) == 0:
        return {f"{prefix}": math.nan, f"{prefix} [px^2]": math.nan, f"{prefix} mean error [px]": math.nan, f"{prefix} NME": math.nan}
    distances = landmark_distances(predicted, detected, image_size)
    normaliser, _ = nme_normaliser(detected, image_size)
    return {
        prefix: float(landmark_squared_error(predicted, detected).mean()),
        f"{prefix} [px^2]": float(distances.square().mean(-1).mean()),
        f"{prefix} mean error [px]": float(distances.mean()),
        f"{prefix} NME": float((distances.mean(-1) / normaliser).mean()),
    }


def truth_metrics(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor], requested_deg: torch.Tensor,
                  spread: dict[str, torch.Tensor]) -> dict[str, float]:
    """Achieved vs requested rotation (degrees) and how far expression and identity moved (see the module docstring).

    Args:
        before, after: ground truth of the original and edited faces (rotation_deg (B, 3), expression, identity).
        requested_deg: (B, 3) requested change of (pitch, yaw, roll) in degrees.
        spread: per key the (E,) std of the coefficients over the original faces.
    """
    achieved = true_rotation_change(before, after)
    error = achieved - requested_deg.float()
    metrics: dict[str, float] = {}
    for i, name in enumerate(ROTATION_NAMES):
        metrics[f"{name} requested, median |.| [deg]"] = _median(requested_deg[:, i].abs())
        metrics[f"{name} median |achieved - requested| [deg]"] = _median(error[:, i].abs())
        metrics[f"{name} mean achieved - requested [deg]"] = float(error[:, i].mean())
        metrics[f"{name} slope achieved/requested"] = _slope(achieved[:, i], requested_deg[:, i])
    for key in ("expression", "identity"):
        moved = coefficients_moved(before[key], after[key], spread[key])
        metrics[f"true {key} moved, mean [std]"] = float(moved.mean())
        metrics[f"true {key} moved, median [std]"] = _median(moved)
    return metrics


def coefficients_moved(before: torch.Tensor, after: torch.Tensor, spread: torch.Tensor) -> torch.Tensor:
    """(B,) per face the RMS over coefficients of |after - before| / spread: (B, E), (B, E), (E,)."""
    return ((after - before) / spread.clamp_min(1e-12)).square().mean(-1).sqrt()


def random_step_metrics(generator, latent_space: str, truncation_psi: float, latent0: torch.Tensor, latent: torch.Tensor,
                        before: dict[str, torch.Tensor], spread: dict[str, torch.Tensor], seed: int = 0) -> dict[str, float]:
    """The scale for "barely moves": how far the true expression and identity move (median, as in
    `truth_metrics`) when each face takes a random step as long as its edit, in the latent entries the
    edit changed (so a `rows`-restricted edit is compared with a step in the same rows).
    latent0, latent: (B, *S); before: the originals' truth; spread: per key the (E,) std."""
    changed = (latent != latent0).to(latent)
    direction = torch.randn(latent.shape, generator=torch.Generator().manual_seed(seed), dtype=latent.dtype).to(latent) * changed
    length = (latent - latent0).flatten(1).norm(dim=-1) / direction.flatten(1).norm(dim=-1).clamp_min(1e-12)
    step = latent0 + direction * length.view(-1, *[1] * (latent.dim() - 1))
    with torch.no_grad():
        parts = [generator.ground_truth(generator.to_ws(chunk, latent_space, truncation_psi)) for chunk in step.split(256)]
    return {f"true {key} moved by a random step of the same length, median [std]":
            _median(coefficients_moved(before[key], torch.cat([part[key] for part in parts]).float(), spread[key]))
            for key in ("expression", "identity")}


@dataclass
class RotationChange:
    """Per-face change of (pitch, yaw, roll) in degrees, for the faces found in the original and the edit.

    Attributes:
        index: (B,) positions of these faces among the evaluated ones (face i is seed ``seed + i``).
        requested: (B, 3) target minus phi(w0).
        on_image: (B, 3) as the detector and the NRSfM model see it: the angles of the edit's
            `Observation.q` minus the original's, model degrees.
        true: (B, 3) the generator's truth (wrapped to +-180), or None.
    """

    index: torch.Tensor
    requested: torch.Tensor
    on_image: torch.Tensor
    true: torch.Tensor | None


def rotation_change(model: NRSfMModel, q0: torch.Tensor, target_q: torch.Tensor,
                    original: Observation, edited: Observation) -> RotationChange:
    """The RotationChange of B edited faces: q0 = phi(w0) and target_q (B, D), both observations of the B faces."""
    both = original.found & edited.found
    angles = model.layout.rotation
    requested = torch.rad2deg(target_q.to(q0)[both, angles] - q0[both, angles])
    on_image = torch.rad2deg(edited.q[both, angles] - original.q[both, angles]).to(requested)
    true = None
    if original.truth is not None and edited.truth is not None:
        true = true_rotation_change(original.truth, edited.truth)[both].to(requested)
    return RotationChange(both.nonzero().flatten(), requested, on_image, true)


def image_rotation_metrics(change: RotationChange) -> dict[str, float]:
    """Per axis: median |achieved on the image - requested| in model degrees, and with truth the slope
    sum(true * on_image) / sum(on_image^2): how many true degrees one degree of the model (as measured
    on images) is worth, the detector's and the factorization's calibration, which no editor can fix."""
    if len(change.requested) == 0:
        return {}
    metrics: dict[str, float] = {}
    for i, name in enumerate(ROTATION_NAMES):
        achieved, requested = change.on_image[:, i], change.requested[:, i]
        metrics[f"{name} on the image, median |achieved - requested| [model deg]"] = _median((achieved - requested).abs())
        if change.true is not None:
            metrics[f"{name} true deg per model deg on the image"] = _slope(change.true[:, i], achieved)
    return metrics


def plot_rotation_changes(changes: dict[str, RotationChange], path: Path) -> Path:
    """One column per method: achieved against requested yaw change per face (top; the diagonal is a
    perfect edit) and histograms of achieved - requested (bottom), on the image (model degrees) and,
    with truth, true. Written atomically."""
    figure = Figure(figsize=(4.4 * len(changes), 7.6))
    FigureCanvasAgg(figure)
    yaw = ROTATION_NAMES.index("yaw")
    for column, (method, change) in enumerate(changes.items()):
        series = {"on the image (model deg)": change.on_image[:, yaw]}
        if change.true is not None:
            series["true"] = change.true[:, yaw]
        requested = change.requested[:, yaw]
        scatter = figure.add_subplot(2, len(changes), column + 1)
        errors = figure.add_subplot(2, len(changes), len(changes) + column + 1)
        for label, achieved in series.items():
            scatter.scatter(requested.cpu().numpy(), achieved.cpu().numpy(), s=9, alpha=0.6, label=label)
            errors.hist((achieved - requested).cpu().numpy(), bins=20, alpha=0.5, label=label)
        low, high = (min(0.0, float(requested.min())), max(1.0, float(requested.max()))) if len(requested) else (0.0, 1.0)
        scatter.plot([low, high], [low, high], color="black", linewidth=0.8)
        scatter.set(title=f"{method}: yaw", xlabel="requested change [deg]", ylabel="achieved change [deg]")
        errors.axvline(0.0, color="black", linewidth=0.8)
        errors.set(title=f"{method}: yaw, achieved - requested", xlabel="[deg]", ylabel="faces")
        for axes in (scatter, errors):
            axes.legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    return save_png_atomic(figure, path)


def rotation_rows(changes: dict[str, RotationChange], first_seed: int) -> tuple[list[str], list[list[Any]]]:
    """Header and one row per method and face (seed, then requested / on the image / true pitch, yaw, roll)."""
    header = ["method", "seed"] + [f"{kind} {name} [deg]" for kind in ("requested", "on the image", "true") for name in ROTATION_NAMES]
    rows = []
    for method, change in changes.items():
        true = change.true if change.true is not None else torch.full_like(change.requested, math.nan)
        values = torch.cat([change.requested, change.on_image, true], 1).tolist()
        rows += [[method, first_seed + int(i), *row] for i, row in zip(change.index, values)]
    return header, rows


def true_rotation_change(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> torch.Tensor:
    """(B, 3) true change of (pitch, yaw, roll) in degrees, wrapped to +-180."""
    return torch.remainder(after["rotation_deg"] - before["rotation_deg"] + 180.0, 360.0) - 180.0


def run_editor(method: str, cfg: DictConfig, generator, identity, regressor, latent0: torch.Tensor, target: EditTarget,
               metric: torch.Tensor | None = None) -> torch.Tensor:
    """Edited latents (B, *S) of `method` (its config is ``cfg[method]``) on the rows ``cfg.rows`` of ws, in
    batches with a progress bar; `metric` is the linear editor's (``editing.session.latent_metric``)."""
    editor: Callable = instantiate(cfg[method])
    rows = editable_rows(cfg)
    if method == "linear":
        return editor(regressor, latent0, target, metric=metric, rows=rows).latent
    batch_size = int(cfg.gradient_batch_size)
    uses_identity = float(cfg[method].get("lambda_id", 0)) > 0
    runtime = {"generator": generator, "identity": identity} if uses_identity else {}
    latents = []
    for start in tqdm(range(0, len(latent0), batch_size), desc=f"{method} edits", unit="batch"):
        batch = slice(start, start + batch_size)
        part = EditTarget(target.q[batch], target.mask, target.constrained)
        begin = None
        if cfg.gradient_start == "linear":
            begin = linear_edit(regressor, latent0[batch], part, **{k: v for k, v in OmegaConf.to_container(cfg.linear).items()
                                                                       if k in ("num_steps", "damping")}, metric=metric, rows=rows).latent
        latents.append(editor(regressor, latent0[batch], part, start=begin, rows=rows, **runtime).latent)
    return torch.cat(latents)


def edit_and_observe(method: str, cfg: DictConfig, models: dict[str, Any], latent0: torch.Tensor,
                     target: EditTarget) -> tuple[torch.Tensor, Observation]:
    """Edit latent0 (B, *S) with `method`; returns the edited latents (B, *S) and what their images show."""
    generator, regressor, detector, identity = (models[k] for k in ("generator", "regressor", "detector", "identity"))
    latent = run_editor(method, cfg, generator, identity, regressor, latent0, target, models["latent_metric"])
    if not torch.isfinite(latent).all():
        raise UserError(f"{method} editing diverged (non-finite latents); lower its step size or add damping")
    return latent, observe(generator, detector, identity, regressor, latent, float(cfg.truncation_psi),
                           int(cfg.batch_size), method)


def method_metrics(models: dict[str, Any], latent0: torch.Tensor, latent: torch.Tensor, target: EditTarget,
                   original: Observation, edited: Observation, spread: dict[str, torch.Tensor] | None = None
                   ) -> tuple[dict[str, float], RotationChange]:
    """The metrics of one editor on B faces: latents (B, *S) before and after, the target and both observations;
    `spread` (per truth key the (E,) std of the coefficients; default over these B originals) scales the movement.
    Also returns the per-face RotationChange the rotation metrics come from."""
    generator, regressor, identity = (models[k] for k in ("generator", "regressor", "identity"))
    model = regressor.nrsfm
    with torch.no_grad():
        q0, q_edit = regressor(latent0), regressor(latent)
        predicted0, predicted = model(q0).float(), model(q_edit).float()
        requested = model(target.q.to(q_edit)).float()
    size = (generator.img_resolution, generator.img_resolution)
    both = original.found & edited.found
    rows = target.constrained
    phi_error = ((q_edit[:, rows] - target.q.to(q_edit)[:, rows]) / model.q_std.to(q_edit)[rows]).square().mean(-1)
    step = (latent - latent0).flatten(1).norm(dim=-1)
    metrics: dict[str, float] = {"faces": len(latent0), "faces without a detected face (original or edit)": int((~both).sum()),
                                 "latent step |w_edit - w0|, median": _median(step)}
    metrics.update(landmark_metrics("L_L(w)", predicted0[original.found], original.landmarks[original.found], size))
    metrics.update(landmark_metrics("L_L(w_edit)", predicted[edited.found], edited.landmarks[edited.found], size))
    metrics["L_phi [std^2]"] = float(phi_error.mean())
    metrics.update(landmark_metrics("L_R", requested[both], edited.landmarks[both], size))
    metrics["L_ID"] = float(identity.distance(edited.embedding, original.embedding).mean()) if identity.embedding_dim > 0 else math.nan
    change = rotation_change(model, q0, target.q, original, edited)
    metrics.update(image_rotation_metrics(change))
    if original.truth is not None and edited.truth is not None:
        requested_deg = torch.rad2deg(target.q.to(q0)[:, model.layout.rotation] - q0[:, model.layout.rotation])
        spread = spread or {key: original.truth[key].std(0) for key in ("expression", "identity")}
        metrics.update(truth_metrics(original.truth, edited.truth, requested_deg, spread))
        metrics.update(random_step_metrics(generator, regressor.latent_space, models["truncation_psi"],
                                           latent0, latent, original.truth, spread))
    return metrics, change


def preset_correlations(regressor, latent0: torch.Tensor, truth: dict[str, torch.Tensor], expression_names) -> dict[str, dict[str, float]]:
    """Pearson r of each derived direction's coordinate (from phi(w0)) with each true expression coefficient."""
    directions = derive_expression_directions(regressor.nrsfm)
    with torch.no_grad():
        coordinates = expression_coordinates(regressor(latent0).double(), regressor.nrsfm, directions)
    values = torch.cat([coordinates, truth["expression"].double()], 1).T
    correlation = torch.corrcoef(values)
    num = coordinates.shape[1]
    return {name: {true_name: float(correlation[i, num + j]) for j, true_name in enumerate(expression_names)}
            for i, name in enumerate(directions)}


def format_table(header: list[str], rows: list[list[Any]], markdown: bool) -> str:
    """Rows of cells as aligned text or a Markdown table; floats with 4 significant digits."""
    cells = [[_cell(value) for value in row] for row in rows]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells]) + "\n"
    widths = [max(len(str(h)), *(len(row[i]) for row in cells)) for i, h in enumerate(header)]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths))]
    return "\n".join(lines + ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]) + "\n"


def write_text_atomic(path: Path, text: str) -> Path:
    """Write `text` to a temporary file next to `path`, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path


def write_csv_atomic(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return write_text_atomic(path, buffer.getvalue())


def run(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate the editors of `cfg.methods` (see the module docstring); returns metrics and paths."""
    methods = list(cfg.methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise UserError(f"unknown or no methods {unknown or methods}; choose from {', '.join(METHODS)}, e.g. methods=[linear]")
    counts = {"linear": int(cfg.num_faces), "gradient": min(int(cfg.num_faces_gradient), int(cfg.num_faces))}
    if min(counts[m] for m in methods) < 2:
        raise UserError(f"need at least 2 faces per method, got num_faces={cfg.num_faces}, num_faces_gradient={cfg.num_faces_gradient}")
    if cfg.gradient_start not in ("latent0", "linear"):
        raise UserError(f"gradient_start must be latent0 or linear, got {cfg.gradient_start!r}")
    for name in ("batch_size", "gradient_batch_size"):
        if int(cfg[name]) < 1:
            raise UserError(f"{name} must be at least 1, got {cfg[name]}")
    generator = load_generator(cfg)
    regressor = load_regressor(cfg, generator)
    detector = build(cfg.landmarks, "landmark detector")
    identity = build(cfg.identity, "identity network")
    models = {"generator": generator, "regressor": regressor, "detector": detector, "identity": identity,
              "latent_metric": latent_metric(cfg, generator), "truncation_psi": float(cfg.truncation_psi)}
    num_faces = max(counts[m] for m in methods)
    seeds = list(range(int(cfg.seed), int(cfg.seed) + num_faces))
    latent0 = latents_from_seeds(generator, seeds, cfg.latent_space, float(cfg.truncation_psi)).to(regressor.nrsfm.q_mean.dtype)
    with torch.no_grad():
        q0 = regressor(latent0)
    target = hold_alpha(cfg, generator, regressor, q0, evaluation_target(q0, cfg, regressor.nrsfm))
    original = observe(generator, detector, identity, regressor, latent0, float(cfg.truncation_psi),
                       int(cfg.batch_size), "originals")
    results: dict[str, dict[str, float]] = {}
    edits, changes = {}, {}
    spread = {key: original.truth[key].std(0) for key in ("expression", "identity")} if original.truth is not None else None
    for method in methods:
        n = counts[method]
        print(f"{method} editing on {n} faces (seeds {seeds[0]}..{seeds[n - 1]})")
        edits[method] = edit_and_observe(method, cfg, models, latent0[:n], _first(target, n))
        results[method], changes[method] = method_metrics(models, latent0[:n], edits[method][0], _first(target, n),
                                                          _first(original, n), edits[method][1], spread)
    if set(methods) == set(METHODS) and counts["gradient"] < counts["linear"]:
        n = counts["gradient"]  # linear on the gradient editor's faces, for a like-for-like comparison
        latent, edited = edits["linear"]
        results[f"linear (first {n})"], _ = method_metrics(models, latent0[:n], latent[:n], _first(target, n), _first(original, n),
                                                           _first(edited, n), spread)
        methods = ["linear", f"linear (first {n})", "gradient"]
    out_dir = output_dir(cfg, "evaluate", generator.name)
    protocol = ("random target (yaw +-{yaw_deg}, pitch +-{pitch_deg} deg{expr})".format(
        expr=", alphas of another face" if cfg.random_target.expression else "", **cfg.random_target)
        if not cfg.changes else " ".join(f"{k}={v:g}" for k, v in flatten_changes(OmegaConf.to_container(cfg.changes, resolve=True)).items()))
    header = ["metric", *methods]
    names = list(dict.fromkeys(name for method in methods for name in results[method]))
    rows = [[name, *(results[m].get(name, math.nan) for m in methods)] for name in names]
    title = (f"editing.evaluate: {generator.name}, latent space {regressor.latent_space}, {protocol}; "
             f"linear on {counts['linear']} faces, gradient on {counts['gradient']} (num_faces_gradient)")
    print(title)
    print(format_table(header, rows, markdown=False))
    paths = {"csv": write_csv_atomic(out_dir / "metrics.csv", header, rows),
             "markdown": write_text_atomic(out_dir / "metrics.md", f"{title}\n\n{format_table(header, rows, markdown=True)}"),
             "rotation_plot": plot_rotation_changes(changes, out_dir / "rotation.png"),
             "rotation_csv": write_csv_atomic(out_dir / "rotation.csv", *rotation_rows(changes, int(cfg.seed)))}
    correlations = None
    if original.truth is not None and regressor.nrsfm.num_landmarks == NUM_IBUG_LANDMARKS:
        from backbones.synthetic.face_model import EXPRESSION_NAMES

        correlations = preset_correlations(regressor, latent0, original.truth, EXPRESSION_NAMES)
        preset_header = ["direction", *EXPRESSION_NAMES]
        preset_rows = [[name, *values.values()] for name, values in correlations.items()]
        preset_title = f"Pearson r of derived expression directions (phi(w0), {num_faces} faces) with the true expression coefficients"
        print(preset_title)
        print(format_table(preset_header, preset_rows, markdown=False))
        paths["presets_csv"] = write_csv_atomic(out_dir / "presets.csv", preset_header, preset_rows)
        paths["presets_markdown"] = write_text_atomic(out_dir / "presets.md", f"{preset_title}\n\n{format_table(preset_header, preset_rows, markdown=True)}")
    for name, path in paths.items():
        print(f"wrote {name}: {path}")
    return {"metrics": results, "presets": correlations, "out_dir": out_dir, **paths}


def _first(item, n: int):
    """The first n faces of an EditTarget or an Observation."""
    if isinstance(item, EditTarget):
        return EditTarget(item.q[:n], item.mask, item.constrained)
    truth = {k: v[:n] for k, v in item.truth.items()} if item.truth is not None else None
    return Observation(item.landmarks[:n], item.found[:n], item.embedding[:n], truth, item.q[:n])


def _slope(y: torch.Tensor, x: torch.Tensor) -> float:
    """Least-squares slope of y on x through the origin, sum(x y) / sum(x^2); NaN when x is all (near) zero."""
    x, y = x.double(), y.double()
    energy = float(x.square().sum())
    return float((x * y).sum()) / energy if energy > 1e-9 else math.nan


def _median(values: torch.Tensor) -> float:
    """The median (mean of the two middle values for an even count; torch.median takes the lower one)."""
    return float(values.double().quantile(0.5))


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error():
        run(cfg)


if __name__ == "__main__":
    main()
