import math
from pathlib import Path

import numpy as np
import pytest
import torch

from nrsfm.evaluation import (
    best_orthogonal_alignment,
    camera_frame_shapes,
    e3d,
    median_rotation_error_deg,
    rotation_errors_deg,
)
from nrsfm.geometry import euler_angles_to_matrix

DATA = Path(__file__).parent / "data"
SHARED = next(
    (
        folder / "shared" / "data" / "nrsfm_mocap"
        for folder in Path(__file__).resolve().parents
        if (folder / "shared" / "data" / "nrsfm_mocap").is_dir()
    ),
    None,
)


def e3d_by_loops(estimate: np.ndarray, truth: np.ndarray) -> float:
    """The README's definition written out plainly: sigma, centring, one orthogonal alignment, mean distance."""
    sigma = np.mean([truth[n, :, c].std() for n in range(len(truth)) for c in range(3)])
    truth = [(frame - frame.mean(0)) / sigma for frame in truth]
    estimate = [(frame - frame.mean(0)) / sigma for frame in estimate]
    correlation = sum(t.T @ e for t, e in zip(truth, estimate))
    u, _, vh = np.linalg.svd(correlation)
    alignment = u @ vh
    return float(np.mean([np.linalg.norm(e @ alignment.T - t, axis=1).mean() for t, e in zip(truth, estimate)]))


def test_committed_frames_match_the_plain_definition():
    with np.load(DATA / "drink_first40.npz") as data:
        truth, estimate = data["S_world"].astype(np.float64), data["S_pta"].astype(np.float64)
    value = e3d(torch.from_numpy(estimate), torch.from_numpy(truth))
    assert value == pytest.approx(e3d_by_loops(estimate, truth), abs=1e-12)
    assert 0.005 < value < 0.2


def test_zero_for_the_truth_and_invariant_to_global_rotation_mirror_and_offsets():
    generator = torch.Generator().manual_seed(0)
    truth = torch.randn(20, 15, 3, generator=generator, dtype=torch.float64)
    estimate = truth + 0.05 * torch.randn(20, 15, 3, generator=generator, dtype=torch.float64)
    rotation = euler_angles_to_matrix(torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64))
    mirrored = estimate @ (rotation @ torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64))).T
    shifted = mirrored + torch.randn(20, 1, 3, generator=generator, dtype=torch.float64)
    assert e3d(truth, truth) < 1e-12
    assert e3d(shifted, truth) == pytest.approx(e3d(estimate, truth), rel=1e-10)
    assert e3d(estimate, truth) > 0.01


def test_alignment_is_orthogonal():
    generator = torch.Generator().manual_seed(1)
    a, b = torch.randn(2, 5, 7, 3, generator=generator, dtype=torch.float64)
    alignment = best_orthogonal_alignment(a, b)
    assert torch.allclose(alignment @ alignment.T, torch.eye(3, dtype=torch.float64), atol=1e-12)


def test_camera_frame_shapes_apply_each_rotation():
    shapes = torch.randn(4, 6, 3, dtype=torch.float64)
    rotations = euler_angles_to_matrix(torch.randn(4, 3, dtype=torch.float64))
    expected = torch.stack([(rotation @ shape.T).T for rotation, shape in zip(rotations, shapes)])
    assert torch.allclose(camera_frame_shapes(shapes, rotations), expected)


def test_bad_shapes_are_value_errors():
    with pytest.raises(ValueError, match="estimate"):
        e3d(torch.zeros(3, 5, 3), torch.ones(4, 5, 3))
    with pytest.raises(ValueError, match="no spread"):
        e3d(torch.zeros(3, 5, 3), torch.ones(3, 5, 3))


@pytest.mark.skipif(SHARED is None, reason="the benchmark sequences (shared/data/nrsfm_mocap) are not on this machine")
@pytest.mark.parametrize(("name", "published"), [("drink", 0.0250), ("pickup", 0.2369), ("stretch", 0.1088)])
def test_pta_reconstruction_scores_its_published_error(name, published):
    with np.load(SHARED / f"{name}.npz") as data:
        estimate, truth = torch.from_numpy(data["S_pta"]), torch.from_numpy(data["S_world"])
    assert math.isclose(e3d(estimate, truth, alignment="projected"), published, abs_tol=1e-3)
    assert e3d(estimate, truth) <= e3d(estimate, truth, alignment="projected") + 1e-12


def test_projected_alignment_is_orthogonal_and_exact_for_a_rotated_copy():
    generator = torch.Generator().manual_seed(2)
    truth = torch.randn(6, 9, 3, generator=generator, dtype=torch.float64)
    rotation = euler_angles_to_matrix(torch.tensor([0.4, 1.1, -0.3], dtype=torch.float64))
    assert e3d(truth @ rotation.T, truth, alignment="projected") < 1e-10
    with pytest.raises(ValueError, match="alignment"):
        e3d(truth, truth, alignment="affine")


def test_rotation_errors_ignore_one_global_rotation_and_the_mirror_only_when_allowed():
    generator = torch.Generator().manual_seed(0)
    truth = euler_angles_to_matrix(torch.rand(50, 3, generator=generator, dtype=torch.float64) - 0.5)
    offset = euler_angles_to_matrix(torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64))
    assert rotation_errors_deg(truth @ offset, truth).abs().max() < 1e-4  # acos near 1: ~sqrt(eps) rad
    unrelated = euler_angles_to_matrix(torch.rand(50, 3, generator=generator, dtype=torch.float64) - 0.5)
    assert median_rotation_error_deg(unrelated, truth) > 5.0
    mirror = torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64))
    mirrored = mirror @ truth @ mirror
    assert median_rotation_error_deg(mirrored, truth) > 1.0
    assert median_rotation_error_deg(mirrored, truth, allow_mirror=True) < 1e-4
