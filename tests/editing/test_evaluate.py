"""editing.evaluate: its metrics on hand-made numbers, the random protocol, and run(cfg) on stand-ins."""

import csv
import math

import pytest
import torch
from editing_standins import random_nrsfm
from hydra import compose, initialize_config_module
from omegaconf import open_dict

from common.errors import UserError
from editing import evaluate
from editing.evaluate import evaluation_target, random_step_metrics
from editing.metrics import RotationChange, image_rotation_metrics, landmark_metrics, rotation_change, truth_metrics
from editing.observation import Observation, image_attributes

TINY = {"_target_": "editing_standins.TinyGenerator", "dtype": "float32"}


def test_truth_metrics_wrap_angles_and_measure_movement():
    before = {
        "rotation_deg": torch.tensor([[0.0, 170.0, 0.0], [5.0, -10.0, 1.0]]),
        "expression": torch.tensor([[0.0, 0.0], [1.0, 1.0]]),
        "identity": torch.tensor([[0.0], [2.0]]),
    }
    after = {
        "rotation_deg": torch.tensor([[0.0, -170.0, 0.0], [5.0, 8.0, 1.0]]),
        "expression": torch.tensor([[0.5, 0.0], [1.0, 1.0]]),
        "identity": torch.tensor([[0.0], [2.0]]),
    }
    requested = torch.tensor([[0.0, 20.0, 0.0], [0.0, 20.0, 0.0]])
    spread = {"expression": torch.tensor([0.5, 1.0]), "identity": torch.tensor([1.0])}
    metrics = truth_metrics(before, after, requested, spread)
    # achieved yaw: +20 (through the wrap) and +18
    assert metrics["yaw median |achieved - requested| [deg]"] == pytest.approx(1.0)
    assert metrics["yaw mean achieved - requested [deg]"] == pytest.approx(-1.0)
    assert metrics["yaw slope achieved/requested"] == pytest.approx(38 * 20 / 800)
    assert math.isnan(metrics["pitch slope achieved/requested"])
    # face 0: expression coefficient 0 moved one std of 0.5 -> RMS over 2 coefficients sqrt(1/2)
    assert metrics["true expression moved, mean [std]"] == pytest.approx(math.sqrt(0.5) / 2)
    assert metrics["true identity moved, mean [std]"] == pytest.approx(0.0, abs=1e-12)


class RowTruth:
    """ws (B, 2, 4) -> truth: expression reads row 0, identity row 1 (a stand-in with ground_truth)."""

    def to_ws(self, latent, space, truncation_psi=1.0):
        return latent

    def ground_truth(self, ws):
        return {"expression": ws[:, 0], "identity": ws[:, 1]}


def test_a_random_step_as_long_as_the_edit_in_the_rows_it_changed():
    latent0 = torch.zeros(500, 2, 4)
    latent = latent0.clone()
    latent[:, 1] = 1.0  # every edit moves row 1 (identity) by a step of length 2 and leaves row 0 alone
    spread = {"expression": torch.ones(4), "identity": torch.ones(4)}
    metrics = random_step_metrics(RowTruth(), "w+", 1.0, latent0, latent, RowTruth().ground_truth(latent0), spread)
    # the random step stays in row 1 and is 2 long, so its RMS over the 4 identity coefficients is 2 / sqrt(4) = 1 for every face
    assert metrics["true expression moved by a random step of the same length, median [std]"] == pytest.approx(
        0.0, abs=1e-12
    )
    assert metrics["true identity moved by a random step of the same length, median [std]"] == pytest.approx(1.0)


