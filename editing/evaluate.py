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
- yaw (and any angle asked to change) on phi: median |phi(w_edit) - phi(w0) - requested| in model degrees,
  whether the editor reaches its own target; the faces whose target was clamped are counted;
- background: how far the mean colours of the image's frame (`editing.background`) moved, per face
  the RMS over them in 0..255, median over faces.
Each landmark metric is also given in px^2 at the render size, as the mean 2D error in px, the median
over faces of each face's mean error in px, and as
NME (`common.landmarks.nme` against the detected landmarks, mean over faces). Faces where the
detector finds no face (in the original or the edit) are counted and left out of the landmark metrics.

Ground truth (generators with ``ground_truth(ws)``, i.e. generator=synthetic):
- rotation: achieved = true (pitch, yaw, roll) after minus before (degrees, wrapped to +-180);
  requested = the change of q's angles (degrees); reported per axis: median |achieved - requested|
  (and against the change asked before clamping),
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

import math
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from common.cli import build, exit_on_user_error, launch
from common.errors import UserError
from common.io import write_text_atomic
from editing.attributes import EditTarget, attribute_indices, clamp_to_range, edit_target, flatten_changes
from editing.evaluation_report import format_table, plot_rotation_changes, rotation_rows, write_csv_atomic
from editing.latents import latents_from_seeds
from editing.metrics import (
    RotationChange,
    coefficients_moved,
    image_rotation_metrics,
    landmark_metrics,
    median,
    phi_rotation_metrics,
    preset_correlations,
    rotation_change,
    truth_metrics,
)
from editing.observation import Observation, first_faces, observe
from editing.presets import NUM_IBUG_LANDMARKS
from editing.session import apply_editor, hold_alpha, latent_metric, load_generator, load_regressor, output_dir
from nrsfm.model import NRSfMModel

METHODS = ("linear", "gradient")


def evaluation_target(q0: torch.Tensor, cfg: DictConfig, model: NRSfMModel, clamp: bool = True) -> EditTarget:
    """The edit target of every face (B, 8 + K) under the protocol of the module docstring; with
    ``clamp=False`` the request as asked, before `editing.attributes.clamp_to_range`."""
    changes = flatten_changes(OmegaConf.to_container(cfg.changes, resolve=True)) if cfg.changes else {}
    num_std = float(cfg.num_std) if clamp else math.inf
    if changes:
        return edit_target(q0, changes, model, free=list(cfg.free), strict=bool(cfg.strict) and clamp, num_std=num_std)
    layout = model.layout
    random = cfg.random_target
    generator = torch.Generator().manual_seed(int(cfg.seed))
    offsets = 2 * torch.rand(len(q0), 2, generator=generator, dtype=torch.float64) - 1
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
    if clamp:
        target = clamp_to_range(target, mask, model, strict=bool(cfg.strict), num_std=num_std)
    return EditTarget(target, mask, ~free)


def random_step_metrics(
    generator,
    latent_space: str,
    truncation_psi: float,
    latent0: torch.Tensor,
    latent: torch.Tensor,
    before: dict[str, torch.Tensor],
    spread: dict[str, torch.Tensor],
    seed: int = 0,
) -> dict[str, float]:
    """The scale for "barely moves": how far the true expression and identity move (median, as in
    `truth_metrics`) when each face takes a random step as long as its edit, in the latent entries the
    edit changed (so a `rows`-restricted edit is compared with a step in the same rows).
    latent0, latent: (B, *S); before: the originals' truth; spread: per key the (E,) std."""
    changed = (latent != latent0).to(latent)
    direction = (
        torch.randn(latent.shape, generator=torch.Generator().manual_seed(seed), dtype=latent.dtype).to(latent)
        * changed
    )
    length = (latent - latent0).flatten(1).norm(dim=-1) / direction.flatten(1).norm(dim=-1).clamp_min(1e-12)
    step = latent0 + direction * length.view(-1, *[1] * (latent.dim() - 1))
    with torch.no_grad():
        parts = [
            generator.ground_truth(generator.to_ws(chunk, latent_space, truncation_psi)) for chunk in step.split(256)
        ]
    return {
        f"true {key} moved by a random step of the same length, median [std]": median(
            coefficients_moved(before[key], torch.cat([part[key] for part in parts]).float(), spread[key])
        )
        for key in ("expression", "identity")
    }


