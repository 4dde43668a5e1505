"""The peer contenders, Quix Streams and Bytewax doing the naive job: which interpreter runs
them, whether it has their packages, and how they are started.

They run in an interpreter of their own (--peer-python, default the harness's): quixstreams
3.28 pins pydantic, pydantic-settings and confluent-kafka below what this project pins, so
they cannot live in .venv (bench/requirements-peers.txt says how to make that venv). Without
their packages a peer is skipped with a message saying so; the rest of the run goes on.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.contenders import Running
from bench.supervisor import Supervisor
from streams.local.embedded import free_port

# The input topic's configs: Quix sizes its changelog topics from the input topic's
# retention.ms and retention.bytes, and Tansu's DescribeConfigs returns only the configs a
# topic was created with. -1 (unlimited) is what Tansu does anyway.
INPUT_TOPIC_CONFIGS = {"retention.ms": "-1", "retention.bytes": "-1"}

INSTALL_HINT = (
    "python3 -m venv /tmp/benchvenv && /tmp/benchvenv/bin/pip install -r "
    "bench/requirements-peers.txt, then --peer-python /tmp/benchvenv/bin/python"
)


@dataclass(frozen=True)
class Peer:
    """One peer contender: its phase name, program, the packages it imports and the flag that
    takes its state directory."""

    name: str
    module: str
    imports: tuple[str, ...]
    state_flag: str


PEERS = {
    "quix": Peer(
        "quix",
        "bench.quix_app",
        ("quixstreams", "prometheus_client"),
        "--state-dir",
    ),
    "bytewax": Peer(
        "bytewax",
        "bench.bytewax_flow",
        ("bytewax.connectors.kafka", "prometheus_client"),
        "--recovery-dir",
    ),
}


def missing(peer: Peer, python: str) -> str | None:
    """Why `python` cannot run `peer` (None when it can)."""
    code = "; ".join(f"import {m}" for m in peer.imports)
    try:
        done = subprocess.run(
            [python, "-c", code], capture_output=True, text=True, timeout=120, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{python} does not run: {exc}"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        return f"{python} cannot import {', '.join(peer.imports)} ({last}); {INSTALL_HINT}"
    return None


def start_peer(
    sup: Supervisor,
    peer: Peer,
    python: str,
    bootstrap: str,
    topic: str,
    max_seconds: float,
    data_dir: Path,
    suffix: str = "",
) -> Running:
    """Start `peer` on `topic` in its own consumer group `bench-<name><suffix>`, its state
    under `data_dir`/<name><suffix>; its consumed counter is `bench_events_consumed_total`."""
    port, group = free_port(), f"bench-{peer.name}{suffix}"
    state = data_dir / f"{peer.name}{suffix}"
    state.mkdir(parents=True, exist_ok=True)
    argv = [python, "-m", peer.module, "--bootstrap", bootstrap, "--topic", topic]
    argv += ["--group", group, "--metrics-port", str(port), "--max-seconds", str(max_seconds)]
    argv += [peer.state_flag, str(state)]
    # argv[0] is the peer interpreter, not "-m": spawn runs it as given, in this checkout.
    proc = sup.spawn(peer.name, argv, cwd=Path.cwd())
    return Running(peer.name, proc, port, "bench_events_consumed_total", group)
