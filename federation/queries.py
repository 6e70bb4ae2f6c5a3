"""Joint query specs and the secure-aggregation rounds each one requires (DESIGN §5).

Shared by the broker and the adapters. The coordinator signs a :class:`Query` as canonical JSON; the broker plans
its rounds with :func:`plan_rounds`, and an adapter asked to contribute to a round calls :func:`required_round` on
the same signed bytes, so a broker cannot make an agency compute an aggregate the coordinator never asked for.

Every parameter value is a string, exactly as signed. Defaults are *not* written into ``params``: the signed bytes
stay what the coordinator sent, and the accessors (:func:`flows_source`, :func:`importation_params`,
:func:`district_filter`) apply the defaults.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
from numpy.typing import NDArray

from federation.bounds import MAX_CANONICAL_QUERY_BYTES, MAX_QUERY_JSON_DEPTH, bounded_reason, json_depth
from federation.errors import InvalidQuery, UnknownDistrict

QUERY_KINDS = ("population", "flows", "cases", "importation-risk")
AGGREGATES = ("telecom.presence", "telecom.residents", "telecom.trips", "health.cases", "transport.trips")
FLOW_SOURCES = ("telecom", "transport")
TRANSPORT_MODES = ("all", "rail", "air", "coach")
CASE_STATUSES = ("confirmed", "suspected", "close_contact")

# A hard ceiling whatever an agency's policy says: a year of presence over the national registry is ~1 M cells.
MAX_WINDOW_DAYS = 366
MAX_IMPORTATION_WINDOW_DAYS = 60
MAX_TOP_ORIGINS = 20
DEFAULT_WINDOW_DAYS = 14
DEFAULT_THRESHOLD = 1.0
DEFAULT_TOP = 3

_FIELDS = ("kind", "start", "end", "params", "coordinator", "nonce", "issued_at")
_PARAMS: Mapping[str, frozenset[str]] = {
    "population": frozenset({"districts"}),
    "flows": frozenset({"source", "mode", "districts"}),
    "cases": frozenset({"districts"}),
    "importation-risk": frozenset({"window_days", "threshold", "top", "districts"}),
}
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_ISSUED_AT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
_NONCE = re.compile(r"[0-9a-f]{32}")
_DISTRICT = re.compile(r"\d{6}")


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


@dataclass(frozen=True)
class RoundPlan:
    """One secure-aggregation round a query needs: which agency kind sums which aggregate over which window."""

    name: str
    agency_kind: str
    aggregate: str
    start: date | None
    end: date | None
    params: Mapping[str, str]


@dataclass(frozen=True)
class ImportationParams:
    window_days: int
    threshold: float
    top: int


def query_hash(canonical: bytes) -> bytes:
    """sha256 of the canonical query bytes (32 bytes), as bound into every key advert."""
    return hashlib.sha256(canonical).digest()


def parse_query(canonical: bytes) -> Query:
    """Parse and validate a query's JSON; raise :class:`InvalidQuery` saying what to fix.

    Key order and whitespace in the input do not matter; :meth:`Query.canonical` re-encodes canonically.
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
        raise InvalidQuery("query must be a JSON object with keys " + ", ".join(sorted(_FIELDS)))
    missing = [f for f in _FIELDS if f not in document]
    if missing:
        raise InvalidQuery("query is missing " + ", ".join(missing))
    unknown = sorted(set(document) - set(_FIELDS))
    if unknown:
        raise InvalidQuery("query has unknown keys " + ", ".join(unknown) + "; allowed: " + ", ".join(_FIELDS))
    for field in ("kind", "start", "end", "coordinator", "nonce", "issued_at"):
        if not isinstance(document[field], str):
            raise InvalidQuery(f"query field {field!r} must be a string, got {type(document[field]).__name__}")
    params = document["params"]
    if not isinstance(params, dict):
        raise InvalidQuery("query field 'params' must be an object of string values")
    query = Query(
        kind=document["kind"],
        start=_parse_date("start", document["start"]),
        end=_parse_date("end", document["end"]),
        params=_string_params(params),
        coordinator=document["coordinator"],
        nonce=document["nonce"],
        issued_at=document["issued_at"],
    )
    _validate(query)
    return query