def test_rotation_on_the_image_is_the_turn_the_landmarks_show():
    model = random_nrsfm()
    q0 = model.q_mean.repeat(6, 1)
    q0[:, model.layout.alpha] += (
        0.5
        * model.q_std[model.layout.alpha]
        * torch.randn(6, model.num_basis, dtype=q0.dtype, generator=torch.Generator().manual_seed(0))
    )
    yaw = model.layout.rotation.start + 1
    turned, target = q0.clone(), q0.clone()
    turned[:, yaw] += math.radians(10.0)  # every image shows a turn of 10 degrees of yaw
    target[:, yaw] += math.radians(12.0)  # 12 were asked for
    found = torch.tensor([True, True, True, True, True, False])
    truth = lambda yaw_deg: {"rotation_deg": torch.tensor([[0.0, yaw_deg, 0.0]]).repeat(6, 1)}  # noqa: E731
    everywhere = torch.ones(6, dtype=torch.bool)
    original = Observation(
        model(q0).float(), found, torch.zeros(6, 1), truth(0.0), image_attributes(model, model(q0).float(), found, q0)
    )
    edited = Observation(
        model(turned).float(),
        everywhere,
        torch.zeros(6, 1),
        truth(15.0),
        image_attributes(model, model(turned).float(), everywhere, q0),
    )
    assert original.q[5].isnan().all() and not original.q[:5].isnan().any()
    change = rotation_change(model, q0, target, original, edited)
    assert change.requested.shape == change.on_image.shape == change.true.shape == (5, 3)  # face 5 was not found
    metrics = image_rotation_metrics(change)
    assert metrics["yaw on the image, median |achieved - requested| [model deg]"] == pytest.approx(2.0, abs=1e-3)
    assert metrics["pitch on the image, median |achieved - requested| [model deg]"] == pytest.approx(0.0, abs=1e-3)
    assert metrics["yaw true deg per model deg on the image"] == pytest.approx(1.5, abs=1e-3)
    assert change.index.tolist() == [0, 1, 2, 3, 4]
    assert (
        image_rotation_metrics(RotationChange(change.index[:0], change.requested[:0], change.on_image[:0], None)) == {}
    )


def test_landmark_metrics_units():
    detected = torch.zeros(2, 68, 2)
    detected[:, 45, 0] = 0.5  # inter-ocular distance 0.5 normalised = 50 px at 100 x 100
    predicted = detected + torch.tensor([0.03, 0.04])  # 0.05 normalised = 5 px off everywhere
    metrics = landmark_metrics("L_R", predicted, detected, (100, 100))
    assert metrics["L_R"] == pytest.approx(0.0025)
    assert metrics["L_R [px^2]"] == pytest.approx(25.0, rel=1e-5)
    assert metrics["L_R mean error [px]"] == pytest.approx(5.0, rel=1e-5)
    assert metrics["L_R NME"] == pytest.approx(0.1, rel=1e-5)
    assert math.isnan(landmark_metrics("L_R", predicted[:0], detected[:0], (100, 100))["L_R"])


def evaluate_config(tmp_path, *overrides):
    with initialize_config_module(config_module="conf", version_base="1.3"):
        cfg = compose(
            config_name="evaluate",
            overrides=["generator=stylegan2", "identity=none", f"out_dir={tmp_path / 'out'}", "seed=100", *overrides],
        )
    with open_dict(cfg):
        cfg.generator = TINY
        cfg.landmarks = {
            "_target_": "editing_standins.ProjectionDetector",
            "missing_below": -0.021,
        }  # seeds 102 and 108 count as "no face"
        cfg.identity = {"_target_": "editing_standins.ProjectionIdentity", "dtype": "float32"}
    return cfg