def edit_in_batches(
    method: str, cfg: DictConfig, models: dict[str, Any], latent0: torch.Tensor, target: EditTarget
) -> torch.Tensor:
    """Edited latents (B, *S) of `method` (its config is ``cfg[method]``), ``cfg.edit_batch_size`` faces at a time,
    with a progress bar; ``gradient_start=linear`` starts every editor that takes a start from the linear edit."""
    generator, regressor, identity, metric = (
        models[k] for k in ("generator", "regressor", "identity", "latent_metric")
    )
    batch_size = int(cfg.edit_batch_size)
    latents = []
    for start in tqdm(range(0, len(latent0), batch_size), desc=f"{method} edits", unit="batch", leave=False):
        faces = slice(start, start + batch_size)
        part = EditTarget(target.q[faces], target.mask, target.constrained)
        begin = None
        if cfg.gradient_start == "linear" and method != "linear":
            begin = apply_editor(
                cfg, generator, regressor, latent0[faces], part, editor=cfg.linear, metric=metric
            ).latent
        latents.append(
            apply_editor(
                cfg,
                generator,
                regressor,
                latent0[faces],
                part,
                editor=cfg[method],
                identity=identity,
                metric=metric,
                start=begin,
            ).latent
        )
    return torch.cat(latents)


def edit_and_observe(
    method: str, cfg: DictConfig, models: dict[str, Any], latent0: torch.Tensor, target: EditTarget
) -> tuple[torch.Tensor, Observation]:
    """Edit latent0 (B, *S) with `method`; returns the edited latents (B, *S) and what their images show."""
    generator, regressor, detector, identity = (models[k] for k in ("generator", "regressor", "detector", "identity"))
    latent = edit_in_batches(method, cfg, models, latent0, target)
    if not torch.isfinite(latent).all():
        raise UserError(f"{method} editing diverged (non-finite latents); lower its step size or add damping")
    return latent, observe(
        generator, detector, identity, regressor, latent, float(cfg.truncation_psi), int(cfg.batch_size), method
    )


def method_metrics(
    models: dict[str, Any],
    latent0: torch.Tensor,
    latent: torch.Tensor,
    target: EditTarget,
    original: Observation,
    edited: Observation,
    spread: dict[str, torch.Tensor] | None = None,
    asked: torch.Tensor | None = None,
) -> tuple[dict[str, float], RotationChange]:
    """The metrics of one editor on B faces: latents (B, *S) before and after, the target and both observations;
    `spread` (per truth key the (E,) std of the coefficients; default over these B originals) scales the movement;
    `asked` (B, D) is the request before clamping (default the target). Also returns the per-face RotationChange
    the rotation metrics come from."""
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
    metrics: dict[str, float] = {
        "faces": len(latent0),
        "faces without a detected face (original or edit)": int((~both).sum()),
        "latent step |w_edit - w0|, median": median(step),
    }
    metrics.update(landmark_metrics("L_L(w)", predicted0[original.found], original.landmarks[original.found], size))
    metrics.update(landmark_metrics("L_L(w_edit)", predicted[edited.found], edited.landmarks[edited.found], size))
    metrics["L_phi [std^2]"] = float(phi_error.mean())
    angles = model.layout.rotation
    requested_deg = torch.rad2deg(target.q.to(q0)[:, angles] - q0[:, angles])
    asked_deg = requested_deg if asked is None else torch.rad2deg(asked.to(q0)[:, angles] - q0[:, angles])
    if asked is not None:
        clamped = (target.q.to(q0) - asked.to(q0))[:, target.mask].abs() > 1e-9
        metrics["faces whose target was clamped to the training range"] = int(clamped.any(-1).sum())
    metrics.update(phi_rotation_metrics(torch.rad2deg(q_edit[:, angles] - q0[:, angles]), requested_deg))
    metrics.update(landmark_metrics("L_R", requested[both], edited.landmarks[both], size))
    metrics["L_ID"] = (
        float(identity.distance(edited.embedding, original.embedding).mean())
        if identity.embedding_dim > 0
        else math.nan
    )
    change = rotation_change(model, q0, target.q, original, edited)
    metrics.update(image_rotation_metrics(change))
    if original.background is not None and edited.background is not None:
        metrics["background colours on the image frame moved, median RMS [of 255]"] = median(
            255.0 * (edited.background - original.background).square().mean(-1).sqrt()
        )
    if original.truth is not None and edited.truth is not None:
        spread = spread or {key: original.truth[key].std(0) for key in ("expression", "identity")}
        metrics.update(truth_metrics(original.truth, edited.truth, requested_deg, spread, asked_deg))
        metrics.update(
            random_step_metrics(
                generator, regressor.latent_space, models["truncation_psi"], latent0, latent, original.truth, spread
            )
        )
    return metrics, change


