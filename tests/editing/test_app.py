"""The browser editor's session (editing.app_session) and server (editing.app_server) on the stand-ins."""

import io
import json
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch
from editing_standins import ProjectionDetector, TinyGenerator, TinyRegressor, random_nrsfm
from omegaconf import open_dict
from PIL import Image

from common.errors import UserError
from editing.app_session import EditorSession, photo_to_images
from editing.attributes import edit_target
from editing.linear import linear_edit
from editing.outputs import load_latents, save_latents
from editing.pipeline import compose_stage
from editing.session import hold_alpha
from regressor.export import AttributeRegressor, save_attribute_regressor
from regressor.mlp import AttributeMLP


def app_config(*overrides):
    return compose_stage("app", ["pipeline.num_samples=200", *overrides])


@pytest.fixture
def session():
    editor = EditorSession(app_config(), TinyGenerator(), TinyRegressor(), ProjectionDetector())
    editor.choose_seed(3)
    return editor


def slider_value(session, name):
    return next(entry["value"] for entry in session.sliders() if entry["name"] == name)


def test_sliders_show_the_face_in_degrees_and_units_of_q(session):
    names = [entry["name"] for entry in session.sliders()]
    assert names == ["pitch", "yaw", "roll", "scale", "tx", "ty", "alpha.0", "alpha.1", "alpha.2", "alpha.3"]
    q0 = session.face.q0[0]
    assert slider_value(session, "yaw") == pytest.approx(float(torch.rad2deg(q0[4])))
    assert slider_value(session, "scale") == pytest.approx(float(q0[0] + q0[2]) / 2)
    assert all(entry["min"] <= entry["value"] <= entry["max"] for entry in session.sliders())
    assert not session.state()["presets"]  # 20 landmarks: no expression presets


def test_preview_is_the_linear_editors_first_step_from_the_cached_jacobian(session):
    changes = {"yaw": slider_value(session, "yaw") + 10, "tx": slider_value(session, "tx") + 0.05}
    view = session.preview(changes)
    face = session.face
    target = hold_alpha(
        session.cfg,
        session.generator,
        session.regressor,
        face.q0,
        edit_target(face.q0, changes, session.regressor.nrsfm),
    )
    expected = linear_edit(
        session.regressor, face.latent0, target, num_steps=1, damping=float(session.cfg.editors.linear.damping)
    )
    torch.testing.assert_close(view.latent, expected.latent)
    torch.testing.assert_close(view.target.q, target.q)
    assert view.editor == "preview" and view.detected is True
    assert view.grid.shape == (16, 48, 3) and view.grid.dtype == np.uint8


def test_preview_turns_the_face_and_the_image_changes(session):
    yaw0 = slider_value(session, "yaw")
    before = session.preview({}).grid
    view = session.preview({"yaw": yaw0 + 10})
    assert float(torch.rad2deg(view.q[0, 4])) > yaw0
    np.testing.assert_array_equal(view.grid[:, :16], before[:, :16])  # the original stays
    assert not np.array_equal(view.grid[:, 16:32], before[:, 16:32])


@pytest.mark.parametrize("editor", ["linear", "gradient"])
def test_refine_runs_the_chosen_editor_toward_the_target(session, editor):
    yaw0 = slider_value(session, "yaw")
    preview = session.preview({"yaw": yaw0 + 10})
    view = session.refine({"yaw": yaw0 + 10}, editor)
    assert view.editor == editor
    assert float(torch.rad2deg(view.q[0, 4])) > yaw0
    if editor == "linear":  # more Newton steps come closer than the first one
        assert abs(view.q[0, 4] - view.target.q[0, 4]) < abs(preview.q[0, 4] - preview.target.q[0, 4])


def test_downloads_hold_the_latest_edit_in_nvidias_layout(session, tmp_path):
    with pytest.raises(UserError, match="nothing edited yet"):
        session.edited_npz()
    view = session.refine({"yaw": slider_value(session, "yaw") + 5}, "linear")
    path = tmp_path / "edited.npz"
    path.write_bytes(session.edited_npz())
    ws, metadata = load_latents(path)
    assert ws.shape == (1, TinyGenerator.num_ws, TinyGenerator.w_dim)
    torch.testing.assert_close(ws[0, 0].double(), view.latent[0].double(), atol=1e-6, rtol=0)
    assert metadata["editor"] == "linear" and metadata["face"] == "seed 3"
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(session.edit_png()))), view.grid)


def test_a_downloaded_latent_file_opens_as_the_face(session, tmp_path):
    edited = session.refine({"yaw": slider_value(session, "yaw") + 5}, "linear").latent
    state = session.choose_latent_file(session.edited_npz(), "edited.npz")
    assert state["face"] == "edited.npz (face 1 of 1)"
    torch.testing.assert_close(session.face.latent0, edited, atol=1e-6, rtol=0)


def test_a_random_face_is_a_new_face(session):
    latent = session.face.latent0
    session.choose_random()
    assert not torch.equal(session.face.latent0, latent)


