"""The view writer on a real redis-server: it notices when Redis lost the view and writes its
users again (each writer its own users, once per loss), and never queues an older state."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis
from msgspec.structs import replace
from redis.exceptions import ConnectionError as RedisConnectionError

from streams.core import retention
from streams.core.contract import Event
from streams.core.engine import apply_event
from streams.core.outputs import Output, churn_warning, encode_output, lifecycle_changed
from streams.core.policy import Policy
from streams.core.recall import cell_counts
from streams.core.state import RecallCell, UserState, encode_state
from streams.local.embedded import Server, start_redis
from streams.settings import WorkerSettings
from streams.view.keys import (
    TRANSITIONS_KEPT,
    WARNINGS_KEPT_MS,
    epoch_key,
    recall_field,
    stage_counts_key,
    timeline_bucket_key,
    timeline_key,
    timeline_start,
    timeline_width_key,
    user_key,
)
from streams.view.writer import OutputItem, Pending, View, ViewWriter, indexed, output_item
from streams.worker.app import build_app

from .events import day_base
from .waits import until

POLICY = Policy()


def user(user_id: str, events: int = 1) -> UserState:
    state = None
    for n in range(events):
        event = Event(f"{user_id}-{n}", user_id, "page_view", day_base(1) + n)
        state = apply_event(state, event, POLICY).state
    assert state is not None
    return state


@pytest.fixture
async def client(redis_server: Server) -> AsyncIterator[aioredis.Redis]:
    c = aioredis.from_url(f"redis://127.0.0.1:{redis_server.port}/0")
    yield c
    await c.aclose()


@pytest.fixture
def prefix() -> str:
    return f"vw{uuid.uuid4().hex[:8]}"


async def lose_the_view(client: aioredis.Redis, prefix: str) -> None:
    """What a restart without persistence or a flush does to this view: all of it at once
    (one DEL; deleting key by key races with a writer that rewrites as the keys go)."""
    keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
    await client.delete(*keys)


class Users:
    """A worker's users as its table holds them; counts the resyncs asked of it."""

    def __init__(self, *states: UserState) -> None:
        self.states = {s.user_id: s for s in states}
        self.resyncs = 0

    def __call__(self) -> Iterator[list[UserState]]:
        self.resyncs += 1
        yield list(self.states.values())


def writer(client: aioredis.Redis, prefix: str, users: Users) -> ViewWriter:
    return ViewWriter(View(client, prefix), resync=users, epoch_check_s=0.05)


async def test_every_writer_writes_its_own_users_again_once_per_loss(
    client: aioredis.Redis, prefix: str
) -> None:
    mine, theirs = Users(user("a1"), user("a2", 3)), Users(user("b1", 2))
    writers = [writer(client, prefix, mine), writer(client, prefix, theirs)]
    tasks = [asyncio.create_task(w.run()) for w in writers]
    try:
        for w, users in zip(writers, (mine, theirs), strict=True):
            for state in users.states.values():
                w.put(state, [])

        async def written() -> bool:
            keys = [user_key(prefix, u) for u in ("a1", "a2", "b1")]
            return bool(await client.exists(*keys) == 3) and all(w.epoch for w in writers)

        await until(written, timeout=20, every=0.05)
        assert (mine.resyncs, theirs.resyncs) == (0, 0)  # a first look only learns the token
        before = await client.hgetall(stage_counts_key(prefix))
        assert before == {b"new": b"3"}

        await lose_the_view(client, prefix)
        await until(written, timeout=20, every=0.05)
        assert await client.hget(user_key(prefix, "a2"), "version") == b"3"
        assert await client.hgetall(stage_counts_key(prefix)) == before  # each user counted once
        await asyncio.sleep(0.3)  # several more looks: the token is the same, nothing to do
        assert (mine.resyncs, theirs.resyncs) == (1, 1)
        assert writers[0].epoch == writers[1].epoch == await client.get(epoch_key(prefix))
    finally:
        for t in tasks:
            t.cancel()


