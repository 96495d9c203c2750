"""The web playground in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``, .ci/run installs them) driven by selenium, against a real local
stack with Envoy, which serves the page (edge.web).

Every test here is marked ``integration`` (it starts the stack) and ``browser``.
Without chromium or chromedriver the tests fail in CI (CI=true) and are skipped
elsewhere, saying what to install. Each test leaves a screenshot of the page in
test-artifacts/browser/ (ARTIFACTS), and the files it downloaded in its downloads/.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
from pathlib import Path

import pytest

from localstack.config import StackConfig
from tests.integration.stacks import REPO, Supervised, reuse_models, stack_config, supervised

HERE = Path(__file__).resolve().parent
ARTIFACTS = REPO / "test-artifacts" / "browser"
CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
INSTALL = "apt-get install -y chromium chromium-driver"
# Headless, as root (no sandbox), audio that plays without a click, and a fake
# microphone that getUserMedia gets without asking.
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--autoplay-policy=no-user-gesture-required",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--window-size=1280,1800",
)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items) -> None:
    """Mark every test of this folder ``integration`` and ``browser`` (before ``-m``)."""
    for item in items:
        if HERE in item.path.resolve().parents:
            item.add_marker(pytest.mark.integration)
            item.add_marker(pytest.mark.browser)


@dataclasses.dataclass(frozen=True)
class Chromium:
    browser: str
    driver: str


@pytest.fixture(scope="module")
def chromium() -> Chromium:
    """Debian's chromium and its chromedriver; fails in CI, skips elsewhere, without them."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    missing = [name for name, path in (("chromium", browser), ("chromedriver", driver)) if not path]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package (make venv)")
    if missing:
        message = f"the browser tests need {', '.join(missing)}: {INSTALL}"
        if CI:
            pytest.fail(f"missing in CI: {message}")
        pytest.skip(message)
    return Chromium(browser=browser, driver=driver)


@dataclasses.dataclass
class PlaygroundStack:
    config: StackConfig
    running: Supervised

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.config.api_port}"


@pytest.fixture(scope="module")
def stack(tmp_path_factory, chromium) -> PlaygroundStack:
    """The whole stack, Envoy in front, for this module only (its own run folder and
    ports; the tiny models of an earlier stack of the session when there is one)."""
    run_dir = tmp_path_factory.mktemp("stack")
    reuse_models(tmp_path_factory, run_dir)
    config = stack_config(run_dir)
    with supervised(config) as running:
        yield PlaygroundStack(config, running)


@pytest.fixture(scope="module")
def artifacts() -> Path:
    """test-artifacts/browser/, emptied: screenshots, and downloads/ for the downloads."""
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    (ARTIFACTS / "downloads").mkdir(parents=True)
    return ARTIFACTS


@pytest.fixture(scope="module")
def browser(chromium, artifacts):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = chromium.browser
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    # The console, for the tests to read (driver.get_log("browser")).
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    downloads = str(artifacts / "downloads")
    options.add_experimental_option("prefs", {
        "download.default_directory": downloads,
        "download.prompt_for_download": False,
    })
    # The paths given: selenium never looks for (or downloads) a driver of its own.
    driver = webdriver.Chrome(service=Service(executable_path=chromium.driver), options=options)
    try:
        driver.execute_cdp_cmd("Browser.setDownloadBehavior",
                               {"behavior": "allow", "downloadPath": downloads})
        yield driver
    finally:
        driver.quit()


def screenshot(browser, artifacts: Path, name: str) -> Path:
    """The page as it is now, in ``artifacts`` as NN-<name>.png (numbered in order)."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")
    path = artifacts / f"{len(list(artifacts.glob('*.png'))) + 1:02d}-{name}.png"
    browser.save_screenshot(str(path))
    return path


@pytest.fixture(autouse=True)
def screenshot_after(request, browser, artifacts):
    """After each test, passed or not, a screenshot of the page: NN-<test>.png."""
    yield
    screenshot(browser, artifacts, request.node.name)
