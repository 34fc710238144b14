import numpy as np
import pytest
import torch

from nrsfm.contour import FACE_OVAL, JAW_LINE, contour_weights
from nrsfm.evaluation import rotation_errors_deg
from nrsfm.factorize import factorize
from nrsfm.fit_q import fit_q
from nrsfm.geometry import euler_angles_to_matrix
from nrsfm.synthetic import synthetic_landmarks

F64 = torch.float64
FACE_MESH = "backbones/synthetic/data/astronaut_face_mesh.npz"


def rotations(model, q):
    """(N, 3, 3) rotations of q."""
    return euler_angles_to_matrix(q[:, model.layout.rotation])


@pytest.fixture(scope="module")
def jaw_corrupted():
    """Synthetic faces whose jaw points (0-16) carry large random errors, as a sliding contour would."""
    data = synthetic_landmarks(600, num_landmarks=68, num_basis=4, noise=0.002, seed=3)
    corrupted = data.landmarks.clone()
    noise = torch.randn(600, 17, 2, dtype=F64, generator=torch.Generator().manual_seed(1))
    corrupted[:, :17] += 0.05 * noise
    return data, corrupted


def test_contour_weights_mark_the_jaw_line_and_the_face_oval():
    weights = contour_weights(68, 0.25)
    assert weights[:17].eq(0.25).all() and weights[17:].eq(1.0).all()
    assert contour_weights(468, 0.0)[list(FACE_OVAL)].eq(0.0).all() and int(contour_weights(468, 0.0).sum()) == 432
    assert contour_weights(30, 1.0).eq(1.0).all() and len(JAW_LINE) == 17
    with pytest.raises(ValueError, match="known face contour"):
        contour_weights(30, 0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        contour_weights(68, 1.5)


def test_face_oval_is_the_outer_rim_of_the_face_mesh():
    triangles = np.load(FACE_MESH)["triangles"]
    points = np.load(FACE_MESH)["points"]
    edges = np.sort(np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]]), 1)
    unique, counts = np.unique(edges, axis=0, return_counts=True)
    rim = unique[counts == 1]
    loops, left = [], {tuple(edge) for edge in rim.tolist()}
    while left:  # connected components of the boundary edges
        loop, grow = set(left.pop()), True
        while grow:
            touching = {edge for edge in left if edge[0] in loop or edge[1] in loop}
            grow = bool(touching)
            left -= touching
            loop |= {index for edge in touching for index in edge}
        loops.append(loop)
    outer = max(loops, key=lambda loop: np.ptp(points[list(loop), 0]))
    assert outer == set(FACE_OVAL)


def test_left_out_contour_does_not_disturb_the_rotations(jaw_corrupted):
    data, corrupted = jaw_corrupted
    found = torch.ones(600, dtype=torch.bool)
    true_rotation = rotations(data.model, data.q)
    plain_model, plain_q = factorize(corrupted, found, num_basis=4)
    model, q = factorize(corrupted, found, num_basis=4, contour_weight=0.0)
    plain_error = rotation_errors_deg(rotations(plain_model, plain_q), true_rotation).median()
    error = rotation_errors_deg(rotations(model, q), true_rotation).median()
    assert float(error) < 1.0 and float(error) < 0.5 * float(plain_error)
    assert model.metadata["landmark_weights"][:17] == [0.0] * 17 and model.landmark_weights[17:].eq(1).all()
    # the left-out points get the least-squares structure for the fitted cameras: near the clean jaw
    jaw_error = (model(q)[:, :17] - data.landmarks[:, :17]).square().mean().sqrt()
    assert float(jaw_error) < 0.01


def test_down_weighted_fit_renders_its_own_q():
    data = synthetic_landmarks(400, num_landmarks=68, num_basis=4, noise=0.002, seed=5)
    model, q = factorize(data.landmarks, torch.ones(400, dtype=torch.bool), num_basis=4, contour_weight=0.3)
    weights = model.landmark_weights
    error = ((model(q) - data.landmarks).square().sum(-1) * weights).sum(-1).mean() / weights.sum()
    assert float(error.sqrt()) == pytest.approx(model.metadata["rmse"] * 2**0.5, rel=1e-4)


def test_orthogonal_basis_keeps_every_b_k_off_the_rigid_rows():
    data = synthetic_landmarks(400, num_landmarks=68, num_basis=4, noise=0.002, seed=7)
    model, q = factorize(data.landmarks, torch.ones(400, dtype=torch.bool), num_basis=4, orthogonal_basis=True)
    centred = data.landmarks - data.landmarks.mean(-2, keepdim=True)
    _, _, vh = torch.linalg.svd(centred.transpose(1, 2).reshape(-1, 68), full_matrices=False)
    assert float((model.basis @ vh[:3].T).abs().max()) < 1e-8
    assert model.metadata["orthogonal_basis"] is True and bool(q.isfinite().all())


def test_fit_q_weights_the_landmarks_as_the_model_says():
    clean = synthetic_landmarks(30, num_landmarks=68, num_basis=4, noise=0.0, seed=11)
    corrupted = clean.landmarks.clone()
    corrupted[:, :17] += 0.05 * torch.randn(30, 17, 2, dtype=F64, generator=torch.Generator().manual_seed(2))
    plain = fit_q(clean.model, corrupted)
    clean.model.metadata["landmark_weights"] = contour_weights(68, 0.0).tolist()
    weighted = fit_q(clean.model, corrupted)
    torch.testing.assert_close(weighted, clean.q, atol=1e-7, rtol=0)
    assert float((plain - clean.q).abs().max()) > 1e-3
