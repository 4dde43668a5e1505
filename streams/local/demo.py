"""Demo traffic for `user-events`: a deterministic mix of user personas on an accelerated clock.

Pulse's decisions play out over weeks of event time (a user is at-risk after days of silence,
dormant after a month), so a demo has to compress time to show anything. The generator plans
about 60 virtual days of behaviour for every user up front, then publishes each event when the
shared virtual clock (`streams.core.eventtime.virtual_now`, the origin and rate the worker uses)
reaches it. Events therefore carry their true virtual event time and are never in the future of
the worker's clock, which would reject them.

`pulse run` keeps the demo going until it is stopped (`endless_schedule`): after the first 30
virtual days new users keep arriving, about as many per day as leave the first cohort, each with
a 60-day plan of their own, and a few users who have been gone for a month or more come back
for a while. The event rate therefore stays bounded (at most about 1.5 times the first cohort's)
and every stage keeps being visited, however long the demo runs.

The personas are chosen so that every decision the core makes shows up within the run:

* loyal: active most days (sessions and page views, the odd small purchase), so they settle
  into `active` and stay there;
* declining: daily at first, then visits thin out and stop, so they get churn warnings and
  later go dormant; some come back a month later (`reactivated`);
* churning: a few visits and then silence: at-risk, then dormant;
* big spender: frequent large purchases that pass the silver, gold and platinum thresholds
  (100, 500, 2000 by default) within days, so tiers are upgraded;
* newcomer: sign up part-way through the run, then some stay and some fade.

About 1% of the records are deliberately malformed (cut-off JSON, no `user_id`, a negative
amount) so the dead-letter topic has something in it, and about as many are re-sent copies of
an earlier event (same `event_id`) so duplicate detection is visible. Everything derives from a
seeded `random.Random`, so the same seed gives the same users and the same events.
"""

from __future__ import annotations

import asyncio
import bisect
import heapq
import json
import logging
import math
import random
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer

from streams.core.eventtime import DAY_MS, HOUR_MS, virtual_now

log = logging.getLogger("pulse.demo")

DEMO_DAYS = 60
"""Length of every user's plan in virtual days, counted from the start of the run."""

LOYAL = "loyal"
DECLINING = "declining"
CHURNING = "churning"
BIG_SPENDER = "big_spender"
NEWCOMER = "newcomer"
PERSONAS: tuple[str, ...] = (LOYAL, DECLINING, CHURNING, BIG_SPENDER, NEWCOMER)
_SHARES: dict[str, float] = {
    LOYAL: 0.35,
    DECLINING: 0.20,
    CHURNING: 0.15,
    BIG_SPENDER: 0.10,
    NEWCOMER: 0.20,
}

# Per valid event, the chance of an extra malformed record or an extra re-sent copy after it.
# Extras are added rather than substituted, so a persona's behaviour is the same either way.
MALFORMED_RATE = 0.008
DUPLICATE_RATE = 0.006

# The endless demo: new arrivals per virtual day (as a share of the first cohort, which they
# replace as it leaves), from this day on; and returns per day, among users silent this long.
ARRIVALS_FROM_DAY = DEMO_DAYS // 2
ARRIVALS_PER_DAY_SHARE = 1 / DEMO_DAYS
RETURNS_PER_DAY_SHARE = 1 / 100
RETURN_AFTER_DAYS = 30

VALID = "valid"
MALFORMED = "malformed"
DUPLICATE = "duplicate"

MINUTE_MS = 60_000
SECOND_MS = 1_000

# When sessions start (hour of the virtual day): a morning peak, lunch, and a long evening.
_HOUR_WEIGHTS = (
    1, 1, 1, 1, 1, 2, 4, 7, 9, 7, 6, 6, 8, 8, 6, 5, 5, 6, 8, 10, 11, 10, 7, 3,
)  # fmt: skip
_PAGES = (
    "/", "/home", "/search", "/pricing", "/catalog", "/catalog/item", "/cart", "/account",
    "/help", "/blog", "/offers",
)  # fmt: skip
_SKUS = ("starter-pack", "monthly-plan", "annual-plan", "gift-card", "add-on", "bundle")
_DEVICES = ("ios", "android", "web", "web")
_OTHER_TYPES = ("search", "cart.add", "share")


@dataclass(frozen=True, slots=True)
class Planned:
    """One record of the plan: when to send it (virtual ms), to whom, and what it is."""

    at: int
    user_id: str
    payload: bytes
    persona: str
    kind: str  # VALID, MALFORMED or DUPLICATE


