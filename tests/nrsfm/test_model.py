import pytest
import torch

from nrsfm.geometry import euler_angles_to_matrix, matrix_to_euler_angles
from nrsfm.model import AttributeLayout, NRSfMModel
from nrsfm.synthetic import synthetic_landmarks


def random_model(num_landmarks=68, num_basis=4, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    basis = torch.linalg.qr(torch.randn(num_landmarks, num_basis, generator=g, dtype=dtype))[0].T
    directions = torch.nn.functional.normalize(torch.randn(num_basis, 3, generator=g, dtype=dtype), dim=-1)
    q_dim = 8 + num_basis
    return NRSfMModel(
        torch.randn(num_landmarks, 3, generator=g, dtype=dtype),
        directions,
        basis,
        torch.zeros(q_dim, dtype=dtype),
        torch.ones(q_dim, dtype=dtype),
        {"landmarks": "test"},
    )


def test_euler_round_trip_and_orthogonality():
    theta = (torch.rand(1000, 3, dtype=torch.float64) - 0.5) * torch.tensor([6.0, 3.0, 6.0], dtype=torch.float64)
    rotation = euler_angles_to_matrix(theta)
    eye = torch.eye(3, dtype=torch.float64).expand(1000, 3, 3)
    torch.testing.assert_close(rotation @ rotation.transpose(-1, -2), eye)
    torch.testing.assert_close(torch.linalg.det(rotation), torch.ones(1000, dtype=torch.float64))
    torch.testing.assert_close(matrix_to_euler_angles(rotation), theta)


def test_euler_order_is_z_y_x():
    theta = torch.tensor([0.3, -0.2, 0.5], dtype=torch.float64)
    axes = torch.eye(3, dtype=torch.float64)
    rx, ry, rz = (euler_angles_to_matrix(axes[i] * theta[i]) for i in range(3))
    torch.testing.assert_close(euler_angles_to_matrix(theta), rz @ ry @ rx)


def test_render_matches_explicit_formula_and_batches():
    model = random_model()
    layout = model.layout
    q = torch.randn(5, layout.dim, dtype=torch.float64)
    X = model(q)
    assert X.shape == (5, 68, 2)
    k11, k12, k22 = q[2, layout.camera]
    K = torch.tensor([[k11, k12], [0.0, k22]], dtype=torch.float64)
    M = K @ euler_angles_to_matrix(q[2, layout.rotation])[:2]
    shape = model.mean_shape + sum(
        a * torch.outer(b, d) for a, b, d in zip(q[2, layout.alpha], model.basis, model.directions)
    )
    torch.testing.assert_close(X[2], (M @ shape.T).T + q[2, layout.translation])
    torch.testing.assert_close(model(q[2]), X[2])


def test_render_gradcheck():
    model = random_model(num_landmarks=10, num_basis=3)
    q = torch.randn(2, model.layout.dim, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(model, (q,))


def test_save_load_round_trip(tmp_path):
    model = random_model()
    model.save(tmp_path / "model.npz")
    loaded = NRSfMModel.load(tmp_path / "model.npz")
    q = torch.randn(3, model.layout.dim, dtype=torch.float64)
    torch.testing.assert_close(loaded(q), model(q))
    assert loaded.metadata["landmarks"] == "test"


def test_wrong_q_shape_is_a_value_error():
    with pytest.raises(ValueError, match="q must have shape"):
        random_model()(torch.zeros(3, 7, dtype=torch.float64))


def test_layout_names():
    assert AttributeLayout(2).names() == ["k11", "k12", "k22", "pitch", "yaw", "roll", "alpha.0", "alpha.1", "tx", "ty"]


def test_model_and_camera_frame_shapes_follow_q():
    data = synthetic_landmarks(5, num_landmarks=12, num_basis=3, noise=0.0, seed=0)
    model, q = data.model, data.q
    shapes = model.model_frame_shapes(q)
    assert shapes.shape == (5, 12, 3)
    assert torch.allclose(shapes, model.shape_3d(q[:, model.layout.alpha]))
    in_camera = model.camera_frame_shapes(q)
    rotation = euler_angles_to_matrix(q[:, model.layout.rotation])
    assert torch.allclose(in_camera, shapes @ rotation.transpose(1, 2))
    scale = q[:, 0, None, None]  # k11 = k22, k12 = 0 in the synthetic data
    assert torch.allclose(scale * in_camera[..., :2] + q[:, None, model.layout.translation], model(q))
