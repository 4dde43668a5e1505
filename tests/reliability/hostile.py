"""A seeded generator of malformed and hostile `user-events` records, each with the dead-letter
reasons it may get (most have exactly one)."""

from __future__ import annotations

import random
from collections.abc import Callable

import msgspec

from tests.integration.events import day_base

Hostile = tuple[str, bytes | None, bytes, frozenset[str]]  # (kind, key, value, reasons)


def _doc(rng: random.Random, user: str, n: int, **fields: object) -> bytes:
    doc: dict[str, object] = {
        "event_id": f"bad{n}",
        "user_id": user,
        "type": "page_view",
        "ts": day_base(1) + rng.randrange(3_600_000),
    }
    doc.update(fields)
    return msgspec.json.encode(doc)


def _kinds(
    rng: random.Random, users: list[str]
) -> list[tuple[str, Callable[[int], tuple[bytes | None, bytes]], set[str]]]:
    def u() -> str:
        return rng.choice(users)

    def keyed(make: Callable[[str, int], bytes]) -> Callable[[int], tuple[bytes | None, bytes]]:
        def build(n: int) -> tuple[bytes | None, bytes]:
            user = u()
            return user.encode(), make(user, n)

        return build

    deep = 20_000  # 40 KB of brackets: under the size limit, far over any sane depth
    return [
        ("wrong_type_id", keyed(lambda us, n: _doc(rng, us, n, event_id=n)), {"wrong_type"}),
        ("wrong_type_ts", keyed(lambda us, n: _doc(rng, us, n, ts=[1, 2])), {"wrong_type"}),
        ("bool_ts", keyed(lambda us, n: _doc(rng, us, n, ts=True)), {"wrong_type"}),
        ("amount_list", keyed(lambda us, n: _doc(rng, us, n, amount={"x": 1})), {"wrong_type"}),
        (
            "huge_id",
            keyed(lambda us, n: _doc(rng, us, n, event_id="x" * 20_000)),
            {"invalid_value"},
        ),
        (
            "huge_string",
            keyed(lambda us, n: _doc(rng, us, n, properties={"s": "y" * 70_000})),
            {"payload_too_large"},
        ),
        (
            "deep_nesting",
            keyed(
                lambda us, n: (
                    _doc(rng, us, n)[:-1]
                    + b',"properties":{"d":'
                    + b"[" * deep
                    + b"]" * deep
                    + b"}}"
                )
            ),
            {"invalid_json"},
        ),
        (
            "invalid_utf8",
            keyed(
                lambda us, n: _doc(rng, us, n, type="page_view").replace(b"page_view", b"p\xff\xfe")
            ),
            {"invalid_json"},
        ),
        ("random_bytes", lambda n: (None, rng.randbytes(rng.randrange(1, 300))), {"invalid_json"}),
        ("empty", lambda n: (u().encode(), b""), {"invalid_json"}),
        (
            "far_future",
            keyed(lambda us, n: _doc(rng, us, n, ts="9999-12-31T23:59:59Z")),
            {"timestamp_out_of_range"},
        ),
        (
            "far_future_ms",
            keyed(lambda us, n: _doc(rng, us, n, ts=10**15)),
            {"timestamp_out_of_range", "wrong_type"},
        ),
        (
            "far_past",
            keyed(lambda us, n: _doc(rng, us, n, ts="1970-01-01T00:00:00Z")),
            {"timestamp_out_of_range"},
        ),
        (
            "negative_ts",
            keyed(lambda us, n: _doc(rng, us, n, ts=-1)),
            {"timestamp_out_of_range", "wrong_type"},
        ),
        (
            "nan_amount",
            keyed(lambda us, n: _doc(rng, us, n, type="purchase", amount="NaN")),
            {"invalid_value"},
        ),
        (
            "nan_literal",
            keyed(
                lambda us, n: _doc(rng, us, n, type="purchase", amount=1).replace(
                    b'"amount":1', b'"amount":NaN'
                )
            ),
            {"invalid_json"},
        ),
        (
            "inf_amount",
            keyed(lambda us, n: _doc(rng, us, n, type="purchase", amount="1e400")),
            {"invalid_value"},
        ),
        (
            "negative_amount",
            keyed(lambda us, n: _doc(rng, us, n, type="purchase", amount=-5)),
            {"invalid_value"},
        ),
        (
            "not_object",
            lambda n: (u().encode(), rng.choice([b"[]", b'"x"', b"null", b"42"])),
            {"not_an_object"},
        ),
        (
            "missing",
            keyed(lambda us, n: msgspec.json.encode({"user_id": us, "type": "page_view"})),
            {"missing_field"},
        ),
        ("key_mismatch", lambda n: (b"someone-else", _doc(rng, u(), n)), {"key_mismatch"}),
        (
            "bad_type",
            keyed(lambda us, n: _doc(rng, us, n, type="DROP TABLE users;")),
            {"invalid_value"},
        ),
        ("empty_user", lambda n: (b"", _doc(rng, "", n)), {"invalid_value"}),
    ]


def hostile(n: int, users: list[str], *, seed: int, megabyte_payloads: int) -> list[Hostile]:
    """`n` bad records (plus `megabyte_payloads` records of 1 MiB), kinds in random order."""
    rng = random.Random(seed)
    kinds = _kinds(rng, users)
    out: list[Hostile] = []
    for i in range(n):
        kind, build, reasons = kinds[i % len(kinds)]
        key, value = build(i)
        out.append((kind, key, value, frozenset(reasons)))
    for i in range(megabyte_payloads):
        user = rng.choice(users)
        value = _doc(rng, user, n + i, properties={"blob": "z" * (1 << 20)})
        out.append(("megabyte", user.encode(), value, frozenset({"payload_too_large"})))
    rng.shuffle(out)
    return out
