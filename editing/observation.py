"""What rendered faces show: their detected landmarks, identity embeddings, the generator's ground truth
and the attributes q the NRSfM model reads from the landmarks (`observe`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from editing.background import background_colours
from nrsfm.fit_q import fit_q
from nrsfm.model import NRSfMModel


@dataclass
class Observation:
    """What the detector, the identity network and the ground truth see in rendered faces.

    Attributes:
        landmarks: (B, L, 2) detected landmarks in normalised image units (zeros where not found).
        found: (B,) bool.
        embedding: (B, E) identity embeddings.
        truth: ground truth of the generator (rotation_deg (B, 3), expression (B, E), identity (B, I)) or None.
        q: (B, D) q the image shows, `image_attributes` of the landmarks (NaN rows where not found).
        background: (B, 6) background colours of the images (`editing.background.background_colours`), or None.
    """

    landmarks: torch.Tensor
    found: torch.Tensor
    embedding: torch.Tensor
    truth: dict[str, torch.Tensor] | None
    q: torch.Tensor
    background: torch.Tensor | None = None


def image_attributes(
    model: NRSfMModel, landmarks: torch.Tensor, found: torch.Tensor, q_init: torch.Tensor
) -> torch.Tensor:
    """`nrsfm.fit_q` of the found faces' landmarks (B, L, 2), warm-started from q_init (B, D); NaN rows elsewhere."""
    q = torch.full_like(q_init, math.nan)
    if found.any():
        q[found] = fit_q(model, landmarks[found].to(q_init), q_init=q_init[found]).to(q)
    return q


def observe(
    generator, detector, identity, regressor, latents: torch.Tensor, truncation_psi: float, batch_size: int, label: str
) -> Observation:
    """Render latents (B, *S) in chunks, detect landmarks, embed identities, read the truth and fit the
    q each image shows (warm-started from phi)."""
    parts: dict[str, list] = {"landmarks": [], "found": [], "embedding": [], "truth": [], "background": []}
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
            parts["background"].append(background_colours(images).float())
            if has_truth:
                truth = generator.ground_truth(ws)
                parts["truth"].append({key: truth[key].float() for key in ("rotation_deg", "expression", "identity")})
    truth = {key: torch.cat([t[key] for t in parts["truth"]]) for key in parts["truth"][0]} if has_truth else None
    landmarks, found = torch.cat(parts["landmarks"]), torch.cat(parts["found"])
    with torch.no_grad():
        q = image_attributes(regressor.nrsfm, landmarks, found, regressor(latents))
    return Observation(landmarks, found, torch.cat(parts["embedding"]), truth, q, torch.cat(parts["background"]))


def first_faces(observation: Observation, n: int) -> Observation:
    """The first n faces of `observation`."""
    truth = {k: v[:n] for k, v in observation.truth.items()} if observation.truth is not None else None
    background = observation.background[:n] if observation.background is not None else None
    return Observation(
        observation.landmarks[:n],
        observation.found[:n],
        observation.embedding[:n],
        truth,
        observation.q[:n],
        background,
    )
