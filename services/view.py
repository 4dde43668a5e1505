"""Reads of the Redis materialized view (layout: streams/view/keys.py). No writes.

A user's document is built here, on read, from the state bytes the worker stored, with the
same pure function and the same policy the worker runs with (streams.core.snapshot).

Segment sets are zsets scored by risk; Redis orders equal scores by member ascending, and the
API lists risk descending then user id ascending, so a page is assembled from whole score
groups taken in descending order and read in ascending (forward) order inside each group.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from redis.asyncio import Redis
from redis.client import NEVER_DECODE

from services.cursors import Position
from streams.core.policy import Policy
from streams.core.snapshot import user_document
from streams.core.state import UserState, decode_state
from streams.view import keys as viewkeys

Member = tuple[str, float]
_GROUP_SCAN = 1000
# What a user's hash holds (streams/view/keys.py); `doc` only in a view written before the
# worker stored states instead of documents.
_USER_FIELDS = ("state", "version", "stage", "tier", "risk", "doc")


# The timeline, its width and the stage counts read in one script: atomic, so the counts and
# the series come from the same moment (the populations are derived from both).
_TIMELINE_READ_LUA = """
local p = ARGV[1]
local index = p .. ':timeline'
local buckets = {}
for _, start in ipairs(redis.call('ZRANGE', index, 0, -1)) do
  buckets[#buckets + 1] = {start, redis.call('HGETALL', index .. ':' .. start)}
end
return {redis.call('GET', index .. ':width') or false, redis.call('HGETALL', p .. ':count:stage'),
        buckets}
"""


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", "replace")


def _pairs(raw: Any) -> list[Member]:
    """(member, score) pairs from a WITHSCORES reply (RESP2 or RESP3 shape)."""
    return [(str(m), float(s)) for m, s in raw]


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    next_position: Position | None


class View:
    """The view's data for the API; `redis` must decode responses to str.

    `policy` is the one the worker runs with (its windows and event types shape a user's
    document); the app's dependency sets it (services/deps.py) when it is not given here.
    """

    def __init__(self, redis: Redis, prefix: str, policy: Policy | None = None) -> None:
        self.redis = redis
        self.prefix = prefix
        self.policy = policy

    async def user(self, user_id: str) -> dict[str, Any] | None:
        """The user's snapshot document with `version`, or None for an unknown user.

        Raises RuntimeError when no policy was set.
        """
        if self.policy is None:
            raise RuntimeError("services.view.View.user needs the policy: set View.policy")
        # The state is msgpack, not text: read without the client's decoding.
        raw = await self.redis.execute_command(  # type: ignore[no-untyped-call]
            "HMGET",
            viewkeys.user_key(self.prefix, user_id),
            *_USER_FIELDS,
            **{NEVER_DECODE: True},
        )
        fields = {
            name: value for name, value in zip(_USER_FIELDS, raw, strict=True) if value is not None
        }
        if not fields:
            return None
        doc = self._document(fields, self.policy)
        doc.setdefault("user_id", user_id)
        doc.setdefault("stage", _text(fields.get("stage")))
        doc.setdefault("tier", _text(fields.get("tier")))
        if "risk" in fields:
            doc.setdefault("risk_score", float(fields["risk"]))
        doc["version"] = int(fields.get("version") or doc.get("version") or 0)
        return doc

    @staticmethod
    def _document(fields: dict[str, bytes], policy: Policy) -> dict[str, Any]:
        """The document of the stored state; of a view written before states were stored,
        the document stored then; {} when what is stored does not decode."""
        try:
            if "state" in fields:
                return user_document(decode_state(fields["state"]), policy)
            doc = json.loads(fields.get("doc") or b"{}")
        except (msgspec.DecodeError, ValueError):
            return {}
        return doc if isinstance(doc, dict) else {}

    async def transitions(self, user_id: str, limit: int) -> list[dict[str, Any]] | None:
        """Up to `limit` newest-first transition documents; None when the user is unknown."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.exists(viewkeys.user_key(self.prefix, user_id))
            pipe.lrange(viewkeys.transitions_key(self.prefix, user_id), 0, limit - 1)
            exists, raw = await pipe.execute()
        if not exists and not raw:
            return None
        docs = []
        for item in raw:
            try:
                doc = json.loads(item)
            except ValueError:
                continue
            if isinstance(doc, dict):
                docs.append(doc)
        return docs

    async def stats(self, now_ms: int) -> tuple[dict[str, str], dict[str, str], int, int]:
        """Stage counts, tier counts, warnings with score (event ms) >= now-1h and >= now-1d."""
        wkey = viewkeys.warnings_key(self.prefix)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(viewkeys.stage_counts_key(self.prefix))
            pipe.hgetall(viewkeys.tier_counts_key(self.prefix))
            pipe.zcount(wkey, now_ms - 3_600_000, "+inf")
            pipe.zcount(wkey, now_ms - 86_400_000, "+inf")
            stages, tiers, hour, day = await pipe.execute()
        return stages, tiers, int(hour), int(day)

    async def rfm_counts(self) -> dict[str, int]:
        """Users per RFM value segment (segments without users absent)."""
        raw = await self.redis.hgetall(viewkeys.rfm_counts_key(self.prefix))
        return {str(k): int(v) for k, v in raw.items()}

    async def recall_counts(self) -> dict[str, str]:
        """The recall totals hash: "group|tier|reason|outcome" -> churn warnings."""
        raw = await self.redis.hgetall(viewkeys.recall_counts_key(self.prefix))
        return {str(k): str(v) for k, v in raw.items()}

    async def timeline(self) -> tuple[int | None, dict[str, str], list[tuple[int, dict[str, str]]]]:
        """The lifecycle timeline as one consistent read: the buckets' width in ms (None:
        nothing counted yet), the stage counts, and each bucket's start with its
        "from>to" -> changes hash, oldest first."""
        raw = await self.redis.eval(_TIMELINE_READ_LUA, 0, self.prefix)
        width, stages, buckets = raw
        flat = dict(zip(stages[::2], stages[1::2], strict=True))
        series = [
            (int(start), dict(zip(fields[::2], fields[1::2], strict=True)))
            for start, fields in buckets
        ]
        return (int(width) if width else None), flat, series

    async def segment_states(self, key: str, chunk: int = 1000) -> list[UserState]:
        """The stored state of every member of the segment zset `key` (members whose hash
        holds no state, e.g. written before states were stored, are left out). Reads the
        whole segment: the cost grows with its size."""
        members = [str(m) for m in await self.redis.zrange(key, 0, -1)]
        states: list[UserState] = []
        for start in range(0, len(members), chunk):
            async with self.redis.pipeline(transaction=False) as pipe:
                for member in members[start : start + chunk]:
                    pipe.execute_command(
                        "HGET",
                        viewkeys.user_key(self.prefix, member),
                        "state",
                        **{NEVER_DECODE: True},
                    )
                raw = await pipe.execute()
            for value in raw:
                if value is None:
                    continue
                try:
                    states.append(decode_state(value))
                except msgspec.DecodeError:
                    continue
        return states

    async def retention_counts(self, period: str, cohorts: int) -> dict[tuple[str, int, str], int]:
        """The last `cohorts` cohorts of `period` (by number) in the retention counts:
        (period, cohort, field) -> users (streams.core.retention's cells)."""
        index = viewkeys.retention_cohorts_key(self.prefix, period)
        names = [str(name) for name in await self.redis.zrange(index, -cohorts, -1)]
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hgetall(viewkeys.retention_key(self.prefix, period, name))
            hashes = await pipe.execute()
        counts: dict[tuple[str, int, str], int] = {}
        for name, fields in zip(names, hashes, strict=True):
            for field, n in fields.items():
                counts[(period, int(name), str(field))] = int(n)
        return counts

    async def ping(self) -> bool:
        return bool(await self.redis.ping())

    # -- segments -------------------------------------------------------------------------

    async def _group_from(self, key: str, score: float, start: int, n: int) -> list[Member]:
        """Up to n members of the score group, from forward rank `start` on."""
        raw = await self.redis.zrange(key, start, start + n - 1, withscores=True)
        out = []
        for member, s in _pairs(raw):
            if s != score:
                break
            out.append((member, s))
        return out

    async def _group_tail(self, key: str, pos: Position, n: int) -> list[Member]:
        """Up to n members with score == pos.risk and member > pos.user_id, ascending."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zscore(key, pos.user_id)
            pipe.zrank(key, pos.user_id)
            pipe.zcount(key, "-inf", f"({pos.risk!r}")
            score, rank, below = await pipe.execute()
        if score is not None and float(score) == pos.risk and rank is not None:
            return await self._group_from(key, pos.risk, int(rank) + 1, n)
        # The cursor's user left this score group since: count the group's members <= it.
        after = _bytes(pos.user_id)
        offset = 0
        while True:
            raw = await self.redis.zrange(
                key, pos.risk, pos.risk, byscore=True, offset=offset, num=_GROUP_SCAN
            )
            skipped = sum(1 for m in raw if _bytes(str(m)) <= after)
            offset += skipped
            if skipped < len(raw) or len(raw) < _GROUP_SCAN:
                break
        return await self._group_from(key, pos.risk, int(below) + offset, n)

    async def _after(
        self, key: str, pos: Position | None, min_risk: float | None, n: int
    ) -> list[Member]:
        """Up to n members strictly after `pos` in (risk desc, user_id asc) order."""
        out: list[Member] = []
        low = "-inf" if min_risk is None else repr(min_risk)
        upper = "+inf"
        if pos is not None:
            if min_risk is None or pos.risk >= min_risk:
                out.extend(await self._group_tail(key, pos, n))
            upper = f"({pos.risk!r}"
        while len(out) < n:
            want = n - len(out)
            batch = _pairs(
                await self.redis.zrange(
                    key, upper, low, desc=True, byscore=True, offset=0, num=want, withscores=True
                )
            )
            if not batch:
                break
            groups: list[tuple[float, list[str]]] = []
            for member, score in batch:
                if groups and groups[-1][0] == score:
                    groups[-1][1].append(member)
                else:
                    groups.append((score, [member]))
            full = len(batch) == want
            for score, members in groups[:-1] if full else groups:
                out.extend((m, score) for m in reversed(members))
            if not full:
                break
            # The last group may be cut short: read it again from its start, ascending.
            last = groups[-1][0]
            below = int(await self.redis.zcount(key, "-inf", f"({last!r}"))
            remaining = n - len(out)
            tail = await self._group_from(key, last, below, remaining)
            out.extend(tail)
            if len(tail) < remaining:
                upper = f"({last!r}"
        return out[:n]

    async def segment_page(
        self,
        key: str,
        filter_key: str | Sequence[str] | None,
        min_risk: float | None,
        limit: int,
        after: Position | None,
    ) -> Page:
        """One page of the zset `key`, keeping members of `filter_key` (of every one, when a
        sequence) only when given.

        With a filter at most max(1000, 20 * limit) members are examined per page, so a page
        can be short (or empty) with a next position even though more matches follow.
        """
        collected: list[Member] = []
        pos = after
        scanned = 0
        budget = max(1000, 20 * limit) if filter_key else limit
        exhausted = False
        more_known = False
        while len(collected) < limit and scanned < budget:
            need = limit - len(collected)
            chunk = min(max(50, 2 * need) if filter_key else need, budget - scanned)
            batch = await self._after(key, pos, min_risk, chunk)
            keep = [True] * len(batch)
            if filter_key and batch:
                members = [m for m, _ in batch]
                for fkey in [filter_key] if isinstance(filter_key, str) else filter_key:
                    scores = await self.redis.zmscore(fkey, members)
                    keep = [k and s is not None for k, s in zip(keep, scores, strict=True)]
            used = 0
            for (member, score), ok in zip(batch, keep, strict=True):
                used += 1
                scanned += 1
                pos = Position(score, member)
                if ok:
                    collected.append((member, score))
                    if len(collected) == limit:
                        break
            if used < len(batch):
                more_known = True
                break
            if len(batch) < chunk:
                exhausted = True
                break
        if not exhausted and not more_known and pos is not None:
            exhausted = not await self._after(key, pos, min_risk, 1)
        return Page(await self._describe(collected), None if exhausted else pos)

    async def _describe(self, members: list[Member]) -> list[dict[str, Any]]:
        if not members:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for member, _ in members:
                pipe.hmget(viewkeys.user_key(self.prefix, member), ["stage", "tier"])
            rows = await pipe.execute()
        return [
            {"user_id": member, "stage": row[0], "tier": row[1], "risk_score": score}
            for (member, score), row in zip(members, rows, strict=True)
        ]
