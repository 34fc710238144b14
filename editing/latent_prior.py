"""The spread of a generator's latents, used to measure edit steps in standard deviations.

The linear editor's minimum-norm step J^+ r measures a latent step in raw units, as if every
direction of the latent space were equally likely. W is far from that: its covariance has eigenvalues
spanning orders of magnitude, so a raw-unit step of 1 can be many standard deviations along a
direction that no training face visits, where phi was never trained and the
image does not follow phi. Measuring the step in whitened coordinates (w = w0 + S u, u minimum-norm,
S S^T the covariance) is the minimum-norm step under a Gaussian prior on w: it prefers directions
the generator actually uses. It did not win on every regressor measured, so it is an option
(``latent_metric=spread``), not the default (docs/RESULTS.md, "Edit accuracy").
"""

from __future__ import annotations

import torch

from backbones.generator import Generator
from editing.compatibility import latent_shape_of

NUM_SAMPLES = 10_000


def latent_spread(
    generator: Generator,
    latent_space: str,
    truncation_psi: float = 1.0,
    num_samples: int = NUM_SAMPLES,
    seed: int = 0,
    batch_size: int = 2048,
) -> torch.Tensor:
    """S (d, d), the symmetric square root of the covariance of one latent row, scaled to mean eigenvalue 1.

    d is z_dim for "z" (whose prior is already N(0, I): S = I) and w_dim for "w" and "w+" (every row of
    a sampled w+ is the same w, so one covariance serves all rows). The scale is normalised away so that
    the editor's damping keeps its meaning; only the shape of the distribution matters.

    Args:
        generator: the generator whose mapping network defines the distribution.
        latent_space: "z", "w" or "w+".
        truncation_psi: truncation of the sampled w (it only scales the covariance).
        num_samples: z drawn (seeded by `seed`) to estimate the covariance; at least 2 * w_dim.
    """
    latent_shape_of(generator, latent_space)
    device, dtype = generator.w_avg.device, generator.w_avg.dtype
    if latent_space == "z":
        return torch.eye(generator.z_dim, dtype=dtype, device=device)
    if num_samples < 2 * generator.w_dim:
        raise ValueError(f"num_samples must be at least 2 * w_dim = {2 * generator.w_dim}, got {num_samples}")
    z = torch.randn(num_samples, generator.z_dim, generator=torch.Generator().manual_seed(seed)).to(
        device=device, dtype=dtype
    )
    with torch.no_grad():
        w = torch.cat([generator.mapping(chunk, truncation_psi)[:, 0] for chunk in z.split(batch_size)])
    eigenvalues, eigenvectors = torch.linalg.eigh(torch.cov(w.double().T))
    eigenvalues = eigenvalues.clamp_min(eigenvalues.max() * 1e-9)
    root = (eigenvectors * (eigenvalues / eigenvalues.mean()).sqrt()) @ eigenvectors.T
    return root.to(dtype)
