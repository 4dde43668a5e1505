"""`pulse run` (what `make run` calls) as a person uses it: start, watch, Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def test_pulse_run_shows_warnings_and_stops_everything_on_ctrl_c(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "run", "--users", "60", "--rate", "86400"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 150
    try:
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if " WARNING " in line:
                break
        text = "".join(lines)
        assert " WARNING " in text, text[-3000:]
        assert "broker (Tansu)   kafka://127.0.0.1:" in text
        assert " tier " in text  # a big spender moved up
        # The state API it started answers with the demo key it printed.
        url = re.search(r"state API\s+(http://127\.0\.0\.1:\d+)/docs", text)
        key = re.search(r"API key: (\S+)", text)
        assert url and key, text[:3000]
        stats = _get_json(f"{url[1]}/v1/stats", key[1])
        assert sum(stats["stages"].values()) >= 0 and "warnings" in stats
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, rest[-2000:]
    assert "pulse: stopped." in rest
    # Every process it started (broker, Redis, worker) ran in tmp_path: none may be left.
    assert _processes_in(tmp_path) == []


def _get_json(url: str, key: str) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + 30
    while True:
        try:
            req = urllib.request.Request(url, headers={"X-API-Key": key})
            with urllib.request.urlopen(req, timeout=5) as resp:
                return json.loads(resp.read())  # type: ignore[no-any-return]
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _processes_in(cwd: Path) -> list[str]:
    left = []
    for proc_dir in Path("/proc").iterdir():
        try:
            if proc_dir.name.isdigit() and Path(proc_dir, "cwd").resolve() == cwd.resolve():
                left.append(Path(proc_dir, "cmdline").read_text().replace("\0", " "))
        except OSError:
            continue
    return left
