"""What the editing commands share: load the generator and regressor, run the configured editor,
write the outputs and say where.

A command's config (conf/edit.yaml, conf/transfer.yaml, conf/conditional.yaml) has ``generator``,
``identity``, ``edit`` (an editor: conf/edit/linear.yaml or gradient.yaml), ``latent_space``,
``truncation_psi``, ``latent_metric``, ``hold_alpha``, ``rows``, ``regressor_path`` (a path, or null to let
`editing.pipeline` build one), ``pipeline``, ``strict``, ``num_std``, ``free``, ``num_frames``, ``check_landmarks`` and
``out_dir`` (null: a folder under ``${paths.work_dir}/<command>/`` named by a hash of the whole request).
"""

from __future__ import annotations

import functools
import inspect
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from backbones.generator import Generator
from common.cli import build, check_config_complete
from common.errors import UserError
from common.hashing import config_digest
from common.landmarks import landmark_distances
from editing.attributes import EditTarget, edit_target
from editing.compatibility import check_regressor_matches, latent_shape_of
from editing.latent_prior import latent_spread
from editing.latents import row_mask
from editing.pipeline import ensure_regressor
from editing.pose_coupling import couple_held_alpha, pose_coupling
from editing.presets import PRESET_NAMES, ExpressionDirection, attribute_sample, derive_expression_directions
from editing.render import render, write_edit_outputs
from editing.sources import detector_for_model
from regressor.export import load_attribute_regressor

CHOICES = {"latent_metric": ("spread", "euclidean"), "hold_alpha": ("fixed", "coupled")}


def load_generator(cfg: DictConfig) -> Generator:
    """The frozen generator of `cfg.generator` (after checking that no mandatory value is missing)."""
    check_config_complete(cfg)
    return build(cfg.generator, "generator")


def load_regressor(cfg: DictConfig, generator: Generator) -> nn.Module:
    """The regressor for `cfg` and `generator`, built first when missing (editing.pipeline); its
    ``metadata["path"]`` records where it was read from. Resolve user inputs before calling this,
    so that bad input fails before minutes of building (the CHOICES settings and ``rows`` are checked here first)."""
    for key in CHOICES:
        choice(cfg, key)
    row_mask(torch.zeros(1, *latent_shape_of(generator, cfg.latent_space)), editable_rows(cfg))
    path = ensure_regressor(cfg)
    regressor = load_attribute_regressor(path).requires_grad_(False)
    regressor.metadata["path"] = str(path)
    check_regressor_matches(regressor, generator, cfg.latent_space)
    return regressor


def choice(cfg: DictConfig, key: str) -> str:
    """``cfg[key]``, one of ``CHOICES[key]``; a UserError naming the valid values otherwise."""
    if cfg[key] not in CHOICES[key]:
        raise UserError(f"{key} must be one of {', '.join(CHOICES[key])}, got {cfg[key]!r}")
    return cfg[key]


def training_attributes(cfg: DictConfig, generator: Generator, regressor: nn.Module) -> torch.Tensor:
    """phi of the training seeds (``pipeline.seed``, ``pipeline.num_samples``): (N, 8 + K) reference attributes,
    computed once for the latest generator and regressor (an edit that names a preset under the coupled
    hold asks twice). Read-only."""
    return _training_attributes(
        generator, regressor, float(cfg.truncation_psi), int(cfg.pipeline.num_samples), int(cfg.pipeline.seed)
    )


@functools.lru_cache(maxsize=1)
def _training_attributes(
    generator: Generator, regressor: nn.Module, truncation_psi: float, num_samples: int, seed: int
) -> torch.Tensor:
    return attribute_sample(generator, regressor, truncation_psi, num_samples, seed)


def expression_directions(
    cfg: DictConfig, generator: Generator, regressor: nn.Module, changes: dict[str, float]
) -> dict[str, ExpressionDirection] | None:
    """The derived expression directions when `changes` name a preset (smile, ...), else None; their
    coordinates are scaled by phi of the training seeds (``pipeline.seed``, ``pipeline.num_samples``)."""
    if not {name.removeprefix("delta.") for name in changes} & set(PRESET_NAMES):
        return None
    return derive_expression_directions(regressor.nrsfm, training_attributes(cfg, generator, regressor))