def new_query(kind: str, *, start: date | None, end: date, params: Mapping[str, str], coordinator: str) -> Query:
    """Build a fresh query with a random nonce and the current UTC time, validated as :func:`parse_query` does.

    For ``importation-risk`` the window is ``window_days`` (default 14) ending at ``end``; if only ``start`` is
    given, ``window_days`` is written into params so the signed query states the window in both ways.
    """
    params = _string_params(dict(params))
    if kind == "importation-risk":
        if start is None:
            days = _window_days_param(params.get("window_days", str(DEFAULT_WINDOW_DAYS)))
            start = end - timedelta(days=days - 1)
        elif "window_days" not in params:
            params["window_days"] = str((end - start).days + 1)
    if start is None:
        raise InvalidQuery(f"{kind} needs a start date; pass --start YYYY-MM-DD")
    query = Query(
        kind=kind,
        start=start,
        end=end,
        params=params,
        coordinator=coordinator,
        nonce=secrets.token_hex(16),
        issued_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    _validate(query)
    return query


def flows_source(query: Query) -> tuple[str, str | None]:
    """(source, mode) of a flows query; mode is None for the telecom source."""
    source = query.params.get("source", "telecom")
    return (source, query.params.get("mode", "all")) if source == "transport" else (source, None)


def importation_params(query: Query) -> ImportationParams:
    """window_days, threshold (I_d at which to alert) and top (origins listed) of an importation-risk query."""
    return ImportationParams(
        window_days=_window_days_param(query.params.get("window_days", str(DEFAULT_WINDOW_DAYS))),
        threshold=_threshold_param(query.params.get("threshold", str(DEFAULT_THRESHOLD))),
        top=_top_param(query.params.get("top", str(DEFAULT_TOP))),
    )


def district_filter(query: Query) -> tuple[int, ...] | None:
    """District codes the output rows are restricted to (ascending, distinct), or None for the whole domain."""
    raw = query.params.get("districts")
    return None if raw is None else _districts_param(raw)


def district_mask(query: Query, codes: NDArray[np.int32]) -> NDArray[np.bool_]:
    """Boolean mask over the domain's ascending ``codes`` of the districts the output may list.

    Raises :class:`UnknownDistrict` naming any requested code that is not in the domain.
    """
    wanted = district_filter(query)
    if wanted is None:
        return np.ones(codes.shape[0], dtype=np.bool_)
    requested = np.asarray(wanted, dtype=np.int64)
    positions = np.searchsorted(codes, requested)
    found = positions < codes.shape[0]
    found[found] = codes[positions[found]] == requested[found]
    if not found.all():
        unknown = ", ".join(str(c) for c in requested[~found][:10])
        raise UnknownDistrict(f"districts {unknown} are not in this federation's domain; check the codes")
    mask = np.zeros(codes.shape[0], dtype=np.bool_)
    mask[positions] = True
    return mask


def plan_rounds(query: Query) -> tuple[RoundPlan, ...]:
    """The rounds a query needs, in the order the broker runs them. Round names are unique within a query."""
    if query.kind == "population":
        return (RoundPlan("presence", "telecom", "telecom.presence", query.start, query.end, {}),)
    if query.kind == "flows":
        # One source only: telecom and transport trips count the same travel twice, so they are never summed.
        source, mode = flows_source(query)
        if source == "transport":
            return (
                RoundPlan("trips", "transport", "transport.trips", query.start, query.end, {"mode": mode or "all"}),
            )
        return (RoundPlan("trips", "telecom", "telecom.trips", query.start, query.end, {}),)
    if query.kind == "cases":
        return (RoundPlan("cases", "health", "health.cases", query.start, query.end, {}),)
    if query.kind == "importation-risk":
        return (
            RoundPlan("trips", "telecom", "telecom.trips", query.start, query.end, {}),
            RoundPlan("residents", "telecom", "telecom.residents", None, None, {}),
            RoundPlan("confirmed", "health", "health.cases", query.start, query.end, {}),
        )
    raise InvalidQuery(_unknown_kind(query.kind))


def required_round(
    query: Query, aggregate: str, start: date | None, end: date | None, params: Mapping[str, str]
) -> RoundPlan:
    """The planned round matching exactly what a broker asks an adapter to compute, else :class:`InvalidQuery`."""
    for plan in plan_rounds(query):
        if (plan.aggregate, plan.start, plan.end, dict(plan.params)) == (aggregate, start, end, dict(params)):
            return plan
    window = "no window" if start is None else f"{start}..{end}"
    raise InvalidQuery(
        f"round {aggregate} over {window} with params {dict(params)} is not required by the signed "
        f"{query.kind} query {query.start}..{query.end}; refusing to compute it"
    )


def vector_length(aggregate: str, n_districts: int, start: date | None, end: date | None) -> int:
    """Number of uint64 cells of an aggregate's vector (DESIGN §3 layouts).

    telecom.presence: district × day, index ``d * days + t``; telecom.residents: ``n``; telecom.trips and
    transport.trips: origin × destination summed over the window, index ``o * n + d``; health.cases:
    district × status, index ``d * 3 + s`` with statuses (confirmed, suspected, close_contact).
    """
    if aggregate == "telecom.residents":
        return n_districts
    if aggregate in ("telecom.trips", "transport.trips"):
        return n_districts * n_districts
    if aggregate == "health.cases":
        return n_districts * len(CASE_STATUSES)
    if aggregate == "telecom.presence":
        if start is None or end is None or end < start:
            raise InvalidQuery(f"telecom.presence needs a window with start <= end, got {start}..{end}")
        return n_districts * ((end - start).days + 1)
    raise InvalidQuery(f"unknown aggregate {aggregate!r}; known: " + ", ".join(AGGREGATES))


# --- validation ---------------------------------------------------------------------------------------------


class _DuplicateKey(ValueError):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


def _unknown_kind(kind: str) -> str:
    return f"unknown query kind {kind!r}; known kinds: " + ", ".join(QUERY_KINDS)


def _parse_date(field: str, text: str) -> date:
    if not _DATE.fullmatch(text):
        raise InvalidQuery(f"{field} {text!r} is not a date; write it as YYYY-MM-DD")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidQuery(f"{field} {text!r} is not a valid date; write it as YYYY-MM-DD") from None


def _string_params(params: Mapping[str, Any]) -> dict[str, str]:
    for key, value in params.items():
        if not isinstance(value, str):
            raise InvalidQuery(f"param {key!r} must be a string, got {type(value).__name__} {value!r}")
    return dict(sorted(params.items()))


def _validate(query: Query) -> None:
    if query.kind not in QUERY_KINDS:
        raise InvalidQuery(_unknown_kind(query.kind))
    if query.start > query.end:
        raise InvalidQuery(f"inverted window: start {query.start} is after end {query.end}; swap them")
    if query.window_days > MAX_WINDOW_DAYS:
        raise InvalidQuery(f"window of {query.window_days} days exceeds the limit of {MAX_WINDOW_DAYS}; shorten it")
    if not query.coordinator:
        raise InvalidQuery("coordinator is empty; give the coordinator's id")
    if not _NONCE.fullmatch(query.nonce):
        raise InvalidQuery(f"nonce {query.nonce!r} must be 32 lowercase hex characters")
    if not _ISSUED_AT.fullmatch(query.issued_at):
        raise InvalidQuery(f"issued_at {query.issued_at!r} must be ISO-8601 UTC seconds, e.g. 2026-11-29T05:00:00Z")
    try:
        datetime.strptime(query.issued_at, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        raise InvalidQuery(f"issued_at {query.issued_at!r} is not a valid time") from None
    allowed = _PARAMS[query.kind]
    unknown = sorted(set(query.params) - allowed)
    if unknown:
        raise InvalidQuery(
            f"unknown params for {query.kind}: " + ", ".join(unknown) + "; allowed: " + ", ".join(sorted(allowed))
        )
    if "districts" in query.params:
        _districts_param(query.params["districts"])
    if query.kind == "flows":
        _validate_flows(query.params)
    if query.kind == "importation-risk":
        risk = importation_params(query)
        if query.window_days != risk.window_days:
            raise InvalidQuery(
                f"importation-risk window {query.start}..{query.end} is {query.window_days} days but window_days "
                f"is {risk.window_days}; set start to {query.end - timedelta(days=risk.window_days - 1)}"
            )


def _validate_flows(params: Mapping[str, str]) -> None:
    source = params.get("source", "telecom")
    if source not in FLOW_SOURCES:
        raise InvalidQuery(f"flows source {source!r} is unknown; use one of " + ", ".join(FLOW_SOURCES))
    mode = params.get("mode")
    if mode is None:
        return
    if source != "transport":
        raise InvalidQuery(f"mode={mode} applies only to source=transport; drop mode or set source=transport")
    if mode not in TRANSPORT_MODES:
        raise InvalidQuery(f"transport mode {mode!r} is unknown; use one of " + ", ".join(TRANSPORT_MODES))


def _window_days_param(text: str) -> int:
    if not re.fullmatch(r"[0-9]+", text) or not 1 <= int(text) <= MAX_IMPORTATION_WINDOW_DAYS:
        raise InvalidQuery(
            f"window_days {text!r} must be a whole number of days from 1 to {MAX_IMPORTATION_WINDOW_DAYS}"
        )
    return int(text)


def _threshold_param(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise InvalidQuery(f"threshold {text!r} must be a positive number, e.g. 1.0")
    return value


def _top_param(text: str) -> int:
    if not re.fullmatch(r"[0-9]+", text) or not 1 <= int(text) <= MAX_TOP_ORIGINS:
        raise InvalidQuery(f"top {text!r} must be a whole number from 1 to {MAX_TOP_ORIGINS}")
    return int(text)


def _districts_param(text: str) -> tuple[int, ...]:
    codes = [part.strip() for part in text.split(",")]
    bad = [c for c in codes if not _DISTRICT.fullmatch(c)]
    if bad:
        raise InvalidQuery(
            "districts must be comma-separated six-digit GB/T 2260 codes, e.g. 420102,420103; bad: "
            + ", ".join(repr(b) for b in bad[:5])
        )
    return tuple(sorted({int(c) for c in codes}))
