"""What `pulse run` keeps between runs in the project's local state folder (.pulse/run/).

Only what can survive a restart: the ports it listened on (reused when they are free) and the
demo API key (so a restarted stack answers to the key a browser or script already has). The
embedded broker and Redis keep their data in memory, so every topic, user state and the view
start empty on each run. `pulse send` reads the same file to find the running API and its key,
and `pulse env` prints them as shell variables.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
from dataclasses import dataclass, field
from pathlib import Path

RUN_DIR = Path(".pulse/run")
STATE_FILE = "state.json"
PORT_NAMES = ("broker", "redis", "api", "metrics")


@dataclass
class LocalState:
    """The demo API key and the last port of each server (`PORT_NAMES`)."""

    api_key: str = field(default_factory=lambda: "demo-" + secrets.token_urlsafe(12))
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def api_url(self) -> str | None:
        port = self.ports.get("api")
        return f"http://127.0.0.1:{port}" if port else None


def load_state(run_dir: Path = RUN_DIR) -> LocalState | None:
    """The saved state, or None when there is none or it cannot be read (a fresh start)."""
    try:
        doc = json.loads((run_dir / STATE_FILE).read_text())
        key = doc["api_key"]
        ports = {
            name: int(port)
            for name, port in doc.get("ports", {}).items()
            if name in PORT_NAMES and 0 < int(port) < 65_536
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if not isinstance(key, str) or not key:
        return None
    return LocalState(api_key=key, ports=ports)


def save_state(state: LocalState, run_dir: Path = RUN_DIR) -> Path:
    """Write the state readable by the owner only (it holds an API key); returns the path."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / STATE_FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"api_key": state.api_key, "ports": state.ports}, out, indent=2)
        out.write("\n")
    os.replace(tmp, path)
    return path


def shell_assignments(state: LocalState) -> str:
    """`API_URL=...` and `KEY=...` lines for `eval` in a POSIX shell, each value quoted when
    it needs to be. Raises ValueError when the state has no API port (no stack started)."""
    if state.api_url is None:
        raise ValueError("the saved state has no API port")
    return f"API_URL={shlex.quote(state.api_url)}\nKEY={shlex.quote(state.api_key)}"