def hold_alpha(
    cfg: DictConfig, generator: Generator, regressor: nn.Module, q0: torch.Tensor, target: EditTarget
) -> EditTarget:
    """`target` as ``cfg.hold_alpha`` asks: unchanged for ``fixed``; for ``coupled`` the held alphas follow
    the turn (`editing.pose_coupling`), the coupling fitted on phi of the training seeds (``pipeline.seed``,
    ``pipeline.num_samples``). q0 (B, D) are the faces' attributes before the edit."""
    if choice(cfg, "hold_alpha") == "fixed":
        return target
    layout = regressor.nrsfm.layout
    return couple_held_alpha(target, q0, pose_coupling(training_attributes(cfg, generator, regressor), layout), layout)


def request_target(
    cfg: DictConfig, generator: Generator, regressor: nn.Module, q0: torch.Tensor, changes: dict[str, float]
) -> EditTarget:
    """The target of the edit request `changes` for faces q0 (B, D): `editing.attributes.edit_target` with the
    command's ``free``, ``strict``, ``num_std`` and expression presets, then `hold_alpha`."""
    target = edit_target(
        q0,
        changes,
        regressor.nrsfm,
        free=list(cfg.free),
        strict=bool(cfg.strict),
        num_std=float(cfg.num_std),
        directions=expression_directions(cfg, generator, regressor, changes),
    )
    return hold_alpha(cfg, generator, regressor, q0, target)


def latent_metric(cfg: DictConfig, generator: Generator) -> torch.Tensor | None:
    """The linear editor's metric for ``cfg.latent_metric``: `editing.latent_prior.latent_spread` of the
    generator for ``spread``, None (raw units) for ``euclidean``."""
    if choice(cfg, "latent_metric") == "euclidean":
        return None
    return latent_spread(generator, cfg.latent_space, float(cfg.truncation_psi))


def editable_rows(cfg: DictConfig) -> list[int] | None:
    """``cfg.rows``: the rows of a W+ latent an edit may change (`editing.latents.row_mask`), or None for all."""
    if cfg.rows is None:
        return None
    return [int(cfg.rows)] if isinstance(cfg.rows, int) else [int(row) for row in cfg.rows]


def apply_editor(
    cfg: DictConfig,
    generator: Generator,
    regressor: nn.Module,
    latent0: torch.Tensor,
    target: EditTarget,
    editor: DictConfig | None = None,
    identity: nn.Module | None = None,
    metric: torch.Tensor | None = None,
    start: torch.Tensor | None = None,
):
    """Run an editor on latent0 (B, *S) toward `target`, the one way every command calls one.

    `editor` is a conf/edit node (default ``cfg.edit``); it changes only the rows of ws ``cfg.rows``
    (null: all). What the editor's signature asks for is added: ``metric`` (default
    `latent_metric`), ``start`` (a latent to start from), ``generator`` when the editor holds the
    background (``hold_background``), and ``generator`` with ``identity`` when its identity term is on
    (``lambda_id`` > 0; default built from ``cfg.identity``). Returns a
    LinearEdit or GradientEdit.
    """
    editor_cfg = cfg.edit if editor is None else editor
    edit = instantiate(editor_cfg)
    parameters = inspect.signature(edit).parameters
    runtime: dict[str, Any] = {"rows": editable_rows(cfg)}
    if "metric" in parameters:
        runtime["metric"] = metric if metric is not None else latent_metric(cfg, generator)
    if "start" in parameters and start is not None:
        runtime["start"] = start
    if "generator" in parameters and bool(editor_cfg.get("hold_background", False)):
        runtime["generator"] = generator
    if "identity" in parameters and float(editor_cfg.get("lambda_id", 0)) > 0:
        runtime.update(
            generator=generator, identity=identity if identity is not None else build(cfg.identity, "identity network")
        )
    return edit(regressor, latent0.to(regressor.nrsfm.q_mean.dtype), target, **runtime)


def output_dir(cfg: DictConfig, command: str, generator_name: str) -> Path:
    """`cfg.out_dir`, or ``<work_dir>/<command>/<generator name>-<hash of the config>``."""
    if cfg.out_dir is not None:
        return Path(cfg.out_dir)
    request = OmegaConf.to_container(cfg, resolve=True)
    request.pop("paths", None)
    digest = config_digest(request, 10)
    return Path(cfg.paths.work_dir) / command / f"{generator_name}-{digest}"


