"""The live page in headless Chromium: sign in, see counts and at-risk users, watch the feed."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from streams.core.eventtime import DAY_MS
from streams.local.embedded import free_port, terminate
from tests.integration.conftest import Stack
from tests.integration.events import day_base, ev

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SCREENSHOTS = Path(__file__).parents[2] / ".pulse" / "screenshots"
KEY = "live-page-key"

pytestmark = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
    reason="needs Debian's chromium and chromium-driver (make test installs them as root)",
)


@pytest.fixture
def api_url(stack: Stack, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {**stack.env, "PULSE_API_PORT": str(port), "PULSE_API_KEYS": f"{KEY}:read"}
    log = open(tmp_path / "api.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "services"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{url}/healthz", timeout=1)
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise AssertionError((tmp_path / "api.log").read_text()) from None
            time.sleep(0.2)
    yield url
    terminate(proc)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,900",
        f"--user-data-dir={tmp_path / 'chromium'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def _text(driver: webdriver.Chrome, element_id: str) -> str:
    return str(driver.find_element(By.ID, element_id).text)


async def test_live_page_shows_counts_risky_users_and_a_live_feed(
    stack: Stack, api_url: str, browser: webdriver.Chrome
) -> None:
    first = day_base(20)
    await stack.produce(
        [ev(f"s{i}", "quiet-ann", "session_start", first + i * DAY_MS) for i in range(10)]
        + [ev("b1", "big-ben", "purchase", day_base(2), 700)]
    )
    await stack.states(lambda s: len(s) == 2 and s["quiet-ann"].total_events == 10)
    for days in range(10, 4, -1):
        await stack.tick(day_base(days))
    await stack.states(lambda s: s["quiet-ann"].stage == "at_risk")

    browser.get(api_url + "/")
    wait = WebDriverWait(browser, 30)
    wait.until(ec.visibility_of_element_located((By.ID, "login")))
    browser.find_element(By.ID, "key").send_keys(KEY)
    browser.find_element(By.CSS_SELECTOR, "#login-form button").click()
    wait.until(ec.visibility_of_element_located((By.ID, "board")))
    wait.until(lambda d: "quiet-ann" in _text(d, "risky"))
    assert "at_risk\n1" in _text(browser, "stages") or "at_risk 1" in _text(browser, "stages")
    wait.until(lambda d: "gold" in _text(d, "tiers"))

    # A warning published now reaches the open page through server-sent events.
    await stack.produce(
        [ev(f"o{i}", "fading-otto", "session_start", first + i * DAY_MS) for i in range(10)]
    )
    await stack.states(lambda s: "fading-otto" in s and s["fading-otto"].total_events == 10)
    await stack.tick(day_base(4))
    wait.until(lambda d: "warning fading-otto: silence_exceeds_normal" in _text(d, "feed"))

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shot = SCREENSHOTS / "live.png"
    assert browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
