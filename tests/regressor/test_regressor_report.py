import math

import pytest
import torch

from nrsfm.geometry import euler_angles_to_matrix, matrix_to_euler_angles
from regressor.data import load_regression_data
from regressor.export import AttributeRegressor
from regressor.mlp import AttributeMLP
from regressor.report import (
    evaluate_regressor,
    fit_global_rotation,
    plot_row_importance,
    rotation_errors,
    row_importance,
)


def test_kabsch_recovers_a_global_rotation_float64():
    g = torch.Generator().manual_seed(0)
    truth = euler_angles_to_matrix((torch.rand(200, 3, generator=g, dtype=torch.float64) - 0.5) * 2)
    frame = euler_angles_to_matrix(torch.tensor([0.3, -0.5, 1.0], dtype=torch.float64))
    predicted = truth @ frame.T
    alignment = fit_global_rotation(predicted, truth)
    torch.testing.assert_close(alignment, frame)
    torch.testing.assert_close(torch.linalg.det(alignment), torch.tensor(1.0, dtype=torch.float64))
    with pytest.raises(ValueError, match="rotation_true must have shape"):
        fit_global_rotation(predicted, truth[:10])


def test_rotation_errors_after_alignment_are_exact_and_fitted_on_train_only():
    g = torch.Generator().manual_seed(1)
    truth_rad = (torch.rand(300, 3, generator=g, dtype=torch.float64) - 0.5) * torch.tensor(
        [0.6, 1.2, 0.4], dtype=torch.float64
    )
    frame = euler_angles_to_matrix(torch.tensor([0.2, 0.4, -0.3], dtype=torch.float64))
    theta_pred = matrix_to_euler_angles(euler_angles_to_matrix(truth_rad) @ frame.T)
    train, test = torch.arange(0, 200), torch.arange(200, 300)
    errors = rotation_errors(theta_pred, torch.rad2deg(truth_rad), train, test)
    assert errors["median_geodesic_deg"] < 1e-4 and errors["median_yaw_deg"] < 1e-4
    assert errors["alignment_angle_deg"] > 10
    noisy = theta_pred.clone()
    noisy[200:, 1] += math.radians(3.0)
    assert (
        errors["median_yaw_deg"] + 1.0
        < rotation_errors(noisy, torch.rad2deg(truth_rad), train, test)["median_geodesic_deg"]
    )


def test_evaluate_an_untrained_regressor(standin):
    data = load_regression_data(standin.samples, standin.nrsfm_dir, "w")
    mlp = AttributeMLP(16, 12, [8], head_scale=0.0)
    report = evaluate_regressor(AttributeRegressor(mlp, data.nrsfm, "w", (16,)), data)
    assert report["num_samples"] == len(data.indices("test"))
    # phi = q_mean for every face: the landmark loss is that of the mean face, far above the fit's own error
    assert report["landmark_loss"] > 100 * report["fit_landmark_loss"]
    assert report["landmark_loss_px2"] == pytest.approx(report["landmark_loss"] * 256**2, rel=1e-4)
    assert report["rotation_vs_truth"]["factorizer"]["median_geodesic_deg"] < 1e-2
    assert report["rotation_vs_truth"]["phi"]["median_geodesic_deg"] > 5
    assert report["attributes"]["yaw"]["unit"] == "deg"
    assert report["attributes"]["yaw"]["relative"] == pytest.approx(0.8, abs=0.3)


def test_row_importance_finds_the_rows_an_attribute_is_read_from(tmp_path):
    def regressor(ws):  # attribute 0 reads row 0; attribute 1 reads rows 1 and 2 equally; row 3 is ignored
        return torch.stack([ws[:, 0].sum(-1), ws[:, 1].sum(-1) + ws[:, 2].sum(-1)], -1)

    latents = torch.randn(4000, 4, 3, generator=torch.Generator().manual_seed(0))
    shares = row_importance(regressor, latents)
    expected = torch.tensor([[1.0, 0.0], [0.0, 0.5], [0.0, 0.5], [0.0, 0.0]])
    torch.testing.assert_close(shares, expected, atol=0.06, rtol=0)
    report = {"row_importance": {"a": shares[:, 0].tolist(), "b": shares[:, 1].tolist()}}
    plot_row_importance(report, tmp_path / "rows.png")
    assert (tmp_path / "rows.png").stat().st_size > 0
