"""Every process the benchmark starts, and their teardown (on success, failure or Ctrl-C).

Children run in their own session (a terminal's Ctrl-C reaches only the harness, which then
stops them in order) and get SIGKILL from the kernel if the harness itself dies
(PR_SET_PDEATHSIG), so nothing outlives a run.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from streams.local.embedded import Server, terminate

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: teardown in `Supervisor.stop_all` still runs


class Supervisor:
    """Starts child processes with their logs in `log_dir` and stops whatever is left."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []
        self.servers: list[Server] = []
        self.logs: dict[int, Path] = {}

    def spawn(
        self,
        name: str,
        argv: Sequence[str],
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start `argv` (a Python module when argv[0] == '-m'); stdout+stderr to <name>.log."""
        if argv[0] == "-m":
            argv = [sys.executable, *argv]
        path = self.log_dir / f"{name}.log"
        k = 1
        while path.exists():  # a name started again (python -m bench --rounds) keeps both logs
            k += 1
            path = self.log_dir / f"{name}.{k}.log"
        log = open(path, "wb")  # noqa: SIM115 - the child owns it from here
        try:
            proc = subprocess.Popen(
                list(argv),
                env=env if env is not None else dict(os.environ),
                cwd=cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                # Only a prctl call runs between fork and exec; spawn from the main thread.
                preexec_fn=_die_with_parent,
            )
        finally:
            log.close()
        self.procs.append(proc)
        self.logs[proc.pid] = path
        return proc

    def log_of(self, proc: subprocess.Popen[bytes]) -> Path:
        return self.logs[proc.pid]

    def log_tail(self, proc: subprocess.Popen[bytes], chars: int = 3000) -> str:
        try:
            return self.log_of(proc).read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def add_server(self, server: Server) -> None:
        self.servers.append(server)

    @staticmethod
    def stop(proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
        terminate(proc, timeout)

    @staticmethod
    def kill9(proc: subprocess.Popen[bytes]) -> float:
        """SIGKILL; returns the monotonic time it was sent."""
        at = time.monotonic()
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        return at

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            try:
                terminate(proc, 10)
            except OSError:
                pass
        for server in reversed(self.servers):
            try:
                server.stop()
            except OSError:
                pass