def finish(
    cfg: DictConfig,
    command: str,
    generator: Generator,
    regressor: nn.Module,
    latent0: torch.Tensor,
    result,
    target: EditTarget,
    request: dict[str, Any],
    reference_latent: torch.Tensor | None = None,
) -> dict[str, Any]:
    """Write the outputs of an edit, print where and how close it came; returns paths and errors.

    `reference_latent` (B, *S), e.g. a transfer's source faces, is shown first in edit.png. With
    ``cfg.check_landmarks`` the edited images' landmarks are detected (`edit_landmark_check`): edit.png
    draws them as the achieved ones and the summary says how far they lie from the target's."""
    if not torch.isfinite(result.latent).all():
        raise UserError(
            "the edit diverged (non-finite latents); ask for a smaller change, add damping, or lower the learning rate"
        )
    check = edit_landmark_check(cfg, generator, regressor, result, target) if cfg.get("check_landmarks") else None
    out_dir = output_dir(cfg, command, generator.name)
    metadata = {
        "command": command,
        "request": request,
        "edit": OmegaConf.to_container(cfg.edit, resolve=True),
        "regressor": regressor.metadata["path"],
    }
    paths = write_edit_outputs(
        out_dir,
        generator,
        regressor,
        latent0,
        result.latent,
        target,
        metadata=metadata,
        truncation_psi=float(cfg.truncation_psi),
        num_frames=int(cfg.num_frames),
        reference_latent=reference_latent,
        achieved_landmarks=check.achieved if check is not None else None,
    )
    rows = target.constrained
    scale = regressor.nrsfm.q_std.to(result.q)[rows]
    residual = ((result.q[:, rows] - target.q.to(result.q)[:, rows]) / scale).abs()
    worst = regressor.nrsfm.layout.names()[int(rows.nonzero().flatten()[residual.max(0).values.argmax()])]
    print(f"{command}: {len(latent0)} face(s), largest remaining error {residual.max():.3f} std of q (at {worst})")
    summary: dict[str, Any] = {"max_error_std": float(residual.max())}
    if check is not None:
        print(check.summary())
        summary["landmark_error_px"] = check.median_px
    for name, path in paths.items():
        print(f"wrote {name}: {path}")
    return {"out_dir": out_dir, **paths, **summary}


@dataclass
class LandmarkCheck:
    """The landmarks a detector finds on edited images against the edit's target landmarks.

    Attributes:
        achieved: (B, L, 2) normalised landmarks to draw as achieved: detected where a face was found,
            R(phi(w_edit)) elsewhere.
        found: (B,) bool, where the detector found a face.
        error_px: (B,) per face the mean distance in pixels of the detected landmarks to the target ones
            (NaN where no face was found).
        detector: the detector's name.
    """

    achieved: torch.Tensor
    found: torch.Tensor
    error_px: torch.Tensor
    detector: str

    @property
    def median_px(self) -> float:
        """Median over the found faces of `error_px` (NaN when none was found)."""
        found = self.error_px[self.found]
        return float(found.double().quantile(0.5)) if len(found) else math.nan

    def summary(self) -> str:
        missing = int((~self.found).sum())
        return (
            f"detected landmarks ({self.detector}) of the edit lie {self.median_px:.2f} px from the target ones "
            f"(mean over points, median over {int(self.found.sum())} face(s)"
            + (f"; no face found in {missing}" if missing else "")
            + ")"
        )


def edit_landmark_check(
    cfg: DictConfig, generator: Generator, regressor: nn.Module, result, target: EditTarget
) -> LandmarkCheck:
    """Render the edited latents of `result` (B, *S), detect their landmarks with ``cfg.detector`` (null: the
    detector the NRSfM model was fit on) and measure them against R(q_target) (phi(w_edit) in free entries)."""
    model = regressor.nrsfm
    detector = detector_for_model(cfg.get("detector"), model)
    images = render(generator, result.latent, regressor.latent_space, float(cfg.truncation_psi))
    detections = detector.detect(images)
    with torch.no_grad():
        goal = model(torch.where(target.constrained.to(result.q.device), target.q.to(result.q), result.q)).float()
        fallback = model(result.q).float()
    size = (images.shape[-2], images.shape[-1])
    detected = detections.landmarks.to(goal) / torch.tensor([size[1], size[0]], dtype=goal.dtype, device=goal.device)
    found = detections.found.to(goal.device)
    error = landmark_distances(detected, goal, size).mean(-1)
    return LandmarkCheck(
        torch.where(found[:, None, None], detected, fallback),
        found,
        torch.where(found, error, torch.full_like(error, math.nan)),
        detector.name,
    )
