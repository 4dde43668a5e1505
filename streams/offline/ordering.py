"""Event-time order for a replay's records: an in-memory sort, or an external merge sort of
runs spilled to temporary files when the history holds more records than one run.

The order is total and depends on the records' content only (event time, user id, event id,
then the raw value and key bytes), so a history gives the same sequence whatever order its
file lists the records in.
"""

from __future__ import annotations

import heapq
import struct
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import BinaryIO, NamedTuple

import msgspec

# Records sorted in memory at a time. A run of half a million typical events (a few hundred
# bytes each, with the sort key) takes a few hundred MB; a history larger than one run is
# sorted externally, one temporary file per run.
DEFAULT_RUN_RECORDS = 500_000

# A run file is a sequence of frames: a 4-byte big-endian length, then one msgpack entry.
_FRAME = struct.Struct(">I")


class Entry(NamedTuple):
    """One valid record with its sort key in front; tuples compare field by field, so the
    order of entries is the order of their fields as listed here."""

    ts: int
    user_id: str
    event_id: str
    value: bytes
    # The record key last: None sorts before any bytes (has_key False), b"" is a key.
    has_key: bool
    key: bytes

    @property
    def record(self) -> tuple[bytes | None, bytes]:
        """The record as it was read: (key or None, value)."""
        return (self.key if self.has_key else None), self.value


def entry(ts: int, user_id: str, event_id: str, key: bytes | None, value: bytes) -> Entry:
    """The entry of a record whose event time, user and event id are known."""
    return Entry(ts, user_id, event_id, value, key is not None, key or b"")


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Entry)


def _read_run(f: BinaryIO) -> Iterator[Entry]:
    while header := f.read(_FRAME.size):
        (size,) = _FRAME.unpack(header)
        yield _decoder.decode(f.read(size))


# Run files merged at once. Past it, runs are first merged into longer runs, so that a tiny
# run size or a huge history does not hold more files open than the process may.
_MAX_FAN_IN = 128


class _Spill:
    """Sorted runs written to files in one temporary directory, made on the first run."""

    def __init__(self, stack: ExitStack, tmp_dir: Path | None) -> None:
        self._stack = stack
        self._tmp_dir = tmp_dir
        self._directory: Path | None = None
        self._made = 0
        self.files: list[Path] = []

    def _next_path(self) -> Path:
        if self._directory is None:
            made = tempfile.TemporaryDirectory(prefix="pulse-replay-", dir=self._tmp_dir)
            self._directory = Path(self._stack.enter_context(made))
        self._made += 1
        return self._directory / f"run-{self._made:06d}.msgpack"

    def write(self, run: list[Entry]) -> None:
        run.sort()
        self.files.append(self._write(run))

    def _write(self, entries: Iterable[Entry]) -> Path:
        path = self._next_path()
        with path.open("wb") as f:
            for e in entries:
                data = _encoder.encode(e)
                f.write(_FRAME.pack(len(data)))
                f.write(data)
        return path

    def merged(self) -> Iterator[Entry]:
        """All runs merged; only the last merge stays open (until the stack closes)."""
        while len(self.files) > _MAX_FAN_IN:
            group, self.files = self.files[:_MAX_FAN_IN], self.files[_MAX_FAN_IN:]
            with ExitStack() as opened:
                readers = [_read_run(opened.enter_context(p.open("rb"))) for p in group]
                self.files.append(self._write(heapq.merge(*readers)))
            for p in group:
                p.unlink()
        readers = [_read_run(self._stack.enter_context(p.open("rb"))) for p in self.files]
        return heapq.merge(*readers)


@contextmanager
def in_event_time(
    entries: Iterable[Entry],
    *,
    run_records: int = DEFAULT_RUN_RECORDS,
    tmp_dir: Path | None = None,
) -> Iterator[Iterator[Entry]]:
    """Within the `with` block, `entries` in ascending order.

    Up to `run_records` entries are sorted in memory. Beyond that each full run is sorted and
    written to a file in a fresh temporary directory (under `tmp_dir`, default the system's,
    which TMPDIR sets), and the runs are merged with heapq.merge. Leaving the block removes
    the directory, also when the block or reading `entries` raises. Raises ValueError if
    `run_records` is not positive, OSError if the run files cannot be written.
    """
    if run_records < 1:
        raise ValueError(f"run_records must be at least 1, not {run_records}")
    with ExitStack() as stack:
        spill = _Spill(stack, tmp_dir)
        run: list[Entry] = []
        for e in entries:
            run.append(e)
            if len(run) >= run_records:
                spill.write(run)
                run = []
        if not spill.files:
            run.sort()
            yield iter(run)
            return
        if run:
            spill.write(run)
            run = []
        yield spill.merged()


__all__ = ["DEFAULT_RUN_RECORDS", "Entry", "entry", "in_event_time"]
