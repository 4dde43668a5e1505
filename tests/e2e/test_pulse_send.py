"""During `pulse run`, `pulse send` adds your own event on the demo's clock, and the API, the
worker and the stats agree on that clock; `pulse env` prints the banner's URL and key as shell
variables; a restart keeps the ports and the key; with no API running, `pulse send` says so in
one line, and `pulse env` where no stack was started."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from streams.core.eventtime import DAY_MS, HOUR_MS, parse_ts
from tests.e2e.test_run_lifecycle import start_run


def pulse(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
    )


def get_json(url: str, key: str) -> Any:
    req = urllib.request.Request(url, headers={"X-API-Key": key})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


def banner_values(lines: list[str]) -> dict[str, str]:
    text = "".join(lines)
    api = re.search(r"state API\s+(http://127\.0\.0\.1:\d+)/docs\s+API key: (\S+)", text)
    broker = re.search(r"broker \(Tansu\)\s+(kafka://127\.0\.0\.1:\d+)", text)
    assert api and broker, text
    return {"api": api[1], "key": api[2], "broker": broker[1]}


def stop(proc: subprocess.Popen[str], sig: signal.Signals) -> None:
    proc.send_signal(sig)
    rest, _ = proc.communicate(timeout=40)
    assert proc.returncode == 0 and "pulse: stopped." in rest, rest[-2000:]


def test_an_event_sent_during_the_demo_is_stamped_and_counted_on_the_demo_clock(
    tmp_path: Path,
) -> None:
    proc, lines = start_run(tmp_path)
    first = banner_values(lines)
    assert "event time" in "".join(lines) and "memory-only" in "".join(lines)
    try:
        printed = pulse(tmp_path, "env")
        assert printed.returncode == 0, printed.stderr
        assert printed.stdout == f"API_URL={first['api']}\nKEY={first['key']}\n"

        sent = pulse(tmp_path, "send", "--user", "me-1", "--type", "purchase", "--amount", "150")
        assert sent.returncode == 0, sent.stderr
        doc = json.loads(sent.stdout)
        assert doc["answer"]["accepted"] == 1, doc
        wall = time.time_ns() // 1_000_000
        # Stamped with the demo's "now", hours of event time ahead of the wall clock, and
        # accepted by the API all the same.
        assert doc["sent"]["ts"] > wall + 6 * HOUR_MS

        stats = get_json(f"{first['api']}/v1/stats", first["key"])
        assert parse_ts(stats["as_of"]) > wall + 6 * HOUR_MS  # windows on the same clock

        # The worker took it on its clock too: the user is in the view with that purchase.
        deadline = time.monotonic() + 40
        while True:
            try:
                user = get_json(f"{first['api']}/v1/users/me-1", first["key"])
                break
            except OSError:
                assert time.monotonic() < deadline, "the worker never wrote me-1"
                time.sleep(0.5)
        assert parse_ts(user["last_seen"]) == doc["sent"]["ts"]

        # And the feed shows it, as the README says: the feed leaves out first sightings and
        # users starting in bronze, but a first purchase of 150 starts the user in silver.
        assert proc.stdout is not None
        feed: list[str] = []
        deadline = time.monotonic() + 30
        while not any(re.search(r"tier +me-1 +- -> silver \(initial", line) for line in feed):
            assert time.monotonic() < deadline, "no feed line for me-1:\n" + "".join(feed)
            feed.append(proc.stdout.readline())

        # An event a day ahead of the demo's clock is refused, with the reason.
        ahead = str(doc["sent"]["ts"] + 30 * DAY_MS)
        refused = pulse(tmp_path, "send", "--user", "me-1", "--type", "purchase", "--ts", ahead)
        assert refused.returncode == 1
        assert "timestamp_out_of_range" in refused.stderr
    finally:
        stop(proc, signal.SIGINT)

    # Nothing runs: one line that says so, no traceback.
    idle = pulse(tmp_path, "send", "--user", "me-1", "--type", "purchase")
    assert idle.returncode == 2
    assert idle.stderr.count("\n") == 1 and "no Pulse API answers" in idle.stderr, idle.stderr
    assert "make run" in idle.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    none = pulse(elsewhere, "env")
    assert none.returncode == 2 and none.stdout == ""
    assert none.stderr.count("\n") == 1 and "no stack state" in none.stderr, none.stderr

    # A restart keeps the ports and the key.
    proc, lines = start_run(tmp_path)
    try:
        assert banner_values(lines) == first
    finally:
        stop(proc, signal.SIGTERM)
