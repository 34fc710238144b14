"""Serve an EditorSession on a free localhost port for a test, and drive it with headless Chromium."""

import contextlib
import shutil
import tempfile
from urllib.parse import urlparse

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1500,1100",
)
LOCAL_HOSTS = ("127.0.0.1", "localhost")
NETWORK_SCHEMES = ("http", "https", "ws", "wss", "ftp")


@contextlib.contextmanager
def serve(session):
    """The app of `session` served on a free localhost port in a thread; yields its URL."""
    from editing.app_server import create_app, serve_in_background

    with serve_in_background(create_app(session)) as url:
        yield url


def chromium_paths():
    """(chromium, chromedriver) from the Debian packages, or None when either is missing."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@contextlib.contextmanager
def chromium():
    """A headless Chromium driven by selenium, with a new empty profile and its performance log on."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver_path = chromium_paths()
    with tempfile.TemporaryDirectory() as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = browser
        for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
        try:
            yield driver
        finally:
            driver.quit()


def requested_urls(driver):
    """Every URL the page asked for so far (DevTools Network.requestWillBeSent events of the performance log)."""
    import json

    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def leaves_localhost(url):
    """Whether `url` goes to another machine: a network URL (http, https, ws, wss, ftp) to a host other than this
    one, or a URL of a scheme the browser does not keep inside (data:, blob:, about:, chrome: stay)."""
    parsed = urlparse(url)
    if parsed.scheme in ("data", "blob", "about", "chrome"):
        return False
    return parsed.scheme not in NETWORK_SCHEMES or parsed.hostname not in LOCAL_HOSTS