async def test_a_resync_cut_short_starts_again(client: aioredis.Redis, prefix: str) -> None:
    states = [user(f"c{n}") for n in range(5)]
    failed = False

    def flaky() -> Iterator[list[UserState]]:
        nonlocal failed
        yield states[:2]
        if not failed:
            failed = True
            raise RedisConnectionError("Redis went away again mid-resync")
        yield states[2:]

    w = ViewWriter(View(client, prefix), resync=flaky)
    assert not await w.check_epoch()  # learns the token
    await lose_the_view(client, prefix)
    with pytest.raises(RedisConnectionError):
        await w.check_epoch()
    assert await client.exists(*(user_key(prefix, s.user_id) for s in states)) == 2
    assert await w.check_epoch()  # the token was not adopted: the resync runs again, whole
    assert await client.exists(*(user_key(prefix, s.user_id) for s in states)) == 5
    assert not await w.check_epoch()


def test_a_resynced_state_never_replaces_a_newer_pending_one_or_an_erasure() -> None:
    w = ViewWriter(View(aioredis.Redis(), "unused"))
    old, new = user("d", 1), user("d", 2)
    w.put(new, [])
    w.refresh(old)
    assert w.pending["d"].state == indexed(new)  # a waiting update keeps the fields it writes
    w.erase("d")
    w.refresh(new)
    assert w.pending["d"].state is None
    w.pending.clear()
    w.put(old, [])
    w.refresh(new)
    assert w.pending["d"].state is new


async def _contents(client: aioredis.Redis, prefix: str) -> dict[str, object]:
    """The view's keys (prefix taken off) and contents."""
    out: dict[str, object] = {}
    async for raw in client.scan_iter(match=f"{prefix}:*", count=1000):
        key = raw.decode()
        kind = (await client.type(key)).decode()
        name = key.removeprefix(prefix)
        if kind == "hash":
            out[name] = await client.hgetall(key)
        elif kind == "zset":
            out[name] = await client.zrange(key, 0, -1, withscores=True)
        elif kind == "list":
            out[name] = await client.lrange(key, 0, -1)
    return out


async def test_one_batch_writes_what_user_by_user_writes(client: aioredis.Redis) -> None:
    """1,200 users (three script calls in one round trip), some erased in the same flush,
    some of them buyers (another tier): the same view as one call per user."""
    states = []
    for n in range(1_200):
        state = user(f"m{n:04d}", events=1 + n % 3)
        if n % 7 == 0:  # a purchase: another tier, another risk
            event = Event(f"m{n}-buy", state.user_id, "purchase", day_base(1) + 10, 60_000, True)
            state = apply_event(state, event, POLICY).state
        states.append(state)
    batched, single = (View(client, f"vb{uuid.uuid4().hex[:8]}") for _ in range(2))
    erased = {s.user_id for s in states[::11]}
    for view in (batched, single):  # the erased users exist before the flush
        await view.write_many({u: Pending(user(u)) for u in erased})
    items = {s.user_id: Pending(None if s.user_id in erased else s) for s in states}
    assert await batched.write_many(items) == len(states) - len(erased)
    for user_id, item in items.items():
        if item.state is None:
            await single.erase(user_id)
        else:
            assert await single.write(item.state, [])
    got, want = await _contents(client, batched.prefix), await _contents(client, single.prefix)
    assert got == want
    kept = [s for s in states if s.user_id not in erased]
    assert len([k for k in got if k.startswith(":user:")]) == len(kept)
    tiers = {k.decode(): int(v) for k, v in got[":count:tier"].items()}  # type: ignore[attr-defined]
    assert tiers == Counter(s.tier for s in kept)
    assert len(tiers) == 2  # buyers and the others


def _calls(stats: dict[str, Any], *commands: str) -> dict[str, int]:
    return {c: int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in commands}


