"""Changelog records applied to their table a fetch at a time, during recovery and on standbys.

Faust's recovery loop takes changelog records one at a time: each goes through the conductor
into a queue, the loop takes it with `asyncio.wait_for` (a task per record) and after each
record asks whether recovery is over (two Counters over all partitions). That caps recovery at
~16k records/s here: a worker restarted with 1M users on the memory store, which replays the
whole changelog (Tansu never compacts), spent 118 s reading 1.95M records.

`apply_fetch` does for one fetch of one changelog partition what that loop does per record,
on the bookkeeping the loop reads: records at or below the partition's recovery offset are
skipped, the others go to the table's store in one `apply_changelog_batch` (the call the loop
makes per 1,000 records), and the offset moves to the last one. Recovery's end stays Faust's:
when a partition has caught up with its high water, the consumer also hands the fetch's last
record to the loop, which skips it (already applied) and then runs its own end check.

A changelog of raw bytes (the state table's) is not decoded by Faust either: its decode gives
back the message's own key and value objects, at ~6 µs a record for the event it builds, and a
standby worker reads every record its peers write. The stores read only the key, the value and
the message of what they apply, so `Change` carries those three. Any other changelog is
decoded as Faust would.

Anything unusual goes Faust's way instead (`apply_fetch` returns None): a partition the
recovery does not track, a table with an `on_changelog_event` callback, or records still
waiting in the loop's queue (they must be applied first, in order).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


async def apply_fetch(
    app: Any, tp: Any, records: Sequence[Any], to_message: Callable[[Any, Any], Any]
) -> bool | None:
    """Apply `records` (one fetch of changelog partition `tp`, in offset order) to the table.

    Returns whether the partition has caught up with its recovery high water, or None when
    the records must go Faust's way.
    """
    recovery = app.tables.recovery
    table = recovery.tp_to_table.get(tp)
    if table is None or getattr(table, "_on_changelog_event", None) is not None:
        return None
    if tp in recovery.active_tps:
        offsets, highwaters = recovery.active_offsets, recovery.active_highwaters
    elif tp in recovery.standby_tps:
        offsets, highwaters = recovery.standby_offsets, recovery.standby_highwaters
    else:
        return None
    if not app.tables.changelog_queue.empty():
        return None
    seen = offsets.get(tp)
    fresh = [r for r in records if seen is None or r.offset > seen]
    if fresh:
        recovery.flush_buffers()  # what the loop buffered is older: it goes first
        topic = table.changelog_topic
        if topic.key_serializer == "raw" and topic.value_serializer == "raw":
            table.apply_changelog_batch([Change(to_message(tp, r)) for r in fresh])
        else:
            events = [await topic.decode(to_message(tp, record)) for record in fresh]
            table.apply_changelog_batch([e for e in events if e is not None])
        offsets[tp] = fresh[-1].offset
    highwater = highwaters.get(tp)
    return highwater is not None and offsets[tp] >= highwater


class Change:
    """A changelog record as a table's store applies it: what Faust's decode gives for raw
    bytes (the message's key and value, a tombstone's value None) and the message itself."""

    __slots__ = ("key", "message", "value")

    def __init__(self, message: Any) -> None:
        self.key = message.key
        self.value = message.value
        self.message = message
