"""Reads of the Redis materialized view (layout: streams/view/keys.py). No writes.

Segment sets are zsets scored by risk; Redis orders equal scores by member ascending, and the
API lists risk descending then user id ascending, so a page is assembled from whole score
groups taken in descending order and read in ascending (forward) order inside each group.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from services.cursors import Position
from streams.view import keys as viewkeys

Member = tuple[str, float]
_GROUP_SCAN = 1000


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
    """The view's data for the API; `redis` must decode responses to str."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix

    async def user(self, user_id: str) -> dict[str, Any] | None:
        """The user's snapshot document with `version`, or None for an unknown user."""
        raw = await self.redis.hgetall(viewkeys.user_key(self.prefix, user_id))
        fields = {str(k): str(v) for k, v in raw.items()}
        if not fields:
            return None
        try:
            doc = json.loads(fields.get("doc") or "{}")
        except ValueError:
            doc = {}
        if not isinstance(doc, dict):
            doc = {}
        doc.setdefault("user_id", user_id)
        doc.setdefault("stage", fields.get("stage"))
        doc.setdefault("tier", fields.get("tier"))
        if "risk" in fields:
            doc.setdefault("risk_score", float(fields["risk"]))
        doc["version"] = int(fields.get("version") or doc.get("version") or 0)
        return doc

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

    async def recall_counts(self) -> dict[str, str]:
        """The recall totals hash: "group|tier|reason|outcome" -> churn warnings."""
        raw = await self.redis.hgetall(viewkeys.recall_counts_key(self.prefix))
        return {str(k): str(v) for k, v in raw.items()}

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
        filter_key: str | None,
        min_risk: float | None,
        limit: int,
        after: Position | None,
    ) -> Page:
        """One page of the zset `key`, keeping members of `filter_key` only when given.

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
                scores = await self.redis.zmscore(filter_key, [m for m, _ in batch])
                keep = [s is not None for s in scores]
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
