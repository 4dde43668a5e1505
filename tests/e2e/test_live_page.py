"""The live page in headless Chromium: sign in, see counts and at-risk users, watch the feed."""

from __future__ import annotations

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from streams.core.eventtime import DAY_MS
from tests.e2e.conftest import HAS_CHROMIUM, KEY, SCREENSHOTS
from tests.integration.conftest import Stack
from tests.integration.events import day_base, ev

pytestmark = pytest.mark.skipif(
    not HAS_CHROMIUM,
    reason="needs Debian's chromium and chromium-driver (make test installs them as root)",
)


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
    assert "at risk 1" in _text(browser, "stages")
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
