"""The e2e tests reuse the integration fixtures: real Tansu, redis-server and worker processes.

The browser tests (the live page) get the API as a subprocess (`api_url`, key KEY with the
read scope) and headless Chromium (`browser`) from here.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.local.embedded import free_port, terminate
from tests.integration.conftest import Stack, broker, make_stack, redis_server, stack  # noqa: F401

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
HAS_CHROMIUM = Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()
SCREENSHOTS = Path(__file__).parents[2] / ".pulse" / "screenshots"
KEY = "live-page-key"


@pytest.fixture
def api_url(stack: Stack, tmp_path: Path) -> Iterator[str]:  # noqa: F811
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
def window_size() -> str:
    """The browser window's size; a test overrides it for a taller screenshot."""
    return "1280,900"


@pytest.fixture
def browser(tmp_path: Path, window_size: str) -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

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
        f"--window-size={window_size}",
        f"--user-data-dir={tmp_path / 'chromium'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()