def _allocate(users: int) -> list[str]:
    """Personas for `users` users in proportion to _SHARES; each persona at least once when
    there are enough users, so even a small demo shows every behaviour."""
    raw = {p: users * _SHARES[p] for p in PERSONAS}
    counts = {p: int(raw[p]) for p in PERSONAS}
    if users >= len(PERSONAS):
        for p in PERSONAS:
            counts[p] = max(counts[p], 1)
    # Largest remainders fill (or trim) to exactly `users`.
    by_remainder = sorted(PERSONAS, key=lambda p: raw[p] - int(raw[p]), reverse=True)
    i = 0
    while sum(counts.values()) < users:
        counts[by_remainder[i % len(PERSONAS)]] += 1
        i += 1
    while sum(counts.values()) > users:
        largest = max(PERSONAS, key=lambda p: counts[p])
        counts[largest] -= 1
    return [p for p in PERSONAS for _ in range(counts[p])]


class _User:
    """Builds one user's events in time order from the user's own random stream."""

    def __init__(
        self,
        user_id: str,
        persona: str,
        rng: random.Random,
        start_ms: int,
        *,
        returning: bool = False,
    ) -> None:
        self.user_id = user_id
        self.persona = persona
        self.rng = rng
        self.start_ms = start_ms
        self.returning = returning
        self.device = rng.choice(_DEVICES)
        self.docs: list[tuple[int, dict[str, Any]]] = []
        self._last = start_ms - 1

    # -- building blocks -----------------------------------------------------------------
    def _event_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def emit(
        self,
        at: int,
        etype: str,
        *,
        amount: float | int | None = None,
        properties: dict[str, Any] | None = None,
    ) -> int:
        """Add one event; times are forced strictly increasing per user, so the order the
        plan sends them in is the order they happened."""
        at = max(at, self._last + 1)
        self._last = at
        doc: dict[str, Any] = {
            "event_id": self._event_id(),
            "user_id": self.user_id,
            "type": etype,
            "ts": at,
        }
        if amount is not None:
            doc["amount"] = amount
        if properties:
            doc["properties"] = properties
        self.docs.append((at, doc))
        return at

    def day_starts(self, day: int, sessions: int) -> list[int]:
        """Start times of `sessions` sessions on virtual day `day`, at plausible hours."""
        hours = sorted(set(self.rng.choices(range(24), weights=_HOUR_WEIGHTS, k=sessions)))
        base = self.start_ms + day * DAY_MS
        return [
            base + h * HOUR_MS + self.rng.randrange(50) * MINUTE_MS + self.rng.randrange(60_000)
            for h in hours
        ]

    def session(self, at: int, pages: int, purchase: float | None = None) -> None:
        """A visit: session start, some page views (and the odd search or cart add), and
        possibly a purchase followed by the loyalty points it earned (a passive event)."""
        t = self.emit(at, "session_start", properties={"device": self.device})
        for _ in range(pages):
            t += self.rng.randint(15, 180) * SECOND_MS
            if self.rng.random() < 0.1:
                t = self.emit(t, self.rng.choice(_OTHER_TYPES))
            else:
                t = self.emit(t, "page_view", properties={"page": self.rng.choice(_PAGES)})
        if purchase is not None:
            t += self.rng.randint(30, 240) * SECOND_MS
            t = self.emit(
                t,
                "purchase",
                amount=purchase,
                properties={"sku": self.rng.choice(_SKUS), "currency": "EUR"},
            )
            self.emit(t + SECOND_MS, "points_earned", amount=int(purchase))

    def active_day(
        self, day: int, sessions: int, purchase_p: float, price: Callable[[], float]
    ) -> None:
        for at in self.day_starts(day, sessions):
            buy = price() if self.rng.random() < purchase_p else None
            self.session(at, self.rng.randint(1, 5), buy)

    def small_price(self) -> float:
        return round(self.rng.uniform(4.99, 39.99), 2)

    # -- personas ------------------------------------------------------------------------
    def loyal(self) -> None:
        p_active = self.rng.uniform(0.82, 0.97)
        for day in range(DEMO_DAYS):
            if self.rng.random() < p_active:
                self.active_day(day, self.rng.choice((1, 1, 2, 2, 3)), 0.08, self.small_price)

    def declining(self) -> None:
        """Daily for one to two weeks, then a taper to nothing; a third come back a month
        after their last visit, long enough to have gone dormant."""
        steady = self.rng.randint(10, 16)
        taper = self.rng.randint(6, 10)
        last = 0
        for day in range(steady + taper):
            if day < steady:
                p = 0.9
            else:
                p = 0.5 * (1 - (day - steady + 1) / (taper + 1))
            if day == 0 or self.rng.random() < p:
                self.active_day(day, self.rng.choice((1, 1, 2)), 0.05, self.small_price)
                last = day
        if self.rng.random() < 0.35:
            back = last + self.rng.randint(31, 34)
            for day in range(back, min(back + 3, DEMO_DAYS)):
                self.active_day(day, 1, 0.0, self.small_price)

    def churning(self) -> None:
        """Tries the product a few times within a week of arriving, then never returns."""
        first = self.rng.randint(0, 12)
        days = sorted(
            {first, *self.rng.sample(range(first + 1, first + 8), self.rng.randint(1, 4))}
        )
        if self.rng.random() < 0.5:
            at = self.day_starts(first, 1)[0]
            self.emit(at, "signup", properties={"channel": self.rng.choice(("ads", "organic"))})
        for day in days:
            self.active_day(day, 1, 0.0, self.small_price)

    def big_spender(self) -> None:
        """Buys often and big: the rolling spend passes every tier threshold within days
        (how fast varies with a per-user budget)."""
        scale = self.rng.uniform(0.6, 1.6)

        def price() -> float:
            return round(self.rng.uniform(40, 320) * scale, 2)

        for day in range(DEMO_DAYS):
            if self.rng.random() < 0.85:
                self.active_day(day, self.rng.choice((1, 2, 2, 3)), 0.6, price)

    def newcomer(self) -> None:
        """Signs up part-way through the run; about half stay, the rest fade within weeks."""
        join = self.rng.randint(2, 45)
        at = self.day_starts(join, 1)[0]
        at = self.emit(
            at, "signup", properties={"channel": self.rng.choice(("ads", "organic", "referral"))}
        )
        self.session(at + 2 * MINUTE_MS, self.rng.randint(2, 6))
        engaged = self.rng.random() < 0.55
        for day in range(join + 1, DEMO_DAYS):
            age = day - join
            p = 0.7 if engaged else 0.7 * math.exp(-age / 5)
            if self.rng.random() < p:
                self.active_day(day, self.rng.choice((1, 1, 2)), 0.05, self.small_price)

    def comeback(self) -> None:
        """Back after a month or more away: a visit on the first day, then some more over one
        to four weeks, and silence again (so the return may end in another warning)."""
        span = self.rng.randint(7, 28)
        for day in range(span):
            if day == 0 or self.rng.random() < 0.55:
                self.active_day(day, self.rng.choice((1, 1, 2)), 0.1, self.small_price)

    # -- the plan ------------------------------------------------------------------------
    def build(self) -> list[Planned]:
        behaviours: dict[str, Callable[[], None]] = {
            LOYAL: self.loyal,
            DECLINING: self.declining,
            CHURNING: self.churning,
            BIG_SPENDER: self.big_spender,
            NEWCOMER: self.newcomer,
        }
        if self.returning:
            self.comeback()
        else:
            behaviours[self.persona]()
        out: list[Planned] = []
        for at, doc in self.docs:
            out.append(Planned(at, self.user_id, _encode(doc), self.persona, VALID))
            roll = self.rng.random()
            if roll < MALFORMED_RATE:
                bad = self._malformed(doc)
                out.append(
                    Planned(
                        at + self.rng.randint(1, 2_000), self.user_id, bad, self.persona, MALFORMED
                    )
                )
            elif roll < MALFORMED_RATE + DUPLICATE_RATE:
                # A client retry: the very same bytes again, seconds to minutes later.
                later = at + self.rng.randint(2 * SECOND_MS, 20 * MINUTE_MS)
                out.append(Planned(later, self.user_id, _encode(doc), self.persona, DUPLICATE))
        return out

    def _malformed(self, doc: dict[str, Any]) -> bytes:
        """One of the mistakes real senders make."""
        mistake = self.rng.choice(("cut_off", "no_user", "negative_amount"))
        fresh = {**doc, "event_id": self._event_id()}
        if mistake == "cut_off":
            text = _encode(fresh)
            return text[: len(text) // 2]
        if mistake == "no_user":
            del fresh["user_id"]
            return _encode(fresh)
        fresh.update(type="purchase", amount=-round(self.rng.uniform(5, 80), 2))
        return _encode(fresh)


def _encode(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def _plan(users: int, seed: int, start_ms: int) -> list[Planned]:
    if users < 0:
        raise ValueError("users must not be negative")
    master = random.Random(seed)
    personas = _allocate(users)
    numbers: dict[str, int] = {}
    plan: list[Planned] = []
    for persona in personas:
        numbers[persona] = numbers.get(persona, 0) + 1
        user_id = f"{persona}-{numbers[persona]:04d}"
        user = _User(user_id, persona, random.Random(master.getrandbits(64)), start_ms)
        plan.extend(user.build())
    # Stable sort: records of one user at the same millisecond keep their planned order.
    plan.sort(key=lambda p: p.at)
    return plan


class _Endless:
    """The endless demo as an iterator of Planned records in send order.

    The first cohort's plan (`_plan`) comes first; from day ARRIVALS_FROM_DAY on, each virtual
    day adds its arrivals and returns, planned when the day begins. Pending records wait in a
    heap, so memory holds about 60 days of the users alive at the time, never the whole run.
    Everything derives from `seed`, on a random stream of its own (the first cohort's plan is
    exactly `build_schedule`'s).
    """

    def __init__(self, users: int, seed: int, start_ms: int) -> None:
        self.users = users
        self.start_ms = start_ms
        self.rng = random.Random(f"pulse-demo-endless-{seed}")
        first = _plan(users, seed, start_ms)
        self._heap: list[tuple[int, int, Planned]] = [(p.at, i, p) for i, p in enumerate(first)]
        self._seq = len(first)
        # Ids go on from each persona's count in the first cohort.
        self._numbers: dict[str, int] = {}
        for persona in _allocate(users):
            self._numbers[persona] = self._numbers.get(persona, 0) + 1
        # Users with no plan left, by their last record's time: the candidates for a return.
        last: dict[str, tuple[int, str]] = {}
        for p in first:
            last[p.user_id] = (max(p.at, last.get(p.user_id, (p.at, ""))[0]), p.persona)
        self._resting = sorted((at, user_id, persona) for user_id, (at, persona) in last.items())
        self._day = ARRIVALS_FROM_DAY
        self.arrivals = 0
        self.returns = 0

    def __iter__(self) -> Iterator[Planned]:
        return self

    def __next__(self) -> Planned:
        while True:
            day_start = self.start_ms + self._day * DAY_MS
            if self._heap and self._heap[0][0] < day_start:
                return heapq.heappop(self._heap)[2]
            self._plan_day(day_start)
            self._day += 1

    def _add(self, user: _User) -> None:
        plan = user.build()
        for p in plan:
            heapq.heappush(self._heap, (p.at, self._seq, p))
            self._seq += 1
        last = max((p.at for p in plan), default=user.start_ms)
        bisect.insort(self._resting, (last, user.user_id, user.persona))

    def _count(self, share: float) -> int:
        """`users * share` on average, never more than one above it."""
        expected = self.users * share
        return int(expected) + (self.rng.random() < expected - int(expected))

    def _plan_day(self, day_start: int) -> None:
        rng = self.rng
        for _ in range(self._count(ARRIVALS_PER_DAY_SHARE)):
            persona = rng.choices(PERSONAS, weights=[_SHARES[p] for p in PERSONAS])[0]
            self._numbers[persona] = self._numbers.get(persona, 0) + 1
            user_id = f"{persona}-{self._numbers[persona]:04d}"
            self._add(_User(user_id, persona, random.Random(rng.getrandbits(64)), day_start))
            self.arrivals += 1
        cutoff = day_start - RETURN_AFTER_DAYS * DAY_MS
        for _ in range(self._count(RETURNS_PER_DAY_SHARE)):
            eligible = bisect.bisect_left(self._resting, (cutoff + 1,))
            if not eligible:
                break
            _, user_id, persona = self._resting.pop(rng.randrange(eligible))
            user_rng = random.Random(rng.getrandbits(64))
            self._add(_User(user_id, persona, user_rng, day_start, returning=True))
            self.returns += 1


def endless_schedule(users: int, seed: int, start_ms: int) -> Iterator[tuple[int, str, bytes]]:
    """The demo that never ends, as (virtual send time ms, user id, record value) in time order.

    It begins with `build_schedule(users, seed, start_ms)` (those records, in that order,
    interleaved with the later users'); from day 30 new users arrive (ids continue each
    persona's numbering) and users silent for 30 days or more come back now and then. Pure and
    deterministic for a seed.
    """
    return ((p.at, p.user_id, p.payload) for p in _Endless(users, seed, start_ms))


def build_schedule(users: int, seed: int, start_ms: int) -> list[tuple[int, str, bytes]]:
    """The whole demo as (virtual send time ms, user id, record value), sorted by time.

    Pure and deterministic for a seed, so tests can check the mix without a broker. User ids
    are `<persona>-NNNN`, so the persona behind each output is visible. The send time equals
    the event's `ts`, except for a re-sent duplicate, which is sent after its original.
    """
    return [(p.at, p.user_id, p.payload) for p in _plan(users, seed, start_ms)]


def _wall_ms() -> int:
    return int(time.time() * 1000)


async def _sleep_until(at: int, origin_ms: int, rate: float, stop: asyncio.Event | None) -> None:
    """Sleep until the virtual clock reaches `at`, at most a second (so progress reports keep
    coming) and no longer once `stop` is set."""
    target_wall = origin_ms + math.ceil((at - origin_ms) / rate) + 1
    delay = min(1.0, max(0.0, (target_wall - _wall_ms()) / 1000))
    if stop is None:
        await asyncio.sleep(delay)
        return
    try:
        await asyncio.wait_for(stop.wait(), timeout=delay)
    except TimeoutError:
        pass


async def run_demo(
    bootstrap: str,
    topic: str,
    *,
    origin_ms: int,
    rate: float,
    users: int = 200,
    seed: int = 7,
    stop: asyncio.Event | None = None,
    on_progress: Callable[[dict[str, int]], None] | None = None,
    endless: bool = False,
) -> dict[str, int]:
    """Publish the demo to `topic`, each record when the virtual clock reaches its time.

    The virtual clock is `virtual_now(wall, origin_ms, rate)`, as in the worker; the plan starts
    at its current reading. Runs until every record of the 60-day plan is sent, or with
    `endless` (the plan of `endless_schedule`) until `stop` is set; `stop` ends either early.
    Records are keyed by user id (it decides the partition) and acknowledged by all in-sync
    replicas before they are counted. Returns the counters: `users`, `scheduled` (only when not
    endless), `sent` (every record published), `malformed` and `duplicates` (of those sent),
    with `endless` also `arrivals` and `returns` (users added and users back so far), and per
    persona name the records sent for its users. `on_progress` gets a copy of the counters
    about once a second and at the end.
    """
    if rate <= 0:
        raise ValueError("rate must be positive")
    start = virtual_now(_wall_ms(), origin_ms, rate)
    counts: dict[str, int] = {"users": users, "sent": 0, "malformed": 0, "duplicates": 0}
    endless_plan: _Endless | None = None
    plan: Iterator[Planned]
    if endless:
        plan = endless_plan = _Endless(users, seed, start)
        counts.update(arrivals=0, returns=0)
        log.info("demo: %d users and more arriving, rate %g, to %s", users, rate, topic)
    else:
        planned = _plan(users, seed, start)
        plan = iter(planned)
        counts["scheduled"] = len(planned)
        log.info(
            "demo: %d users, %d records over %d virtual days, rate %g, to %s",
            users,
            len(planned),
            DEMO_DAYS,
            rate,
            topic,
        )
    counts.update({p: 0 for p in PERSONAS})

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, client_id="pulse-demo"
    )
    await producer.start()
    reported = time.monotonic()
    upcoming = next(plan, None)

    def stopped() -> bool:
        return stop is not None and stop.is_set()

    try:
        while upcoming is not None and not stopped():
            now = virtual_now(_wall_ms(), origin_ms, rate)
            batch: list[Planned] = []
            pending = []
            # Send everything due, then wait for the acks before counting it (and before
            # sleeping), so a broker error surfaces here instead of being lost.
            while (
                upcoming is not None and upcoming.at <= now and len(batch) < 5_000 and not stopped()
            ):
                pending.append(
                    await producer.send(topic, upcoming.payload, key=upcoming.user_id.encode())
                )
                batch.append(upcoming)
                upcoming = next(plan, None)
            if pending:
                await asyncio.gather(*pending)
                for rec in batch:
                    counts["sent"] += 1
                    counts[rec.persona] += 1
                    if rec.kind == MALFORMED:
                        counts["malformed"] += 1
                    elif rec.kind == DUPLICATE:
                        counts["duplicates"] += 1
            if endless_plan is not None:
                counts.update(
                    users=users + endless_plan.arrivals,
                    arrivals=endless_plan.arrivals,
                    returns=endless_plan.returns,
                )
            if on_progress is not None and time.monotonic() - reported >= 1.0:
                reported = time.monotonic()
                on_progress(dict(counts))
            if upcoming is not None and not batch:
                await _sleep_until(upcoming.at, origin_ms, rate, stop)
    finally:
        await producer.stop()
    if on_progress is not None:
        on_progress(dict(counts))
    log.info("demo: done, %s", counts)
    return counts