async def test_a_write_touches_the_indexes_only_for_what_changed() -> None:
    """Most writes change a user's figures, not their stage, tier or risk: those are one HMGET
    and one HSET of the user's hash, and move no segment set and no count. Counts move in one
    HMGET and one HSET per count hash a call touches. Counted on a redis-server of this test's
    own."""
    server = start_redis()
    client = aioredis.from_url(f"redis://127.0.0.1:{server.port}/0")
    view = View(client, "touch")
    indexes = ("zadd", "zrem", "hincrby", "hdel", "hmget", "hset", "exists")

    async def write(state: UserState) -> dict[str, int]:
        before = _calls(await client.info("commandstats"), *indexes)
        assert await view.write(state, [])
        after = _calls(await client.info("commandstats"), *indexes)
        return {c: after[c] - before[c] for c in indexes if after[c] != before[c]}

    try:
        first = user("t", 1)
        # Joins a stage and a tier (sets and counts), and the day and week cohorts (counts,
        # and the cohorts' indexes after them).
        assert await write(first) == {"zadd": 4, "hmget": 5, "hset": 5, "exists": 2}
        figures = user("t", 2)
        assert (figures.stage, figures.tier, figures.risk) == (first.stage, first.tier, 0.0)
        assert await write(figures) == {"hmget": 1, "hset": 1}
        riskier = replace(figures, version=figures.version + 1, risk=0.5)
        assert await write(riskier) == {"hmget": 1, "hset": 1, "zadd": 2}  # a new score
        moved = replace(riskier, version=riskier.version + 1, stage="active")
        # Out of `new` (its count falls to 0: the field goes), into `active`; the tier stays.
        assert await write(moved) == {"hmget": 2, "hset": 2, "zrem": 1, "zadd": 1, "hdel": 1}
        warned = replace(
            moved,
            version=moved.version + 1,
            recall_tally=(RecallCell("treated", moved.tier, "silence_exceeds_normal", warned=1),),
        )
        # its recall cell joins the totals
        assert await write(warned) == {"hmget": 2, "hset": 2}
        assert await client.zrange("touch:seg:stage:active", 0, -1, withscores=True) == [
            (b"t", 0.5)
        ]
        assert not await client.exists("touch:seg:stage:new")
        assert await client.hgetall("touch:count:stage") == {b"active": b"1"}
        assert await client.hgetall("touch:count:tier") == {first.tier.encode(): b"1"}
        assert await client.zscore(f"touch:seg:tier:{first.tier}", "t") == 0.5
        assert await client.hget(user_key("touch", "t"), "state") == encode_state(warned)
    finally:
        await client.aclose()
        server.stop()


