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


def _write_run(entries: list[Entry], path: Path) -> None:
    entries.sort()
    with path.open("wb") as f:
        for e in entries:
            data = _encoder.encode(e)
            f.write(_FRAME.pack(len(data)))
            f.write(data)


def _read_run(f: BinaryIO) -> Iterator[Entry]:
    while header := f.read(_FRAME.size):
        (size,) = _FRAME.unpack(header)
        yield _decoder.decode(f.read(size))


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
        run: list[Entry] = []
        files: list[Path] = []
        directory: Path | None = None
        for e in entries:
            run.append(e)
            if len(run) >= run_records:
                if directory is None:
                    directory = Path(
                        stack.enter_context(
                            tempfile.TemporaryDirectory(prefix="pulse-replay-", dir=tmp_dir)
                        )
                    )
                files.append(directory / f"run-{len(files):06d}.msgpack")
                _write_run(run, files[-1])
                run = []
        if not files:
            run.sort()
            yield iter(run)
            return
        if run:
            files.append(directory / f"run-{len(files):06d}.msgpack")  # type: ignore[operator]
            _write_run(run, files[-1])
            run = []
        readers = [_read_run(stack.enter_context(p.open("rb"))) for p in files]
        yield heapq.merge(*readers)


__all__ = ["DEFAULT_RUN_RECORDS", "Entry", "entry", "in_event_time"]