def test_bad_input_is_a_message(session, tmp_path):
    with pytest.raises(UserError, match="not a latent file"):
        session.choose_latent_file(b"this is not an npz file", "notes.txt")
    wrong = tmp_path / "wrong.npz"
    save_latents(wrong, torch.zeros(1, 5, 7))
    with pytest.raises(UserError, match=r"wrong.npz holds w of shape \(1, 5, 7\)"):
        session.choose_latent_file(wrong.read_bytes(), "wrong.npz")
    save_latents(wrong, torch.zeros(1, TinyGenerator.num_ws, TinyGenerator.w_dim))
    with np.load(wrong) as data:
        arrays = {**data, "w": np.full_like(data["w"], np.nan)}
    np.savez(wrong, **arrays)
    with pytest.raises(UserError, match="w in wrong.npz contains NaN"):
        session.choose_latent_file(wrong.read_bytes(), "wrong.npz")
    with pytest.raises(UserError, match="not an image"):
        session.transfer_from_photo(b"GIF89a broken", ["rotation"])
    with pytest.raises(UserError, match="seed must be a whole number"):
        session.choose_seed("seven")
    with pytest.raises(UserError, match="unknown slider 'frown'"):
        session.preview({"frown": 1})
    with pytest.raises(UserError, match="unknown editor"):
        session.refine({}, "magic")
    assert session.face.label == "seed 3"  # the face survives every refusal


def test_a_photo_without_a_face_is_a_message():
    session = EditorSession(app_config(), TinyGenerator(), TinyRegressor(), ProjectionDetector(missing_below=2.0))
    session.choose_seed(3)
    with pytest.raises(UserError, match="no face found in the photo"):
        session.transfer_from_photo(png_bytes(np.full((16, 16, 3), 128, np.uint8)), ["rotation", "expression"])


def test_transfer_from_a_photo_gives_the_pose_and_expression_sliders(session):
    photo = torch.tanh(torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)))
    pixels = ((photo[0].permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    changes = session.transfer_from_photo(png_bytes(pixels), ["rotation"])
    assert set(changes) == {"pitch", "yaw", "roll"}
    changes = session.transfer_from_photo(png_bytes(pixels), ["rotation", "expression"])
    assert set(changes) == {"pitch", "yaw", "roll", "alpha.0", "alpha.1", "alpha.2", "alpha.3"}
    assert all(np.isfinite(list(changes.values())))
    session.preview(changes)


def test_photo_to_images_reads_a_png_in_the_image_convention():
    images = photo_to_images(png_bytes(np.full((8, 12, 3), 255, np.uint8)))
    assert images.shape == (1, 3, 8, 12)
    torch.testing.assert_close(images, torch.ones_like(images))


def test_a_regressor_for_another_generator_is_refused_and_the_old_one_kept(session, tmp_path):
    path = saved_regressor(tmp_path / "other.pt", generator="other")
    with pytest.raises(UserError, match="trained for generator 'other'"):
        session.use_regressor_file(str(path))
    with pytest.raises(UserError, match="not found"):
        session.use_regressor_file(str(tmp_path / "missing.pt"))
    assert session.regressor.metadata["generator"] == "tiny"
    session.preview({"yaw": 0})


def test_a_matching_regressor_file_replaces_the_regressor_and_keeps_the_face(session, tmp_path):
    latent = session.face.latent0
    state = session.use_regressor_file(str(saved_regressor(tmp_path / "tiny.pt", generator="tiny")))
    assert state["regressor"].endswith("tiny.pt") and state["face"] == "seed 3"
    torch.testing.assert_close(session.face.latent0, latent.float())
    session.preview({"yaw": 0})


def test_the_server_answers_bad_input_with_a_message_and_keeps_serving(session):
    pytest.importorskip("uvicorn", reason="the app extra is not installed (pip install -e '.[app]')")
    from app_harness import serve

    with serve(session) as url:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(
                urllib.request.Request(f"{url}/api/face/upload?name=x.npz", data=b"junk", method="POST")
            )
        assert refused.value.code == 400 and "not a latent file" in json.load(refused.value)["error"]
        view = post_json(f"{url}/api/edit", {"changes": {"yaw": 0}, "editor": "preview"})
        assert view["image"].startswith("data:image/png;base64,") and view["editor"] == "preview"
        with urllib.request.urlopen(f"{url}/") as page:
            html = page.read().decode()
            assert "Content-Security-Policy" in page.headers and "http" not in html.replace("http-equiv", "")
        with urllib.request.urlopen(f"{url}/api/download/edited.npz") as download:
            assert download.read()[:2] == b"PK"


def test_an_app_whose_regressor_has_no_landmark_detector_config_stops_with_one_line(regressor_path):
    from editing.app import build_session

    cfg = app_config("generator=stylegan2", f"regressor_path={regressor_path}")
    with open_dict(cfg):
        cfg.generator = {"_target_": "editing_standins.TinyGenerator", "dtype": "float32"}
    with pytest.raises(UserError, match="landmarks 'test' have no detector config"):
        build_session(cfg)


def test_leaves_localhost_tells_outside_requests_from_local_ones():
    from app_harness import leaves_localhost

    assert leaves_localhost("https://fonts.googleapis.com/css2?family=Source+Sans+Pro")
    assert leaves_localhost("http://192.168.1.2:7860/api/state") and leaves_localhost("wss://example.org/queue")
    assert not leaves_localhost("http://127.0.0.1:7860/static/app.js") and not leaves_localhost("http://localhost:80/")
    assert not leaves_localhost("data:image/png;base64,AAAA") and not leaves_localhost("chrome://resources/js/util.js")


def post_json(url, payload):
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request) as answer:
        return json.load(answer)


def png_bytes(pixels):
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def saved_regressor(path, generator):
    torch.manual_seed(0)
    nrsfm = random_nrsfm(dtype=torch.float32)
    mlp = AttributeMLP(16, nrsfm.layout.dim, hidden_dims=(32,), activation="tanh", head_scale=1.0)
    return save_attribute_regressor(
        path, AttributeRegressor(mlp, nrsfm, "w", (16,), {"generator": generator, "latent_space": "w"})
    )
