"""Offline replay: the same pure core over a history of events, in event time, with no broker.

`replay` first puts the history in event-time order (streams/offline/ordering.py), so a file in
customer order, shuffled or sorted gives the same run: the same outputs, byte for byte, and the
same final states. The clock is then the watermark (the latest event time read). As it passes,
the inactivity timers fire exactly as the live worker's ticks make them fire: every user whose
next checkpoint is due is swept, taken from a due-time heap. Because the core evaluates
decisions at checkpoints, the outputs and their idempotency keys are the ones the live pipeline
emits for the same input published in event-time order, whatever the tick cadence.

A history is judged by what it is: any event time a calendar date can name is accepted (the
live pipeline's floor and its bound against the wall clock are there to catch broken senders).
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from streams.core import retention
from streams.core.checkpoints import NEVER
from streams.core.contract import Event, InvalidEvent, Reason, parse_event
from streams.core.engine import Result, Status, apply_event, sweep
from streams.core.eventtime import DAY_MS, parse_ts
from streams.core.lifecycle import Stage
from streams.core.outputs import Output
from streams.core.policy import Policy
from streams.core.state import UserState
from streams.offline.ordering import DEFAULT_RUN_RECORDS, Entry, entry, in_event_time

# A record as it would arrive on the topic: (key or None, value bytes).
Record = tuple[bytes | None, bytes]

# Event times a replay accepts: RFC 3339's years 0001 to 9999, a day either side for UTC
# offsets. Wider than the live bounds on purpose (a 1997 order history is valid input), but
# bounded, since every day between two event times is a step of the watermark.
MIN_REPLAY_TS_MS = parse_ts("0001-01-01T00:00:00Z") - DAY_MS
MAX_REPLAY_TS_MS = parse_ts("9999-12-31T23:59:59.999Z") + DAY_MS
_MAX_RECORD_BYTES = 1 << 20

# A replay that rejects more than this fraction of its records (dead letters among all records
# read) is refused: its outputs would describe a history other than the one given, which
# usually means a wrong column mapping or time format rather than a few bad senders.
MAX_REJECTED_FRACTION = 0.5


class ReplayRefused(Exception):
    """The run finished but its result must not be trusted; `code` says why
    ("empty_history" or "mostly_rejected"), the message what to check."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class ReplayRun:
    """Everything a replay produced. `outputs` are in emission order, each with the watermark
    at which it was emitted (the replay's emitted_at)."""

    outputs: list[tuple[Output, int]] = field(default_factory=list)
    dead_letters: Counter[str] = field(default_factory=Counter)
    events: int = 0
    duplicates: int = 0
    states: dict[str, UserState] = field(default_factory=dict)
    # users per stage at the end of each UTC day (day number -> counts)
    populations: dict[int, dict[str, int]] = field(default_factory=dict)
    # users per RFM segment at the end of each UTC day (segments with users only)
    rfm_populations: dict[int, dict[str, int]] = field(default_factory=dict)
    # per user, the times of their activity (non-passive events), for outcome evaluation
    activity: dict[str, list[int]] = field(default_factory=dict)
    # the retention cohorts' counts of the current states (streams.core.retention cells)
    retention: Counter[retention.Cell] = field(default_factory=Counter)
    first_ts: int | None = None
    watermark: int | None = None


def parse_record(key: bytes | None, value: bytes) -> Event:
    """One history record as an event, under the replay's bounds (see MIN_REPLAY_TS_MS).

    Raises InvalidEvent with the reason a dead letter would carry.
    """
    return parse_event(
        value,
        key,
        now_ms=0,
        min_ts_ms=MIN_REPLAY_TS_MS,
        max_future_skew_ms=MAX_REPLAY_TS_MS,
        max_bytes=_MAX_RECORD_BYTES,
    )


