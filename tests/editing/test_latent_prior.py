"""editing.latent_prior: the latent spread is the square root of the mapping's covariance."""

import pytest
import torch
from editing_standins import TinyGenerator

from editing.latent_prior import latent_spread


class LinearMappingGenerator(TinyGenerator):
    """A TinyGenerator whose mapping is linear, w = z A, so the covariance of w is A^T A."""

    def __init__(self):
        super().__init__()
        self.register_buffer(
            "spread_matrix",
            torch.diag(torch.linspace(0.05, 2.0, self.w_dim, dtype=torch.float64))
            @ torch.linalg.qr(
                torch.randn(self.w_dim, self.w_dim, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
            )[0],
        )

    def mapping(self, z, truncation_psi=1.0):
        return (truncation_psi * z.to(self.spread_matrix) @ self.spread_matrix)[:, None].expand(-1, self.num_ws, -1)


def test_spread_squares_to_the_normalised_covariance():
    generator = LinearMappingGenerator()
    spread = latent_spread(generator, "w", truncation_psi=0.7, num_samples=40_000)
    covariance = generator.spread_matrix.T @ generator.spread_matrix
    expected = covariance / covariance.diagonal().mean()  # the truncation's scale is normalised away
    torch.testing.assert_close(spread, spread.T)
    torch.testing.assert_close(spread @ spread, expected, atol=0.03, rtol=0)
    assert torch.equal(latent_spread(generator, "w+", truncation_psi=0.7, num_samples=40_000), spread)


def test_z_is_already_white_and_bad_input():
    generator = TinyGenerator()
    assert torch.equal(latent_spread(generator, "z"), torch.eye(generator.z_dim, dtype=torch.float64))
    with pytest.raises(ValueError, match="num_samples must be at least 2 \\* w_dim"):
        latent_spread(generator, "w", num_samples=10)
    with pytest.raises(ValueError, match="unknown latent space"):
        latent_spread(generator, "s")
