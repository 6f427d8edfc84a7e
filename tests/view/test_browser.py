"""The report in a real headless Chromium: loads offline with no console error, renders, escapes.

Needs Debian's ``chromium`` and ``chromium-driver`` (``make browser`` installs them) and
selenium + pillow (dev extras); skipped with the reason otherwise. Chromium runs with every
host name unresolvable, so any attempt to reach the network would fail and show up as a
console error or a logged request.
"""

from __future__ import annotations

import io
import json
import shutil
import time

import pytest

from .conftest import SCRIPT

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if CHROMIUM is None or DRIVER is None:
        pytest.skip("chromium and chromedriver are not installed (run `make browser`)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (dev extras)")
    pytest.importorskip("PIL", reason="pillow is not installed (dev extras)")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
                 "--window-size=1280,2400", "--host-resolver-rules=MAP * ~NOTFOUND"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    driver.set_page_load_timeout(120)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def loaded(browser, run, tmp_path_factory):
    """The synthetic run's report, opened from file:// and given time to render."""
    from synergy_lens.view.report import write_report

    path = write_report(run, tmp_path_factory.mktemp("report") / "report.html")
    browser.get_log("performance")  # drop the start-up page's requests
    browser.get(path.as_uri())
    deadline = time.time() + 90
    script = ("return document.readyState === 'complete' && "
              "Array.from(document.querySelectorAll('.plotly-graph-div')).every(d => d.querySelector('svg.main-svg'))"
              " && Array.from(document.querySelectorAll('.circuitsvis')).every(d => d.children.length > 0)")
    while not browser.execute_script(script):
        if time.time() > deadline:
            pytest.fail("the report did not finish rendering in 90 s")
        time.sleep(0.5)
    return browser, path


def test_no_console_errors(loaded):
    driver, _ = loaded
    severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == []


def test_no_network_requests(loaded):
    driver, _ = loaded
    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    external = [u for u in urls if not u.startswith(("file:", "data:", "blob:", "about:", "chrome:"))]
    assert external == []
    assert any(u.startswith("file:") for u in urls)


def test_figures_and_views_rendered(loaded):
    driver, _ = loaded
    n_figures = driver.execute_script("return document.querySelectorAll('.plotly-graph-div svg.main-svg').length")
    assert n_figures >= 8
    n_views = driver.execute_script("return document.querySelectorAll('.circuitsvis').length")
    assert n_views == 2


def test_prompt_with_script_shows_as_text(loaded):
    driver, _ = loaded
    texts = driver.execute_script("return Array.from(document.querySelectorAll('pre.prompt-text')).map(e => e.textContent)")
    assert texts[0] == SCRIPT
    injected = driver.execute_script(
        "return Array.from(document.scripts).filter(s => s.textContent.trim().startsWith('alert(')).length")
    assert injected == 0
    driver.execute_script("document.querySelector('details.prompt').open = true")
    assert SCRIPT in driver.find_element("css selector", "details.prompt").text


def test_screenshot_is_not_blank(loaded):
    from PIL import Image, ImageStat

    driver, _ = loaded
    driver.execute_script("window.scrollTo(0, 0)")
    image = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("L")
    stddev = ImageStat.Stat(image).stddev[0]
    histogram = image.histogram()
    non_white = sum(histogram[:245]) / (image.width * image.height)
    assert stddev > 10, f"screenshot nearly uniform (std {stddev:.1f})"
    assert non_white > 0.03, f"screenshot nearly all white ({non_white:.1%} non-white pixels)"
