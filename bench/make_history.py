"""Write a deterministic history file in the input contract, for timing `pulse replay`.

The records are the demo's personas (streams.local.demo) laid out from a fixed start in the past,
in send order, malformed records and re-sent duplicates included, so a replay of the file
exercises every path the live worker sees. 320 users give about 70k records.

    .venv/bin/python bench/make_history.py --users 320 --out /tmp/history-70k.jsonl
    time .venv/bin/pulse replay /tmp/history-70k.jsonl --out /tmp/replay-70k --quiet
"""

from __future__ import annotations

import argparse
from pathlib import Path

from streams.core.eventtime import parse_ts
from streams.local.demo import build_schedule

# A fixed start keeps the file identical from run to run; it must lie in the past, because
# replay sends events from the future of its wall clock to the dead letters.
START = "2026-01-01T00:00:00Z"


def write_history(path: Path, users: int, seed: int) -> int:
    """Write the demo plan for `users` users to `path` as JSONL; return the record count."""
    schedule = build_schedule(users, seed, parse_ts(START))
    with path.open("wb") as f:
        for _, _, value in schedule:
            f.write(value + b"\n")
    return len(schedule)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=320, help="users (320 give ~70k records)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, required=True, help="the JSONL file to write")
    args = parser.parse_args()
    count = write_history(args.out, args.users, args.seed)
    print(f"{count} records of {args.users} users written to {args.out}")


if __name__ == "__main__":
    main()
