"""The operations dashboard in headless Chromium against a real worker, Redis and API: the
lifecycle charts show the timeline the worker kept for a scripted scenario, the at-risk list
is ordered by risk x value with holdout users marked, a user opens with their history, and a
screenshot is kept (.pulse/screenshots/dashboard.png)."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from streams.core.eventtime import DAY_MS
from streams.core.holdout import assign_group
from streams.core.policy import Policy
from tests.e2e.conftest import HAS_CHROMIUM, KEY, SCREENSHOTS
from tests.integration.conftest import Stack
from tests.integration.events import day_base, ev

pytestmark = pytest.mark.skipif(
    not HAS_CHROMIUM,
    reason="needs Debian's chromium and chromium-driver (make test installs them as root)",
)

HOLDOUT = next(u for n in range(1000) if assign_group(u := f"held-{n}", Policy()) == "holdout")
# Daily visitors for ten days who then fall silent, with what they spent meanwhile.
FADING = {"spender-a": 300.0, "spender-b": 80.0, "quiet-ann": None, HOLDOUT: 120.0}
LIFECYCLE = [  # the lifecycle chart's series: stage, sign (losses are drawn below the line)
    ("new", 1),
    ("active", 1),
    ("reactivated", 1),
    ("at_risk", -1),
    ("dormant", -1),
    ("churned", -1),
]


@pytest.fixture
def window_size() -> str:
    return "1440,1600"


def _api(url: str, path: str) -> Any:
    req = urllib.request.Request(url + path, headers={"X-API-Key": KEY})
    return json.loads(urllib.request.urlopen(req, timeout=10).read())


def _scenario() -> list[tuple[bytes, bytes]]:
    first = day_base(20)
    records = []
    for user, spend in FADING.items():
        for i in range(10):
            records.append(ev(f"{user}-s{i}", user, "session_start", first + i * DAY_MS))
            if i == 5 and spend is not None:  # in event-time order: a late one is refused
                records.append(ev(f"{user}-buy", user, "purchase", first + i * DAY_MS + 1, spend))
    records += [
        ev(f"sam-{i}", "steady-sam", "session_start", first + i * DAY_MS) for i in range(20)
    ]
    records.append(ev("ben-buy", "big-ben", "purchase", day_base(2), 700))
    return records


# Texts whose colour does not stand out enough from their background: [text, ratio].
_LOW_CONTRAST = """
const rgb = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
const lum = ([r, g, b]) => {
  const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
  return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
};
const background = (el) => {
  for (; el; el = el.parentElement) {
    const c = rgb(getComputedStyle(el).backgroundColor);
    if (c.length === 3 || c[3] > 0) return c.slice(0, 3);
  }
  return [255, 255, 255];
};
const bad = [];
for (const el of document.querySelectorAll("body *")) {
  const own = [...el.childNodes].filter((n) => n.nodeType === 3);
  const text = own.map((n) => n.data).join("").trim();
  if (!text || !el.getClientRects().length || el.closest("[hidden], dialog:not([open])")) continue;
  if (el.closest("button:disabled")) continue;
  const style = getComputedStyle(el);
  const a = lum(rgb(style.color)), b = lum(background(el));
  const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  const size = parseFloat(style.fontSize);
  const large = size >= 24 || (size >= 18.66 && style.fontWeight >= 700);
  if (ratio < (large ? 3 : 4.5)) bad.push([text.slice(0, 40), Math.round(ratio * 100) / 100]);
}
return bad;
"""


def _chart(driver: webdriver.Chrome, canvas: str) -> dict[str, Any]:
    """The labels and series a Chart.js chart is drawing."""
    return driver.execute_script(  # type: ignore[no-any-return]
        "const c = Chart.getChart(arguments[0]);"
        "return {labels: c.data.labels,"
        " series: c.data.datasets.map((d) => ({stage: d.stage, label: d.label, data: d.data}))};",
        canvas,
    )


async def test_dashboard_charts_the_timeline_and_lists_whom_to_act_on(
    stack: Stack, api_url: str, browser: webdriver.Chrome
) -> None:
    await stack.produce(_scenario())
    await stack.states(lambda s: len(s) == 6 and s["steady-sam"].total_events == 20)
    for days in range(10, -1, -1):
        await stack.tick(day_base(days))
    await stack.states(lambda s: all(s[u].stage == "at_risk" for u in FADING))

    browser.get(api_url + "/")
    wait = WebDriverWait(browser, 30)
    wait.until(ec.visibility_of_element_located((By.ID, "login")))
    assert browser.find_element(By.CSS_SELECTOR, "label[for=key]").text  # the field is named
    browser.find_element(By.ID, "key").send_keys(KEY + Keys.ENTER)  # the keyboard signs in
    wait.until(ec.visibility_of_element_located((By.ID, "board")))
    rows = "#risky-body tr[data-user]"
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, rows)) == len(FADING))

    # The charts draw the series the worker kept (GET /v1/stats/timeline), every day labelled.
    timeline = _api(api_url, "/v1/stats/timeline")
    buckets = timeline["buckets"]
    assert timeline["bucket_seconds"] == 86_400
    assert buckets[0]["start_ms"] == day_base(20) // DAY_MS * DAY_MS  # the first signups

    def charted() -> bool:
        return len(_chart(browser, "lifecycle-chart")["labels"]) == len(buckets)

    wait.until(lambda d: charted())
    bars = _chart(browser, "lifecycle-chart")
    assert [s["stage"] for s in bars["series"]] == [stage for stage, _ in LIFECYCLE]
    for series, (stage, sign) in zip(bars["series"], LIFECYCLE, strict=True):
        assert series["data"] == [sign * b["entered"][stage] for b in buckets], stage
    new = bars["series"][0]["data"]
    at_risk = bars["series"][3]["data"]
    assert sum(new) == 6  # every user of the scenario entered `new` once
    assert -sum(at_risk) >= len(FADING)  # each fading user entered at_risk (maybe more often)
    areas = _chart(browser, "populations-chart")
    stats = _api(api_url, "/v1/stats")
    for series in areas["series"]:
        assert series["data"] == [b["population"][series["stage"]] for b in buckets]
        # the last point is the users in the stage now
        assert series["data"][-1] == stats["stages"][series["stage"]], series["stage"]
    assert stats["stages"]["at_risk"] == len(FADING)

    # Whom to act on: by risk x value, as the API orders them; the holdout user is marked.
    page = _api(api_url, "/v1/segments/priority?limit=12")
    listed = [r.get_attribute("data-user") for r in browser.find_elements(By.CSS_SELECTOR, rows)]
    assert listed == [i["user_id"] for i in page["items"]]
    assert sorted(listed) == sorted(FADING)
    keys = [(-i["risk_score"] * i["value"], -i["risk_score"], i["user_id"]) for i in page["items"]]
    assert keys == sorted(keys)
    assert {i["user_id"]: i["value"] for i in page["items"]} == {
        u: s or 0.0 for u, s in FADING.items()
    }
    for row in browser.find_elements(By.CSS_SELECTOR, rows):
        marked = "do not contact" in row.text
        assert marked == (row.get_attribute("data-user") == HOLDOUT), row.text
        assert "at risk" in row.text and "since" in row.text

    # Tiers in rank order; every time says which clock it is on.
    tiers = browser.find_element(By.ID, "tiers").text.split("\n")
    assert [t.split(" ")[0] for t in tiers] == ["bronze", "silver", "gold"]
    clock = browser.find_element(By.ID, "clock").text
    assert "Event time now" in clock and "Wall time" in clock
    assert "event time" in browser.find_element(By.ID, "h-act").find_element(By.XPATH, "..").text

    # The recall card shows both groups, their sample sizes and a verdict in words.
    wait.until(lambda d: "All tiers" in d.find_element(By.ID, "recall").text)
    recall = browser.find_element(By.ID, "recall").text
    assert "treated" in recall and "holdout" in recall and "Tier bronze" in recall
    assert "judged" in browser.find_element(By.ID, "recall-verdict").text

    # Accessibility basics: the charts are described, and every visible text reaches WCAG AA
    # contrast against what is behind it (4.5:1; 3:1 for large text; disabled controls exempt).
    for canvas in browser.find_elements(By.TAG_NAME, "canvas"):
        assert canvas.get_attribute("role") == "img" and canvas.get_attribute("aria-label")
    assert browser.execute_script(_LOW_CONTRAST) == []

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shot = SCREENSHOTS / "dashboard.png"
    assert browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 30_000

    # A user opens from the keyboard with their state and history; Escape closes it.
    first = browser.find_element(By.CSS_SELECTOR, f"{rows} button")
    first.send_keys(Keys.ENTER)
    dialog = browser.find_element(By.ID, "user-dialog")
    wait.until(lambda d: dialog.is_displayed())
    assert dialog.find_element(By.ID, "user-title").text == f"User {listed[0]}"
    wait.until(lambda d: "churn warning" in dialog.text)
    assert "stage new → active" in dialog.text or "stage new → at risk" in dialog.text
    browser.save_screenshot(str(SCREENSHOTS / "dashboard-user.png"))
    browser.switch_to.active_element.send_keys(Keys.ESCAPE)
    wait.until(lambda d: not dialog.is_displayed())
