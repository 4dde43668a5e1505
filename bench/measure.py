"""What the benchmark reads off a running process: CPU seconds and memory from /proc, and
Prometheus metrics from its /metrics endpoint (counters, histogram quantiles)."""

from __future__ import annotations

import asyncio
import os
import re
from dataclasses import dataclass

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcSample:
    cpu_seconds: float  # user + system, this process only
    rss_bytes: int  # VmRSS now
    peak_rss_bytes: int  # VmHWM: the high-water mark since the process started


def sample(pid: int) -> ProcSample:
    """Read /proc/<pid>/stat and /proc/<pid>/status. Raises OSError once the process is gone."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read().decode()
    # The command name may hold spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    rss = hwm = 0
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f.read().decode().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) * 1024
    return ProcSample((utime + stime) / _TICKS, rss, hwm)


_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


Metrics = dict[str, float]


def parse_metrics(text: str) -> Metrics:
    """Prometheus text format -> {'name{labels}': value} (labels as written, or bare name)."""
    out: Metrics = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        if m:
            name, labels, value = m.group(1), m.group(2) or "", m.group(3)
            try:
                out[name + labels] = float(value)
            except ValueError:
                continue
    return out


async def scrape(port: int, timeout: float = 5.0) -> Metrics:
    """GET http://127.0.0.1:<port>/metrics. Raises OSError/TimeoutError when it is not up."""

    async def get() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            await writer.drain()
            return await reader.read()
        finally:
            writer.close()

    raw = await asyncio.wait_for(get(), timeout)
    head, _, body = raw.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.") or b" 200 " not in head.split(b"\r\n", 1)[0] + b" ":
        raise OSError(f"metrics endpoint answered {head[:40]!r}")
    return parse_metrics(body.decode(errors="replace"))


def total(metrics: Metrics, name: str) -> float:
    """Sum of every series of `name` (all label sets)."""
    return sum(v for k, v in metrics.items() if k == name or k.startswith(name + "{"))


def buckets(metrics: Metrics, name: str) -> list[tuple[float, float]]:
    """Cumulative (upper bound, count) pairs of histogram `name`, sorted by bound."""
    out = []
    for k, v in metrics.items():
        if k.startswith(name + "_bucket{"):
            m = re.search(r'le="([^"]+)"', k)
            if m:
                out.append((float(m.group(1)), v))
    return sorted(out)


def bucket_delta(
    before: list[tuple[float, float]], after: list[tuple[float, float]]
) -> list[tuple[float, float]]:
    old = dict(before)
    return [(le, c - old.get(le, 0.0)) for le, c in after]


def quantile(cumulative: list[tuple[float, float]], q: float) -> float | None:
    """Linear interpolation inside the bucket holding the q-quantile (as Prometheus does).

    None when the histogram is empty; the largest finite bound when it falls in +Inf.
    """
    if not cumulative or cumulative[-1][1] <= 0:
        return None
    count = cumulative[-1][1]
    rank = q * count
    prev_le, prev_c = 0.0, 0.0
    for le, c in cumulative:
        if c >= rank:
            if le == float("inf"):
                return prev_le
            if c == prev_c:
                return le
            return prev_le + (le - prev_le) * (rank - prev_c) / (c - prev_c)
        prev_le, prev_c = le, c
    return prev_le


def bucket_bounds(cumulative: list[tuple[float, float]], q: float) -> tuple[float, float] | None:
    """(lower, upper) bound of the bucket holding the q-quantile: what the histogram knows."""
    if not cumulative or cumulative[-1][1] <= 0:
        return None
    rank, prev_le = q * cumulative[-1][1], 0.0
    for le, c in cumulative:
        if c >= rank:
            return prev_le, le
        prev_le = le
    return prev_le, float("inf")


def percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    i = min(len(sorted_values) - 1, max(0, int(round(q * (len(sorted_values) - 1)))))
    return sorted_values[i]
