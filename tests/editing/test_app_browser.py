"""The browser editor in a real browser: headless Chromium from the Debian packages, driven by selenium.

The stand-in test (default run) moves the yaw slider and checks that the image changes, that bad input shows
a message in the page and that no request leaves localhost. The slow test does the same on the default
generator with its real regressor (built and cached on first use, `editing.pipeline`), checks that the face
on the shown image turned the way the slider asked (dlib landmarks + `nrsfm.fit_q.fit_q`), and saves the
screenshot; with RANKONE_APP_SCREENSHOT=docs/app.png it also writes it there for the README.
RANKONE_APP_REGRESSOR=<regressor.pt> gives it another regressor of the default generator instead.
"""

import base64
import io
import os
import shutil

import numpy as np
import pytest
import torch
from app_harness import chromium, chromium_paths, leaves_localhost, requested_urls, serve
from editing_standins import ProjectionDetector, TinyGenerator, TinyRegressor
from PIL import Image

pytest.importorskip("uvicorn", reason="the app extra is not installed (pip install -e '.[app]')")
pytest.importorskip("starlette", reason="the app extra is not installed (pip install -e '.[app]')")
pytest.importorskip("selenium", reason="the app extra is not installed (pip install -e '.[app]')")
if chromium_paths() is None:
    pytest.skip(
        "Chromium or chromedriver is missing (apt-get install chromium chromium-driver)", allow_module_level=True
    )

from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from editing.app_session import EditorSession  # noqa: E402
from editing.pipeline import compose_stage  # noqa: E402


def wait_for_view(driver, after_version, timeout, editor=None):
    """Wait until the page shows a view newer than `after_version` (made by `editor`) and is idle; its version."""

    def ready(driver):
        image = driver.find_element(By.ID, "view")
        version = int(image.get_attribute("data-version") or 0)
        done = version > after_version and image.get_attribute("data-state") == "ready"
        return version if done and (editor is None or image.get_attribute("data-editor") == editor) else False

    return WebDriverWait(driver, timeout).until(ready)


def shown_panels(driver):
    """The shown grid as (3, H, W, 3) uint8 panels: original, edit, edit with landmarks."""
    source = driver.find_element(By.ID, "view").get_attribute("src")
    grid = np.asarray(Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1]))).convert("RGB"))
    return np.stack(np.split(grid, 3, axis=1))


def drag_slider(driver, name, fraction):
    """Drag the thumb of slider `name` by `fraction` of its width (a real mouse drag); returns (before, after) values."""
    slider = driver.find_element(By.ID, f"slider-{name}")
    before = float(slider.get_attribute("value"))
    width = slider.size["width"]
    span = float(slider.get_attribute("max")) - float(slider.get_attribute("min"))
    thumb = (before - float(slider.get_attribute("min"))) / span * width - width / 2
    ActionChains(driver).move_to_element_with_offset(slider, int(thumb), 0).click_and_hold().move_by_offset(
        int(fraction * width / 2), 0
    ).move_by_offset(int(fraction * width / 2), 0).release().perform()
    return before, float(slider.get_attribute("value"))


def assert_stayed_local(driver):
    """Every request since the app's page opened stayed on this machine (and the log did see the page's own)."""
    urls = requested_urls(driver)
    assert any("/api/edit" in url for url in urls), "the performance log saw none of the page's own requests"
    outside = [url for url in urls if leaves_localhost(url)]
    assert not outside, f"requests left localhost: {outside}"


def test_stand_in_app_in_chromium_moves_yaw_shows_errors_and_stays_local(tmp_path):
    session = EditorSession(
        compose_stage("app", ["pipeline.num_samples=200"]), TinyGenerator(), TinyRegressor(), ProjectionDetector()
    )
    session.choose_seed(3)
    with serve(session) as url, chromium() as driver:
        requested_urls(driver)  # drain what the browser asked for before the app (its new-tab page)
        driver.get(url)
        version = wait_for_view(driver, 0, 60)
        before = shown_panels(driver)
        yaw0, yaw1 = drag_slider(driver, "yaw", 0.3)
        assert yaw1 > yaw0
        version = wait_for_view(driver, version, 60, editor="linear")
        after = shown_panels(driver)
        assert np.array_equal(after[0], before[0]) and not np.array_equal(after[1], before[1])
        junk = tmp_path / "junk.npz"
        junk.write_bytes(b"not a latent file")
        driver.find_element(By.ID, "latent-file").send_keys(str(junk))
        WebDriverWait(driver, 30).until(lambda d: "not a latent file" in d.find_element(By.ID, "message").text)
        drag_slider(driver, "pitch", 0.2)  # the server still serves
        wait_for_view(driver, version, 60, editor="linear")
        assert_stayed_local(driver)


@pytest.mark.slow
def test_default_generator_app_in_chromium_turns_the_face_the_way_the_slider_asks(tmp_path):
    from editing.app import build_session
    from nrsfm.fit_q import fit_q

    regressor = os.environ.get("RANKONE_APP_REGRESSOR")
    session = build_session(compose_stage("app", [f"regressor_path={regressor}"] if regressor else []))
    with serve(session) as url, chromium() as driver:
        requested_urls(driver)
        driver.get(url)
        version = wait_for_view(driver, 0, 120)
        before = shown_panels(driver)
        yaw0, yaw1 = drag_slider(driver, "yaw", 0.35)
        assert yaw1 - yaw0 > 8, "the drag should ask for a clear turn"
        wait_for_view(driver, version, 300, editor="linear")
        after = shown_panels(driver)
        assert np.array_equal(after[0], before[0]) and not np.array_equal(after[1], before[1])
        images = torch.from_numpy(np.stack([after[0], after[1]])).permute(0, 3, 1, 2).float() / 127.5 - 1
        detections = session.detector.detect(images)
        assert detections.found.all(), "dlib should find the face on the original and on the edit"
        model = session.regressor.nrsfm
        size = torch.tensor([images.shape[-1], images.shape[-2]], dtype=model.q_mean.dtype)
        q_image = fit_q(model, detections.landmarks.to(model.q_mean.dtype) / size)
        turned = float(torch.rad2deg(q_image[1, 4] - q_image[0, 4]))
        assert turned > 0.3 * (yaw1 - yaw0), (
            f"asked to turn by {yaw1 - yaw0:.1f} deg, the image turned by {turned:.1f} deg"
        )
        assert_stayed_local(driver)
        driver.save_screenshot(str(tmp_path / "app.png"))
    if os.environ.get("RANKONE_APP_SCREENSHOT"):
        shutil.copyfile(tmp_path / "app.png", os.environ["RANKONE_APP_SCREENSHOT"])