class Replayer:
    """Feeds records through the core in the order given; call `feed` per record (in event
    time: a record older than its user's clock by more than the allowed lateness is a
    `too_late` dead letter), then `finish`. `replay` sorts a history and drives this.

    `now_ms` is accepted for callers written when the wall clock bounded a replay's event
    times; it no longer does.
    """

    def __init__(self, policy: Policy, now_ms: int | None = None) -> None:
        self.policy = policy
        self.run = ReplayRun()
        self._due: list[tuple[int, str]] = []
        self._stages: Counter[str] = Counter()
        self._rfm: Counter[str] = Counter()

    def feed(self, key: bytes | None, value: bytes, offset: int) -> None:
        """One record of the input, at position `offset` of the stream fed (offsets must
        increase: a record at or before an offset already applied for its user is ignored
        as a redelivery, as in the live worker)."""
        run, policy = self.run, self.policy
        try:
            ev = parse_record(key, value)
        except InvalidEvent as exc:
            run.dead_letters[exc.reason] += 1
            return
        self.advance(ev.ts)
        try:
            result = apply_event(run.states.get(ev.user_id), ev, policy, 0, offset)
        except InvalidEvent as exc:
            run.dead_letters[exc.reason] += 1
            return
        if result.status == Status.DUPLICATE:
            run.duplicates += 1
        else:
            run.events += 1
            if ev.type not in policy.passive_types:
                run.activity.setdefault(ev.user_id, []).append(ev.ts)
        self._take(result, ev.ts)

    def advance(self, ts: int) -> None:
        """Move the watermark to `ts` (never back), firing the timers that fall due."""
        run = self.run
        if run.watermark is None:
            run.watermark = run.first_ts = ts
            return
        if ts <= run.watermark:
            return
        # Users per stage at the end of every day the watermark leaves behind.
        day_end = (run.watermark // DAY_MS + 1) * DAY_MS
        while day_end <= ts:
            self._fire(day_end - 1)
            run.populations[day_end // DAY_MS - 1] = {s: self._stages[s] for s in Stage.ALL}
            run.rfm_populations[day_end // DAY_MS - 1] = {k: n for k, n in self._rfm.items() if n}
            day_end += DAY_MS
        self._fire(ts)
        run.watermark = ts

    def finish(self, until: int | None = None) -> ReplayRun:
        """Let event time run to `until` (default: the last event time) and return the run."""
        if until is not None and self.run.watermark is not None:
            self.advance(until)
        for user, times in self.run.activity.items():
            times.sort()
            self.run.activity[user] = times
        return self.run

    def _fire(self, now: int) -> None:
        states = self.run.states
        while self._due and self._due[0][0] <= now:
            due, user = heapq.heappop(self._due)
            state = states.get(user)
            if state is None or state.next_check != due:
                continue  # a stale heap entry: the user's checkpoint moved
            self._take(sweep(state, now, self.policy), now)

    def _take(self, result: Result, emitted: int) -> None:
        run = self.run
        old = run.states.get(result.state.user_id)
        if old is not None and old.stage:
            self._stages[old.stage] -= 1
        if old is not None and old.rfm_segment:
            self._rfm[old.rfm_segment] -= 1
        new = result.state
        if new.rfm_segment:
            self._rfm[new.rfm_segment] += 1
        run.states[new.user_id] = new
        if new.stage:
            self._stages[new.stage] += 1
        if not retention.same_cohorts(old, new):
            run.retention.subtract(retention.cells(old))
            run.retention.update(retention.cells(new))
        emitted = max(emitted, run.watermark or emitted)
        run.outputs.extend((o, emitted) for o in result.outputs)
        if new.next_check < NEVER and (old is None or old.next_check != new.next_check):
            heapq.heappush(self._due, (new.next_check, new.user_id))


def _entries(records: Iterable[Record], dead_letters: Counter[str]) -> Iterator[Entry]:
    """The records that parse, keyed for sorting; the others counted by reason."""
    for key, value in records:
        try:
            ev = parse_record(key, value)
        except InvalidEvent as exc:
            dead_letters[exc.reason] += 1
            continue
        yield entry(ev.ts, ev.user_id, ev.event_id, key, value)


def replay(
    records: Iterable[Record],
    policy: Policy,
    *,
    now_ms: int | None = None,
    until: int | None = None,
    progress: Callable[[int], None] | None = None,
    run_records: int = DEFAULT_RUN_RECORDS,
    tmp_dir: Path | None = None,
) -> ReplayRun:
    """Replay `records` in event time, whatever their order in the input.

    Records that do not parse are dead letters (counted by reason, wherever they stand);
    the rest are sorted by (event time, user id, event id, value, key) and fed as offsets
    0, 1, 2, ... of one partition: the history as if it had been published in event-time
    order, so a repeated event id is a duplicate and nothing is taken for a redelivery.
    More than `run_records` records are sorted externally in temporary files under
    `tmp_dir` (see streams.offline.ordering.in_event_time), removed when the replay ends.
    `until` lets event time run on after the last event; `now_ms` is ignored (see Replayer).
    Raises OSError if the temporary files cannot be written.
    """
    replayer = Replayer(policy)
    valid = _entries(records, replayer.run.dead_letters)
    with in_event_time(valid, run_records=run_records, tmp_dir=tmp_dir) as ordered:
        for offset, e in enumerate(ordered):
            replayer.feed(*e.record, offset)
            if progress is not None and offset % 1000 == 0:
                progress(offset)
    return replayer.finish(until)


def ensure_usable(events: int, duplicates: int, dead_letters: Mapping[str, int]) -> None:
    """Refuse a run that read nothing, or rejected most of what it read.

    Raises ReplayRefused ("empty_history", or "mostly_rejected" when more than
    MAX_REJECTED_FRACTION of the records are dead letters, with the reasons and counts).
    """
    rejected = sum(dead_letters.values())
    total = events + duplicates + rejected
    if total == 0:
        raise ReplayRefused(
            "empty_history",
            "the history holds no records: check the file (and, for a CSV, that rows follow "
            "the header)",
        )
    if rejected > MAX_REJECTED_FRACTION * total:
        reasons = ", ".join(
            f"{reason} {n}" for reason, n in sorted(dead_letters.items(), key=lambda r: -r[1])
        )
        raise ReplayRefused(
            "mostly_rejected",
            f"{rejected} of {total} records ({rejected / total:.0%}) were rejected, more than "
            f"the {MAX_REJECTED_FRACTION:.0%} a replay accepts: {reasons}. Check the time "
            "format and, for a CSV, the column mapping (--columns, --time-col, --delimiter)",
        )


__all__ = [
    "MAX_REJECTED_FRACTION",
    "MAX_REPLAY_TS_MS",
    "MIN_REPLAY_TS_MS",
    "Reason",
    "Record",
    "ReplayRefused",
    "ReplayRun",
    "Replayer",
    "ensure_usable",
    "parse_record",
    "replay",
]
