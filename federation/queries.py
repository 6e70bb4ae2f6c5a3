"""The signed query envelope (docs/protocol.md, "Signed queries"): what a coordinator signs, its canonical
bytes, and its parsing.

A :class:`Query` names its kind, an inclusive window of whole days, string params, the coordinator, a nonce and
the time it was issued. Kind-specific rules (which params, the window, the rounds) live in
:mod:`federation.catalog`; :func:`federation.catalog.parse_query` applies both.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from federation.bounds import MAX_CANONICAL_QUERY_BYTES, MAX_QUERY_JSON_DEPTH, bounded_reason, json_depth
from federation.errors import InvalidQuery
from federation.vocabulary import MAX_WINDOW_DAYS

FIELDS = ("kind", "start", "end", "params", "coordinator", "nonce", "issued_at")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_ISSUED_AT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
_NONCE = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class Query:
    """One coordinator query. ``start``/``end`` are an inclusive window of whole days."""

    kind: str
    start: date
    end: date
    params: Mapping[str, str]
    coordinator: str
    nonce: str
    issued_at: str

    def canonical(self) -> bytes:
        """The signed encoding: JSON with sorted keys, separators ``(",", ":")``, UTF-8, non-ASCII kept as is."""
        document = {
            "kind": self.kind,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "params": dict(self.params),
            "coordinator": self.coordinator,
            "nonce": self.nonce,
            "issued_at": self.issued_at,
        }
        return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    @property
    def window_days(self) -> int:
        """Number of days in the inclusive window."""
        return (self.end - self.start).days + 1


def query_hash(canonical: bytes) -> bytes:
    """sha256 of the canonical query bytes (32 bytes), as bound into every key advert."""
    return hashlib.sha256(canonical).digest()


def parse_envelope(canonical: bytes) -> Query:
    """Parse a query's JSON and check the envelope (fields, types, dates, nonce, time, window);
    InvalidQuery saying what to fix. The kind's own rules are checked by :func:`federation.catalog.parse_query`.
    """
    if len(canonical) > MAX_CANONICAL_QUERY_BYTES:
        raise InvalidQuery(
            f"query is {len(canonical)} bytes; at most {MAX_CANONICAL_QUERY_BYTES} are accepted: "
            "ask for fewer districts"
        )
    try:
        text = canonical.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidQuery(f"query is not UTF-8 (bad byte at position {exc.start}); encode the JSON as UTF-8") from None
    # json.loads recurses once per level: bound the depth first so no query can exhaust the stack.
    depth = json_depth(canonical)
    if depth > MAX_QUERY_JSON_DEPTH:
        raise InvalidQuery(f"query nests {depth} levels deep; a query is an object of strings and one params object")
    try:
        document = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except _DuplicateKey as exc:
        raise InvalidQuery(f"query has the key {bounded_reason(exc.args[0], 64)!r} twice; keep one") from None
    except json.JSONDecodeError as exc:
        raise InvalidQuery(f"query is not valid JSON (at line {exc.lineno}, column {exc.colno})") from None
    except (ValueError, RecursionError):
        raise InvalidQuery("query is not valid JSON") from None
    if not isinstance(document, dict):
        raise InvalidQuery("query must be a JSON object with keys " + ", ".join(sorted(FIELDS)))
    missing = [f for f in FIELDS if f not in document]
    if missing:
        raise InvalidQuery("query is missing " + ", ".join(missing))
    unknown = sorted(set(document) - set(FIELDS))
    if unknown:
        raise InvalidQuery(
            "query has unknown keys " + ", ".join(u[:40] for u in unknown[:5]) + "; allowed: " + ", ".join(FIELDS)
        )
    for name in ("kind", "start", "end", "coordinator", "nonce", "issued_at"):
        if not isinstance(document[name], str):
            raise InvalidQuery(f"query field {name!r} must be a string, got {type(document[name]).__name__}")
    params = document["params"]
    if not isinstance(params, dict):
        raise InvalidQuery("query field 'params' must be an object of string values")
    query = Query(
        kind=document["kind"],
        start=_parse_date("start", document["start"]),
        end=_parse_date("end", document["end"]),
        params=string_params(params),
        coordinator=document["coordinator"],
        nonce=document["nonce"],
        issued_at=document["issued_at"],
    )
    check_envelope(query)
    return query


def string_params(params: Mapping[str, Any]) -> dict[str, str]:
    """``params`` sorted by key, every value a string (InvalidQuery otherwise)."""
    for key, value in params.items():
        if not isinstance(value, str):
            raise InvalidQuery(f"param {str(key)[:40]!r} must be a string, got {type(value).__name__}")
    return dict(sorted(params.items()))


def check_envelope(query: Query) -> None:
    """The rules every query obeys whatever its kind."""
    if query.start > query.end:
        raise InvalidQuery(f"inverted window: start {query.start} is after end {query.end}; swap them")
    if query.window_days > MAX_WINDOW_DAYS:
        raise InvalidQuery(f"window of {query.window_days} days exceeds the limit of {MAX_WINDOW_DAYS}; shorten it")
    if not query.coordinator:
        raise InvalidQuery("coordinator is empty; give the coordinator's id")
    if not _NONCE.fullmatch(query.nonce):
        raise InvalidQuery(f"nonce {query.nonce[:40]!r} must be 32 lowercase hex characters")
    if not _ISSUED_AT.fullmatch(query.issued_at):
        raise InvalidQuery(
            f"issued_at {query.issued_at[:40]!r} must be ISO-8601 UTC seconds, e.g. 2026-11-29T05:00:00Z"
        )
    try:
        datetime.strptime(query.issued_at, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        raise InvalidQuery(f"issued_at {query.issued_at!r} is not a valid time") from None


class _DuplicateKey(ValueError):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


def _parse_date(field: str, text: str) -> date:
    if not _DATE.fullmatch(text):
        raise InvalidQuery(f"{field} {text[:40]!r} is not a date; write it as YYYY-MM-DD")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidQuery(f"{field} {text!r} is not a valid calendar date; write it as YYYY-MM-DD") from None
