"""Offline replay: the same pure core over a history of events, in event time, with no broker.

The clock is the event stream's watermark (the latest event time read). As it passes, the
inactivity timers fire exactly as the live worker's ticks make them fire: every user whose next
checkpoint is due is swept, taken from a due-time heap. Because the core evaluates decisions
at checkpoints, the outputs and their idempotency keys are the ones the live pipeline emits
for the same input, whatever the tick cadence.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from streams.core.checkpoints import NEVER
from streams.core.contract import InvalidEvent, Reason, parse_event
from streams.core.engine import Result, Status, apply_event, sweep
from streams.core.eventtime import DAY_MS
from streams.core.lifecycle import Stage
from streams.core.outputs import Output
from streams.core.policy import Policy
from streams.core.state import UserState

# A record as it would arrive on the topic: (key or None, value bytes).
Record = tuple[bytes | None, bytes]


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
    # per user, the times of their activity (non-passive events), for outcome evaluation
    activity: dict[str, list[int]] = field(default_factory=dict)
    first_ts: int | None = None
    watermark: int | None = None


class Replayer:
    """Feeds records through the core; call `feed` per record, then `finish`."""

    def __init__(self, policy: Policy, now_ms: int) -> None:
        self.policy = policy
        self.now_ms = now_ms
        self.run = ReplayRun()
        self._due: list[tuple[int, str]] = []
        self._stages: Counter[str] = Counter()

    def feed(self, key: bytes | None, value: bytes, offset: int) -> None:
        """One record of the input, at position `offset` of the file."""
        run, policy = self.run, self.policy
        try:
            ev = parse_event(
                value,
                key,
                now_ms=self.now_ms,
                min_ts_ms=policy.min_valid_ts_ms,
                max_future_skew_ms=int(policy.max_future_skew_seconds * 1000),
                max_bytes=1 << 20,
            )
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
        new = result.state
        run.states[new.user_id] = new
        if new.stage:
            self._stages[new.stage] += 1
        emitted = max(emitted, run.watermark or emitted)
        run.outputs.extend((o, emitted) for o in result.outputs)
        if new.next_check < NEVER and (old is None or old.next_check != new.next_check):
            heapq.heappush(self._due, (new.next_check, new.user_id))


def replay(
    records: Iterable[Record],
    policy: Policy,
    *,
    now_ms: int,
    until: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> ReplayRun:
    """Replay `records` in file order; `now_ms` bounds timestamps from the future."""
    replayer = Replayer(policy, now_ms)
    for offset, (key, value) in enumerate(records):
        replayer.feed(key, value, offset)
        if progress is not None and offset % 1000 == 0:
            progress(offset)
    return replayer.finish(until)


__all__ = ["Record", "ReplayRun", "Replayer", "replay", "Reason"]