def run(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate the editors of `cfg.methods` (see the module docstring); returns metrics and paths."""
    methods = list(cfg.methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise UserError(
            f"unknown or no methods {unknown or methods}; choose from {', '.join(METHODS)}, e.g. methods=[linear]"
        )
    counts = {"linear": int(cfg.num_faces), "gradient": min(int(cfg.num_faces_gradient), int(cfg.num_faces))}
    if min(counts[m] for m in methods) < 2:
        raise UserError(
            f"need at least 2 faces per method, got num_faces={cfg.num_faces}, num_faces_gradient={cfg.num_faces_gradient}"
        )
    if cfg.gradient_start not in ("latent0", "linear"):
        raise UserError(f"gradient_start must be latent0 or linear, got {cfg.gradient_start!r}")
    for name in ("batch_size", "edit_batch_size"):
        if int(cfg[name]) < 1:
            raise UserError(f"{name} must be at least 1, got {cfg[name]}")
    generator = load_generator(cfg)
    regressor = load_regressor(cfg, generator)
    detector = build(cfg.landmarks, "landmark detector")
    identity = build(cfg.identity, "identity network")
    models = {
        "generator": generator,
        "regressor": regressor,
        "detector": detector,
        "identity": identity,
        "latent_metric": latent_metric(cfg, generator),
        "truncation_psi": float(cfg.truncation_psi),
    }
    num_faces = max(counts[m] for m in methods)
    seeds = list(range(int(cfg.seed), int(cfg.seed) + num_faces))
    latent0 = latents_from_seeds(generator, seeds, cfg.latent_space, float(cfg.truncation_psi)).to(
        regressor.nrsfm.q_mean.dtype
    )
    with torch.no_grad():
        q0 = regressor(latent0)
    target = hold_alpha(cfg, generator, regressor, q0, evaluation_target(q0, cfg, regressor.nrsfm))
    asked = evaluation_target(q0, cfg, regressor.nrsfm, clamp=False).q
    original = observe(
        generator, detector, identity, regressor, latent0, float(cfg.truncation_psi), int(cfg.batch_size), "originals"
    )
    results: dict[str, dict[str, float]] = {}
    edits, changes = {}, {}
    spread = (
        {key: original.truth[key].std(0) for key in ("expression", "identity")} if original.truth is not None else None
    )
    for method in methods:
        n = counts[method]
        print(f"{method} editing on {n} faces (seeds {seeds[0]}..{seeds[n - 1]})")
        edits[method] = edit_and_observe(method, cfg, models, latent0[:n], first_targets(target, n))
        results[method], changes[method] = method_metrics(
            models,
            latent0[:n],
            edits[method][0],
            first_targets(target, n),
            first_faces(original, n),
            edits[method][1],
            spread,
            asked[:n],
        )
    if set(methods) == set(METHODS) and counts["gradient"] < counts["linear"]:
        n = counts["gradient"]  # linear on the gradient editor's faces, for a like-for-like comparison
        latent, edited = edits["linear"]
        results[f"linear (first {n})"], _ = method_metrics(
            models,
            latent0[:n],
            latent[:n],
            first_targets(target, n),
            first_faces(original, n),
            first_faces(edited, n),
            spread,
            asked[:n],
        )
        methods = ["linear", f"linear (first {n})", "gradient"]
    out_dir = output_dir(cfg, "evaluate", generator.name)
    protocol = (
        "random target (yaw +-{yaw_deg}, pitch +-{pitch_deg} deg{expr})".format(
            expr=", alphas of another face" if cfg.random_target.expression else "", **cfg.random_target
        )
        if not cfg.changes
        else " ".join(
            f"{k}={v:g}" for k, v in flatten_changes(OmegaConf.to_container(cfg.changes, resolve=True)).items()
        )
    )
    header = ["metric", *methods]
    names = list(dict.fromkeys(name for method in methods for name in results[method]))
    rows = [[name, *(results[m].get(name, math.nan) for m in methods)] for name in names]
    title = (
        f"editing.evaluate: {generator.name}, latent space {regressor.latent_space}, {protocol}; "
        f"linear on {counts['linear']} faces, gradient on {counts['gradient']} (num_faces_gradient)"
    )
    print(title)
    print(format_table(header, rows, markdown=False))
    paths = {
        "csv": write_csv_atomic(out_dir / "metrics.csv", header, rows),
        "markdown": write_text_atomic(
            out_dir / "metrics.md", f"{title}\n\n{format_table(header, rows, markdown=True)}"
        ),
        "rotation_plot": plot_rotation_changes(changes, out_dir / "rotation.png"),
        "rotation_csv": write_csv_atomic(out_dir / "rotation.csv", *rotation_rows(changes, int(cfg.seed))),
    }
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
        paths["presets_markdown"] = write_text_atomic(
            out_dir / "presets.md", f"{preset_title}\n\n{format_table(preset_header, preset_rows, markdown=True)}"
        )
    for name, path in paths.items():
        print(f"wrote {name}: {path}")
    return {"metrics": results, "presets": correlations, "out_dir": out_dir, **paths}


def first_targets(target: EditTarget, n: int) -> EditTarget:
    """The first n faces of `target`."""
    return EditTarget(target.q[:n], target.mask, target.constrained)


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error():
        run(cfg)


if __name__ == "__main__":
    launch("editing.evaluate", "evaluate")