def test_random_protocol(tmp_path):
    model = random_nrsfm()
    q0 = model.q_mean + model.q_std * torch.randn(
        50, model.layout.dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    cfg = evaluate_config(tmp_path, "num_std=100")
    target = evaluation_target(q0, cfg, model)
    layout = model.layout
    offsets = torch.rad2deg(target.q[:, 3:5] - q0[:, 3:5])
    assert (offsets[:, 0].abs() <= 10 + 1e-9).all() and (offsets[:, 1].abs() <= 20 + 1e-9).all()
    assert offsets[:, 1].abs().max() > 15  # the offsets spread over the range
    torch.testing.assert_close(target.q[:, 5], q0[:, 5])  # roll held
    alphas = target.q[:, layout.alpha]
    matches = (alphas[:, None] == q0[None, :, layout.alpha]).all(-1)
    assert (matches.sum(1) == 1).all() and not matches.diagonal().any()  # each face takes another face's alphas
    assert target.mask[[3, 4]].all() and not target.mask[[0, 1, 2, 5]].any() and target.mask[layout.alpha].all()
    torch.testing.assert_close(evaluation_target(q0, cfg, model).q, target.q)  # seeded
    with open_dict(cfg):
        cfg.changes = {"delta": {"roll": 5}}
    fixed = evaluation_target(q0, cfg, model)
    torch.testing.assert_close(torch.rad2deg(fixed.q[:, 5] - q0[:, 5]), torch.full((50,), 5.0, dtype=torch.float64))


def test_run_writes_the_table(tmp_path, regressor_path, capsys):
    cfg = evaluate_config(
        tmp_path,
        f"regressor_path={regressor_path}",
        "num_faces=12",
        "num_faces_gradient=5",
        "gradient.num_steps=5",
        "edit_batch_size=2",
        "batch_size=4",
        "linear.damping=0",
    )
    result = evaluate.run(cfg)
    linear, gradient = result["metrics"]["linear"], result["metrics"]["gradient"]
    assert linear["faces"] == 12 and gradient["faces"] == 5
    assert 0 < linear["faces without a detected face (original or edit)"] < 12  # some images count as "no face"
    assert linear["L_phi [std^2]"] < 0.05  # three undamped Newton steps come close to the target
    assert gradient["L_phi [std^2]"] > linear["L_phi [std^2]"]  # five Adam steps do not
    for metrics in (linear, gradient):
        assert all(metrics[key] >= 0 for key in ("L_L(w)", "L_L(w_edit)", "L_R", "L_ID", "L_R NME"))
        assert "yaw slope achieved/requested" not in metrics  # the stand-in generator has no truth
        assert metrics["yaw on the image, median |achieved - requested| [model deg]"] >= 0
    with open(result["csv"]) as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["metric", "linear", "linear (first 5)", "gradient"] and any(row[0] == "L_ID" for row in rows)
    first = result["metrics"]["linear (first 5)"]
    assert first["faces"] == 5 and first["L_phi [std^2]"] <= 5 * linear["L_phi [std^2]"] + 1e-12
    assert result["markdown"].read_text().count("| L_") >= 4
    assert result["rotation_plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(result["rotation_csv"]) as handle:
        per_face = list(csv.DictReader(handle))
    found = 12 - linear["faces without a detected face (original or edit)"]
    assert [row["method"] for row in per_face] == ["linear"] * found + ["gradient"] * (len(per_face) - found)
    assert all(100 <= int(row["seed"]) < 112 and row["true yaw [deg]"] == "nan" for row in per_face)
    out = capsys.readouterr().out
    assert "gradient on 5 (num_faces_gradient)" in out and f"wrote csv: {result['csv']}" in out


def test_run_errors(tmp_path, regressor_path):
    with pytest.raises(UserError, match="unknown or no methods"):
        evaluate.run(evaluate_config(tmp_path, f"regressor_path={regressor_path}", "methods=[jacobian]"))
    with pytest.raises(UserError, match="at least 2 faces"):
        evaluate.run(evaluate_config(tmp_path, f"regressor_path={regressor_path}", "num_faces=1"))
    with pytest.raises(ValueError, match="unknown attribute 'frown'"):
        evaluate.run(
            evaluate_config(
                tmp_path, f"regressor_path={regressor_path}", "num_faces=3", "methods=[linear]", "+changes.frown=1"
            )
        )
