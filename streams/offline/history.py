"""Reading event history files for replay: JSONL in the input contract, or CSV with a mapping.

A CSV such as `user_id,date,amount` becomes contract events: the user column, the time column
(RFC 3339, a plain date meaning UTC midnight, or epoch millis), an optional amount and type
(a fixed default type otherwise, e.g. "purchase"), and an event id from an id column or, when
there is none, derived from the row's content (see `derived_event_id`), so that it is stable
across runs and does not depend on where the row stands in the file.
A file without a header row names its columns in `CsvMapping.columns`; the delimiter
"whitespace" splits on runs of blanks (as in the CDNOW files Fader and Hardie publish).
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

import msgspec

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_COMPACT_DATE = re.compile(r"^\d{8}$")
_json = msgspec.json.Encoder()


class HistoryError(ValueError):
    """The file cannot be read as the given format (the message names the row and column)."""


@dataclass(frozen=True)
class CsvMapping:
    """Which CSV columns hold what. Empty names mean "not in the file"."""

    user: str = "user_id"
    time: str = "ts"
    amount: str = "amount"
    type: str = "type"
    event_id: str = "event_id"
    default_type: str = "purchase"
    delimiter: str = ","  # "whitespace": runs of blanks, leading ones ignored
    columns: tuple[str, ...] = ()  # names for a file without a header row


def _ts(text: str) -> str | int:
    text = text.strip()
    if _DATE.match(text):
        return text + "T00:00:00Z"
    if _COMPACT_DATE.match(text):
        return f"{text[:4]}-{text[4:6]}-{text[6:]}T00:00:00Z"
    if text.isascii() and text.isdigit():
        return int(text)
    return text


def derived_event_id(values: Iterable[str], seen: dict[bytes, int]) -> str:
    """The event id of a row without one: a digest of all its values, then ":2", ":3", ...
    for the second, third, ... row with the very same values (two equal orders on one day
    are two purchases, not a resent record). `seen` counts the digests read so far.

    Position-free so that a file gives the same events in any row order; the cost is one
    entry in `seen` per distinct row (about 100 bytes), so give a very large history an id
    column.
    """
    digest = hashlib.blake2b("\x1f".join(values).encode(), digest_size=8).digest()
    n = seen.get(digest, 0) + 1
    seen[digest] = n
    return f"row-{digest.hex()}" if n == 1 else f"row-{digest.hex()}:{n}"


def _rows(f: TextIO, mapping: CsvMapping) -> tuple[list[str], Iterator[dict[str, str]]]:
    """The column names and the rows as dicts, by the mapping's delimiter and columns."""
    names = list(mapping.columns) or None
    if mapping.delimiter == "whitespace":
        lines = (line.split() for line in f)
        if names is None:
            names = next(lines, [])
        cols = names
        return cols, (dict(zip(cols, parts, strict=False)) for parts in lines if parts)
    reader = csv.DictReader(f, fieldnames=names, delimiter=mapping.delimiter)
    return list(reader.fieldnames or []), iter(reader)


def _values(row: dict[str, str], fields: list[str]) -> list[str]:
    """The row's values in column order, trimmed (a file's spacing is not content)."""
    return [(row.get(name) or "").strip() for name in fields]


def read_csv(path: Path, mapping: CsvMapping) -> Iterator[tuple[bytes | None, bytes]]:
    """Each row as a contract event (key = its user id). Raises HistoryError if the user or
    time column is missing; a bad value in a row is left for the replay to dead-letter."""
    with path.open(newline="", encoding="utf-8") as f:
        fields, reader = _rows(f, mapping)
        for col in (mapping.user, mapping.time):
            if col not in fields:
                raise HistoryError(f"{path}: no column {col!r} (columns: {', '.join(fields)})")
        seen: dict[bytes, int] = {}
        for row in reader:
            user = (row.get(mapping.user) or "").strip()
            given = (row.get(mapping.event_id) or "").strip()
            doc: dict[str, object] = {
                "event_id": given or derived_event_id(_values(row, fields), seen),
                "user_id": user,
                "type": (row.get(mapping.type) or "").strip() or mapping.default_type,
                "ts": _ts(row.get(mapping.time) or ""),
            }
            amount = (row.get(mapping.amount) or "").strip() if mapping.amount else ""
            if amount:
                doc["amount"] = amount
            yield (user.encode() if user else None), _json.encode(doc)


def read_jsonl(path: Path) -> Iterator[tuple[bytes | None, bytes]]:
    """Each non-empty line is one event as it would be published (key = its user id)."""
    with path.open("rb") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                user = msgspec.json.decode(line).get("user_id")
            except (msgspec.DecodeError, AttributeError, UnicodeDecodeError):
                user = None  # the replay dead-letters it with the precise reason
            yield (user.encode() if isinstance(user, str) else None), line


def read_history(
    path: Path, mapping: CsvMapping | None = None
) -> Iterator[tuple[bytes | None, bytes]]:
    """Records from a .jsonl/.ndjson or .csv/.tsv file."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return read_jsonl(path)
    if suffix in (".csv", ".tsv", ".txt"):
        m = mapping or CsvMapping()
        if suffix == ".tsv" and m.delimiter == ",":
            m = replace(m, delimiter="\t")
        return read_csv(path, m)
    raise HistoryError(f"{path}: unknown format {suffix!r} (use .jsonl or .csv)")
