"""The benchmark's input: a deterministic stream of `user-events` records (seeded numpy draws).

Every contender reads the same records, loaded once. The mix is what a consumer app sends:
each user's first event is a `signup`, then mostly `page_view` and `session_start`, some
`purchase` (with an amount), `points_earned` (points, not spend), `custom` and an unknown
type. Activity per user is skewed (lognormal weights: a few heavy users, a long tail with one
or two events). Event times lie in the `days` before `end_ms`; records are sent in event-time
order except for `late_share` of them, which arrive up to `max_delay_ms` late (well inside the
policy's 48 h allowed lateness). The key of every record is its user id.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import msgspec
import numpy as np

HOUR_MS = 3_600_000
DAY_MS = 86_400_000

# (type, share of the non-signup events); "search" is a type the policy counts as "other".
TYPE_MIX: tuple[tuple[str, float], ...] = (
    ("page_view", 0.62),
    ("session_start", 0.20),
    ("points_earned", 0.08),
    ("purchase", 0.05),
    ("custom", 0.03),
    ("search", 0.02),
)
_PAGES = ("/", "/home", "/search", "/pricing", "/catalog", "/catalog/item", "/cart", "/account")
_SKUS = ("starter-pack", "monthly-plan", "annual-plan", "gift-card", "add-on", "bundle")
_DEVICES = ("ios", "android", "web", "web")


def default_end_ms(now_ms: int | None = None) -> int:
    """The latest event time: the start of the current UTC hour, minus one hour.

    Runs within the same hour get byte-identical input; the events are always in the past.
    """
    now = int(time.time() * 1000) if now_ms is None else now_ms
    return (now // HOUR_MS - 1) * HOUR_MS


@dataclass(frozen=True)
class WorkloadSpec:
    """What to generate. Same spec, same records (numpy's PCG64 is stable across platforms)."""

    events: int
    users: int
    end_ms: int
    seed: int = 42
    days: int = 28
    late_share: float = 0.03
    max_delay_ms: int = 2 * HOUR_MS
    id_prefix: str = "b"

    def __post_init__(self) -> None:
        if self.users < 1 or self.events < self.users:
            raise ValueError("need at least one user and at least one event per user")


def user_id(index: int) -> str:
    return f"u{index:07d}"


class Plan:
    """The drawn workload as arrays, in send order (index i is the i-th record to send)."""

    def __init__(self, spec: WorkloadSpec) -> None:
        self.spec = spec
        rng = np.random.default_rng(spec.seed)
        n, u = spec.events, spec.users
        # Events per user: one each (the signup), the rest shared by skewed weights.
        weights = rng.lognormal(0.0, 1.2, size=u)
        extra = rng.multinomial(n - u, weights / weights.sum())
        per_user = extra + 1
        users = np.repeat(np.arange(u, dtype=np.int64), per_user)
        span = spec.days * DAY_MS
        start = spec.end_ms - span
        # A user's first event (the signup) anywhere in the span, the others after it.
        first = start + (rng.random(u) * (span - HOUR_MS)).astype(np.int64)
        frac = rng.random(n)
        ts = first[users] + (frac * (spec.end_ms - first[users])).astype(np.int64)
        is_first = np.zeros(n, dtype=bool)
        is_first[np.concatenate(([0], np.cumsum(per_user)[:-1]))] = True
        ts[is_first] = first
        names = [t for t, _ in TYPE_MIX]
        shares = np.array([s for _, s in TYPE_MIX])
        kinds = rng.choice(len(names), size=n, p=shares / shares.sum())
        kinds[is_first] = -1  # signup
        amounts = np.round(rng.lognormal(np.log(30.0), 1.0, size=n), 2)
        points = rng.integers(10, 500, size=n)
        extra_pick = rng.integers(0, 1 << 30, size=n)
        # Send order: event time, plus a delay for the late share.
        delay = np.where(
            rng.random(n) < spec.late_share,
            (rng.random(n) * spec.max_delay_ms).astype(np.int64),
            0,
        )
        order = np.argsort(ts + delay, kind="stable")
        self.users = users[order]
        self.ts = ts[order]
        self.kinds = kinds[order]
        self.amounts = amounts[order]
        self.points = points[order]
        self.pick = extra_pick[order]
        self.type_names = names
        self.per_user = per_user

    def __len__(self) -> int:
        return len(self.users)

    def records(self, start: int = 0, stop: int | None = None) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) records in send order; event ids are `<prefix>-<send index>`."""
        enc = msgspec.json.Encoder()
        stop = len(self) if stop is None else stop
        prefix = self.spec.id_prefix
        users, ts, kinds = self.users.tolist(), self.ts.tolist(), self.kinds.tolist()
        amounts, points, pick = self.amounts.tolist(), self.points.tolist(), self.pick.tolist()
        for i in range(start, stop):
            uid = user_id(users[i])
            doc = event_doc(
                f"{prefix}-{i}", uid, kinds[i], ts[i], amounts[i], points[i], pick[i], self
            )
            yield uid.encode(), enc.encode(doc)

    def type_counts(self) -> dict[str, int]:
        values, counts = np.unique(self.kinds, return_counts=True)
        return {
            ("signup" if v < 0 else self.type_names[v]): int(c)
            for v, c in zip(values.tolist(), counts.tolist(), strict=True)
        }

    def out_of_order(self) -> int:
        """Records whose event time is earlier than a record sent before them."""
        ts = self.ts
        return int(np.count_nonzero(ts < np.maximum.accumulate(ts)))


def event_doc(
    event_id: str,
    uid: str,
    kind: int,
    ts: int,
    amount: float,
    points: int,
    pick: int,
    plan: Plan,
) -> dict[str, object]:
    """One event in the input contract (streams/core/schemas/user-event.schema.json)."""
    if kind < 0:
        return {"event_id": event_id, "user_id": uid, "type": "signup", "ts": ts}
    etype = plan.type_names[kind]
    doc: dict[str, object] = {"event_id": event_id, "user_id": uid, "type": etype, "ts": ts}
    if etype == "page_view":
        doc["properties"] = {"page": _PAGES[pick % len(_PAGES)]}
    elif etype == "session_start":
        doc["properties"] = {"device": _DEVICES[pick % len(_DEVICES)]}
    elif etype == "purchase":
        doc["amount"] = amount
        doc["properties"] = {"sku": _SKUS[pick % len(_SKUS)], "currency": "EUR"}
    elif etype == "points_earned":
        doc["amount"] = points
    return doc


def live_event(
    event_id: str, user_index: int, ts: int, draw: int, plan: Plan
) -> tuple[bytes, bytes]:
    """A record for the latency phase: an existing user, event time `ts` (now)."""
    etype = "purchase" if draw % 20 == 0 else ("page_view", "session_start")[draw % 2]
    kind = plan.type_names.index(etype)
    uid = user_id(user_index)
    doc = event_doc(event_id, uid, kind, ts, 19.9, 50, draw, plan)
    return uid.encode(), msgspec.json.encode(doc)