@pytest.mark.parametrize("hints", ["none", "right", "wrong"])
async def test_indexes_follow_the_latest_state_whatever_the_write_order(
    client: aioredis.Redis, prefix: str, hints: str
) -> None:
    """Versions of 40 users with changing stage, tier, risk, recall cells, cohorts and RFM
    segments, written in a shuffled order (so most arrive stale), in batches, some users erased
    at the end: the segment sets, counts, recall totals and retention cohorts are those of the
    states the view holds. The same whether the writes say which state the view holds (the
    retention counts then move by the worker's deltas), say nothing, or say a wrong one (the
    script sees that the part it holds differs and moves the parts itself)."""
    rng, hint_rng = random.Random(7), random.Random(11)
    view = View(client, prefix)
    base = user("x")
    versions: list[UserState] = []
    latest: dict[str, UserState] = {}
    for n in range(40):
        for version in range(1, 7):
            tally = ()
            if rng.random() < 0.4:
                tally = (RecallCell(rng.choice(["treated", "holdout"]), "t1", "r", warned=version),)
            cohort = rng.choice([None, 20_000, 20_001, 20_009])  # a Saturday, Sunday, Monday
            day_bits, week_bits = rng.choice([(1, 1), (0b1011, 0b11), (1 | 1 << 31, 1 << 27)])
            state = replace(
                base,
                user_id=f"x{n:02d}",
                version=version,
                stage=rng.choice(["new", "active", "at_risk", "dormant"]),
                tier=rng.choice(["t1", "t2", "t3"]),
                risk=rng.choice([0.0, 0.25, 0.5, 1.0]),
                recall_tally=tally,
                cohort_day=cohort,
                cohort_day_bits=day_bits if cohort is not None else 0,
                cohort_week_bits=week_bits if cohort is not None else 0,
                rfm_segment=rng.choice(["", "important_value", "general_win_back"]),
            )
            versions.append(state)
            latest[state.user_id] = state
    rng.shuffle(versions)
    held: dict[str, UserState] = {}  # the version the view holds
    shifted = 0  # writes whose hint moved retention counts by deltas

    def hint(state: UserState) -> UserState | None:
        if hints == "right":
            return held.get(state.user_id)
        if hints == "wrong":
            return hint_rng.choice([v for v in versions if v.user_id == state.user_id])
        return None

    start = 0
    while start < len(versions):
        chunk = versions[start : start + rng.randint(1, 30)]
        start += len(chunk)
        batch = {s.user_id: Pending(s, before=hint(s)) for s in chunk}
        shifted += sum(1 for p in batch.values() if p.state and view.shift(p.before, p.state))
        await view.write_many(batch)
        for p in batch.values():
            assert p.state is not None
            if p.state.user_id not in held or held[p.state.user_id].version < p.state.version:
                held[p.state.user_id] = p.state
    assert (shifted > 10) == (hints != "none")
    for state in latest.values():  # a batch holds one version per user: the last one wins
        await view.write(state, [])
    erased = sorted(latest)[::5]
    for user_id in erased:
        await view.erase(user_id)
        del latest[user_id]

    got = await _contents(client, prefix)
    want: dict[str, object] = {}
    for kind, field in (("stage", "stage"), ("tier", "tier"), ("rfm", "rfm_segment")):
        members: dict[str, list[tuple[bytes, float]]] = {}
        for s in latest.values():
            if getattr(s, field):
                members.setdefault(getattr(s, field), []).append((s.user_id.encode(), s.risk))
        for value, pairs in members.items():
            want[f":seg:{kind}:{value}"] = sorted(pairs, key=lambda p: (p[1], p[0]))
        counts = Counter(getattr(s, field) for s in latest.values() if getattr(s, field))
        want[f":count:{kind}"] = {k.encode(): str(n).encode() for k, n in counts.items()}
    totals: Counter[tuple[str, str, str, str]] = Counter()
    for s in latest.values():
        totals.update(cell_counts(s.recall_tally))
    if totals:
        want[":count:recall"] = {
            recall_field(*cell).encode(): str(n).encode() for cell, n in totals.items()
        }
    cohorts: dict[str, list[tuple[bytes, float]]] = {}
    for (period, cohort, field), n in retention.totals(latest.values()).items():
        fields = want.setdefault(f":retention:{period}:{cohort}", {})
        fields[field.encode()] = str(n).encode()  # type: ignore[index]
        if field == "n":
            cohorts.setdefault(f":retention:{period}", []).append((str(cohort).encode(), cohort))
    want |= {k: sorted(v, key=lambda p: p[1]) for k, v in cohorts.items()}
    assert len(cohorts[":retention:day"]) > 1
    assert {k: v for k, v in got.items() if not k.startswith(":user:")} == want
    users = {k.removeprefix(":user:") for k in got if k.startswith(":user:")}
    assert users == set(latest)
    for user_id, state in latest.items():
        assert got[f":user:{user_id}"][b"state"] == encode_state(state)  # type: ignore[index]


async def test_states_of_every_size_are_stored_byte_for_byte(
    client: aioredis.Redis, prefix: str
) -> None:
    """The state travels to the script as a msgpack str of its bytes: every length header
    (8, 16 and 32 bits) carries it whole."""
    view = View(client, prefix)
    small = user("s")
    sizes = {
        "s8": small,
        "s16": replace(small, user_id="s16", recent_ids=tuple(range(2**62, 2**62 + 60))),
        "s32": replace(small, user_id="s32", recent_ids=tuple(range(2**62, 2**62 + 9000))),
    }
    lengths = [len(encode_state(s)) for s in sizes.values()]
    assert lengths[0] < 0x100 <= lengths[1] < 0x10000 <= lengths[2]
    await view.write_many({name: Pending(state) for name, state in sizes.items()})
    for name, state in sizes.items():
        stored = await client.hget(user_key(prefix, state.user_id), "state")
        assert stored == encode_state(state), name


