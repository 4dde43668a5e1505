"""What a worker keeps in memory about one table partition: who falls due when, and how many
users are in each stage, tier and RFM segment, and their recall tallies.

Derived from the table (rebuilt after every rebalance), so it needs no changelog of its own. The
due-time heap makes a sweep cost what is due, not what is known: entries are invalidated
lazily (a user's latest checkpoint is in `next_check`; older heap entries are skipped when
popped) and the heap is compacted when stale entries outnumber live ones.
"""

from __future__ import annotations

import heapq
from collections import Counter

from streams.core.checkpoints import NEVER
from streams.core.recall import cell_counts
from streams.core.state import Summary


class PartitionIndex:
    """Due times and stage/tier counts of the users of one partition."""

    def __init__(self) -> None:
        self.next_check: dict[bytes, int] = {}
        self._heap: list[tuple[int, bytes]] = []
        self.stages: Counter[str] = Counter()
        self.tiers: Counter[str] = Counter()
        self.rfm: Counter[str] = Counter()  # RFM segment ("": none) -> users
        # (group, tier, reason, outcome) -> warnings: the recall tallies of these users.
        self.recall: Counter[tuple[str, str, str, str]] = Counter()

    def __len__(self) -> int:
        return len(self.next_check)

    # A rebuild after a rebalance: `load` every user of the partition, then `seal` once. The
    # heap is made once at the end: with due times pushed one by one, a rebuild over 1M users
    # took 7.0-8.0 s, with the heap made at the end (and `decode_summary`) 3.8-4.3 s.
    def load(self, key: bytes, user: Summary) -> None:
        """Count `user` and note its due time, without the heap (see `seal`)."""
        self.count(None, user)
        if user.next_check < NEVER:
            self.next_check[key] = user.next_check

    def seal(self) -> PartitionIndex:
        """Make the heap of the due times `load`ed; the index is then ready."""
        self._compact()
        return self

    def put(self, key: bytes, old: Summary | None, new: Summary | None) -> None:
        """Record that `key`'s state went from `old` to `new` (None: absent or erased)."""
        self.count(old, new)
        self.schedule(key, new.next_check if new is not None else NEVER)

    def count(self, old: Summary | None, new: Summary | None) -> None:
        """Move one user between the stage, tier and RFM segment counts and the recall
        tallies."""
        if old is not None:
            self.stages[old.stage] -= 1
            self.tiers[old.tier] -= 1
            self.rfm[old.rfm_segment] -= 1
        if new is not None:
            self.stages[new.stage] += 1
            self.tiers[new.tier] += 1
            self.rfm[new.rfm_segment] += 1
        before = old.recall_tally if old is not None else ()
        after = new.recall_tally if new is not None else ()
        if before is not after and before != after:  # unchanged tallies are the same tuple
            self.recall.subtract(cell_counts(before))
            self.recall.update(cell_counts(after))

    def schedule(self, key: bytes, next_check: int) -> None:
        """`key` falls due at `next_check` (NEVER: not at all)."""
        if next_check >= NEVER:
            self.next_check.pop(key, None)
            return
        if self.next_check.get(key) != next_check:
            self.next_check[key] = next_check
            heapq.heappush(self._heap, (next_check, key))
            if len(self._heap) > 2 * len(self.next_check) + 1024:
                self._compact()

    def pop_due(self, now: int) -> list[bytes]:
        """Users whose next checkpoint is at or before `now`, earliest first; they are not due
        again until `schedule`d."""
        heap, current = self._heap, self.next_check
        due: list[bytes] = []
        while heap and heap[0][0] <= now:
            at, key = heapq.heappop(heap)
            if current.get(key) == at:
                del current[key]
                due.append(key)
        return due

    def _compact(self) -> None:
        self._heap = [(t, k) for k, t in self.next_check.items()]
        heapq.heapify(self._heap)
