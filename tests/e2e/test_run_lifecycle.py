"""`pulse run` stops everything it started, whatever stops it: Ctrl-C, SIGTERM, SIGHUP (the
terminal closed), the reader of its output going away (`pulse run | head -1`) or both at once
(Ctrl-C to `make run 2>&1 | tee run.log`). Real processes throughout."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

psutil: Any
try:
    import psutil  # type: ignore[import-untyped,no-redef]
except ImportError:  # pragma: no cover - psutil comes with the dev tools here
    psutil = None

BANNER_END = "Reset on every start"


def start_run(
    cwd: Path, argv: list[str] | None = None, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], list[str]]:
    """`pulse run` (`argv`, default this interpreter's with 20 demo users) in `cwd`, with stdout
    (and stderr) into a pipe, read up to the end of its banner. With no banner within 45 s it is
    stopped (SIGINT, then SIGKILL) and the test fails with its output."""
    tmp = cwd / "tmp"
    tmp.mkdir(exist_ok=True)
    proc = subprocess.Popen(
        argv or [sys.executable, "-m", "streams.cli", "run", "--users", "20"],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**(os.environ if env is None else env), "PYTHONUNBUFFERED": "1", "TMPDIR": str(tmp)},
    )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if BANNER_END in line:
            return proc, lines
    # SIGINT first: pulse run stops the servers it started (SIGKILL would leave them running).
    proc.send_signal(signal.SIGINT)
    try:
        rest, _ = proc.communicate(timeout=40)
    except subprocess.TimeoutExpired:
        proc.kill()
        rest, _ = proc.communicate()
    raise AssertionError("no banner:\n" + ("".join(lines) + rest)[-3000:])


def _stat(pid: int) -> tuple[int, int, str] | None:
    """(parent pid, start time, state) from /proc/<pid>/stat; None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return int(fields[1]), int(fields[19]), fields[0]


def started_by(proc: subprocess.Popen[str]) -> list[tuple[int, int]]:
    """(pid, start time) of every process below `pulse run`: Tansu, redis-server, the worker
    and the API (psutil when installed, else /proc)."""
    if psutil is not None:
        found = psutil.Process(proc.pid).children(recursive=True)
        procs = [(c.pid, _stat(c.pid)) for c in found]
    else:
        table = {
            int(d.name): _stat(int(d.name)) for d in Path("/proc").iterdir() if d.name.isdigit()
        }
        below: set[int] = set()
        frontier = {proc.pid}
        while frontier:
            frontier = {pid for pid, st in table.items() if st and st[0] in frontier} - below
            below |= frontier
        procs = [(pid, table[pid]) for pid in below]
    cmdlines = " ".join(Path(f"/proc/{pid}/cmdline").read_text() for pid, _ in procs)
    for what in ("tansu", "redis-server", "worker", "services"):
        assert what in cmdlines, cmdlines
    return [(pid, st[1]) for pid, st in procs if st is not None]


def running(processes: list[tuple[int, int]]) -> list[int]:
    """The pids still running (the same process: a reused pid has another start time)."""
    left = []
    for pid, started in processes:
        st = _stat(pid)
        if st is not None and st[1] == started and st[2] != "Z":
            left.append(pid)
    return left


@pytest.mark.parametrize(
    "how", ["SIGINT", "SIGTERM", "SIGHUP", "reader gone", "SIGINT and reader gone"]
)
def test_pulse_run_stops_every_process_and_removes_its_temporary_folders(
    tmp_path: Path, how: str
) -> None:
    proc, _ = start_run(tmp_path)
    assert proc.stdout is not None
    children = started_by(proc)
    assert list((tmp_path / "tmp").glob("pulse-redis-*"))  # Redis's folder, while it runs

    if "reader gone" in how:
        proc.stdout.close()
    if how.startswith("SIG"):
        proc.send_signal(signal.Signals[how.split()[0]])
    try:
        proc.wait(timeout=40)
    finally:
        if proc.poll() is None:
            proc.kill()
    rest = "" if proc.stdout.closed else proc.stdout.read()

    assert proc.returncode == 0, rest[-2000:]
    if not proc.stdout.closed:
        assert "pulse: stopped." in rest
        assert "Traceback" not in rest
    deadline = time.monotonic() + 5
    while running(children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert running(children) == []
    assert list((tmp_path / "tmp").iterdir()) == []