async def test_the_writer_stores_the_bytes_it_is_handed_and_encodes_only_without_them(
    client: aioredis.Redis, prefix: str
) -> None:
    """The worker hands over the changelog record's bytes: the view stores those, so it never
    encodes a state twice; a state queued without them (a resync) is encoded here."""
    handed = user("h")
    again = user("r")
    w = writer(client, prefix, Users())
    w.put(handed, [], b"exactly these bytes")
    w.refresh(again)
    await w.flush()
    assert await client.hget(user_key(prefix, "h"), "state") == b"exactly these bytes"
    assert await client.hget(user_key(prefix, "r"), "state") == encode_state(again)
    # A newer state queued by a resync drops bytes that belonged to the older one.
    w.put(replace(handed, version=handed.version + 1), [], b"old")
    w.refresh(replace(handed, version=handed.version + 2))
    await w.flush()
    newest = replace(handed, version=handed.version + 2)
    assert await client.hget(user_key(prefix, "h"), "state") == encode_state(newest)


def _items(*outs: Output) -> list[OutputItem]:
    """Outputs as the worker hands them to the view: with the JSON it published."""
    return [output_item(o, encode_output(o, o.ts).decode()) for o in outs]


async def _timeline(client: aioredis.Redis, prefix: str) -> dict[int, dict[str, int]]:
    starts = await client.zrange(timeline_key(prefix), 0, -1)
    series = {}
    for start in starts:
        raw = await client.hgetall(timeline_bucket_key(prefix, int(start)))
        series[int(start)] = {k.decode(): int(v) for k, v in raw.items()}
    return series


async def test_the_timeline_counts_a_change_once_however_often_its_write_arrives(
    client: aioredis.Redis, prefix: str
) -> None:
    """A lifecycle change is counted by the write that stores its state: the same write again
    (a redelivery, a worker replaying after a crash) or a stale one counts nothing."""
    view = View(client, prefix)
    first = user("tl-ann")
    entered = lifecycle_changed("tl-ann", day_base(3), None, "new", "first_seen", {})
    assert await view.write(first, _items(entered))
    assert not await view.write(first, _items(entered))  # redelivered: same version
    later = replace(first, version=first.version + 1, stage="active")
    settled = lifecycle_changed("tl-ann", day_base(1), "new", "active", "new_period_over", {})
    assert await view.write(later, _items(settled))
    assert not await view.write(first, _items(entered))  # stale: an older version
    assert not await view.write(later, _items(settled))
    day = 86_400_000
    assert await _timeline(client, prefix) == {
        timeline_start(day_base(3), day): {">new": 1},
        timeline_start(day_base(1), day): {"new>active": 1},
    }
    assert await client.get(timeline_width_key(prefix)) == b"86400000"

    # Coalesced by the writer (two versions, one write): both changes count, once.
    w = ViewWriter(view)
    bob = user("tl-bob")
    w.put(bob, _items(lifecycle_changed("tl-bob", day_base(1), None, "new", "first_seen", {})))
    w.put(
        replace(bob, version=bob.version + 1, stage="at_risk"),
        _items(lifecycle_changed("tl-bob", day_base(1) + 5, "new", "at_risk", "silence", {})),
    )
    await w.flush()
    assert (await _timeline(client, prefix))[timeline_start(day_base(1), day)] == {
        "new>active": 1,
        ">new": 1,
        "new>at_risk": 1,
    }

    # An erased user leaves their stage in the newest bucket.
    await view.erase("tl-ann")
    assert (await _timeline(client, prefix))[timeline_start(day_base(1), day)]["active>"] == 1


async def test_the_timeline_keeps_the_newest_buckets_whatever_the_write_order(
    client: aioredis.Redis,
) -> None:
    """Bounded: the newest bucket and those within the kept span of it, in any write order;
    a change older than that is not counted."""
    hour = 3_600_000
    changes = [
        (f"k{n}", lifecycle_changed(f"k{n}", day_base(0) - n * hour, None, "new", "first_seen", {}))
        for n in range(8)
    ]
    results = []
    for order in (changes, changes[::-1], changes[3:] + changes[:3]):
        prefix = f"tk{uuid.uuid4().hex[:8]}"
        view = View(client, prefix, timeline_bucket_ms=hour, timeline_buckets=3)
        for uid, out in order:
            await view.write(user(uid), _items(out))
        results.append(await _timeline(client, prefix))
    newest = timeline_start(day_base(0), hour)
    assert results[0] == {newest - n * hour: {">new": 1} for n in range(3)}
    assert results[1] == results[0] and results[2] == results[0]


async def test_the_transitions_and_the_warnings_keep_the_newest_whatever_the_batching(
    client: aioredis.Redis, prefix: str
) -> None:
    """A user's outputs go into their list in one push and the warnings index is trimmed once
    per script call: the list holds the newest TRANSITIONS_KEPT outputs, newest first, and the
    index the warnings within WARNINGS_KEPT_MS of the newest, as one write per output leaves."""
    hour = 3_600_000
    # 70 warnings of one user an hour apart (more than the list keeps, a span longer than the
    # index keeps), and one warning each of 30 other users, older and newer.
    mine = [churn_warning("tw-ann", day_base(1) + n * hour, "silence", 0.5, "active", "", {})
            for n in range(70)]  # fmt: skip
    others = {
        f"tw-{n:02d}": churn_warning(
            f"tw-{n:02d}", day_base(0) + n * 5 * hour, "silence", 0.5, "active", "", {}
        )
        for n in range(30)
    }
    ann = user("tw-ann")
    one_call = View(client, prefix)
    items = {"tw-ann": Pending(ann, _items(*mine))}
    items |= {u: Pending(user(u), _items(o)) for u, o in others.items()}
    await one_call.write_many(items)

    # The same outputs, one per write (each a newer version) and users in another order.
    one_by_one = View(client, f"{prefix}x")
    for version, out in enumerate(mine, start=ann.version):
        assert await one_by_one.write(replace(ann, version=version), _items(out))
    for u in reversed(others):
        assert await one_by_one.write(user(u), _items(others[u]))

    for view in (one_call, one_by_one):
        kept = await client.lrange(f"{view.prefix}:transitions:tw-ann", 0, -1)
        assert [msgspec.json.decode(doc)["idempotency_key"] for doc in kept] == [
            o.idempotency_key for o in reversed(mine[-TRANSITIONS_KEPT:])
        ]
        newest = max(o.ts for o in [*mine, *others.values()])
        assert {k.decode() for k in await client.zrange(f"{view.prefix}:warnings", 0, -1)} == {
            o.idempotency_key
            for o in [*mine, *others.values()]
            if o.ts >= newest - WARNINGS_KEPT_MS
        }


async def test_while_the_worker_reads_a_backlog_the_writer_folds_updates_longer(
    client: aioredis.Redis, prefix: str
) -> None:
    backlog = True
    w = ViewWriter(
        View(client, prefix), interval_s=0.02, catchup_interval_s=30.0, behind=lambda: backlog
    )
    task = asyncio.create_task(w.run())
    try:
        w.put(user("bk-1"), [])  # the first update after a quiet spell goes at once
        await until(lambda: client.exists(user_key(prefix, "bk-1")), timeout=10, every=0.02)
        w.put(user("bk-2"), [])
        await asyncio.sleep(0.5)  # 25 intervals: kept back while the backlog lasts
        assert not await client.exists(user_key(prefix, "bk-2"))
        backlog = False  # caught up: written within an interval or so
        await until(lambda: client.exists(user_key(prefix, "bk-2")), timeout=10, every=0.02)
    finally:
        task.cancel()


async def test_the_worker_writes_its_pending_updates_when_it_stops(
    redis_server: Server, prefix: str, client: aioredis.Redis, tmp_path: Path
) -> None:
    settings = WorkerSettings(
        redis_url=f"redis://127.0.0.1:{redis_server.port}/0",
        view_prefix=prefix,
        data_dir=str(tmp_path),
        view_catchup_flush_seconds=60,
    )
    app, proc = build_app(settings, POLICY)
    assert proc.writer is not None
    proc.writer.put(user("st-1"), [])  # no writer task runs: only the shutdown writes it
    await app.on_before_shutdown.send()
    assert await client.hget(user_key(prefix, "st-1"), "version") is not None
    assert proc.writer.pending == {}
