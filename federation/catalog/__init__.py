"""The query catalog: one module per joint query kind, and the one registry of kinds (docs/protocol.md,
"Query kinds").

Adding a kind is one module (a :class:`~federation.catalog.base.QueryKind` subclass and its ``KIND``
instance), its oracle test, and one line in :data:`KINDS`. Everything else derives from the catalog: the
broker's round plans and joins, every adapter's check of a round, the CLI's flags, ``DescribeFederation``'s
schema and the scenario's per-agency allowed kinds.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import UTC, date, datetime
from types import MappingProxyType

from federation.catalog import (
    cases,
    exposure,
    flows,
    importation_risk,
    outflow,
    population,
    return_to_work,
    trend,
    warning,
)
from federation.catalog.aggregates import AGGREGATES
from federation.catalog.base import NATIONAL, QueryKind, Release, RoundPlan, Scope
from federation.catalog.result import QueryResult, Table
from federation.errors import InvalidQuery
from federation.queries import Query, check_envelope, parse_envelope, string_params

__all__ = [
    "KINDS",
    "NATIONAL",
    "Query",
    "QueryKind",
    "QueryResult",
    "Release",
    "RoundPlan",
    "Scope",
    "Table",
    "agency_query_kinds",
    "kind",
    "new_query",
    "parse_query",
]


def _registry(*kinds: QueryKind) -> Mapping[str, QueryKind]:
    table: dict[str, QueryKind] = {}
    for entry in kinds:
        if not isinstance(entry, QueryKind):
            raise TypeError(f"catalog entry {entry!r} is not a QueryKind")
        if entry.name in table:
            raise TypeError(f"query kind {entry.name!r} is registered twice")
        table[entry.name] = entry
    return MappingProxyType(table)


KINDS: Mapping[str, QueryKind] = _registry(
    population.KIND,
    flows.KIND,
    cases.KIND,
    importation_risk.KIND,
    trend.KIND,
    warning.KIND,
    outflow.KIND,
    return_to_work.KIND,
    exposure.KIND,
)


def kind(name: str) -> QueryKind:
    """The catalog entry of a query kind; InvalidQuery listing the known kinds otherwise."""
    try:
        return KINDS[name]
    except KeyError:
        shown = name if len(name) <= 40 else name[:37] + "..."
        raise InvalidQuery(f"unknown query kind {shown!r}; known kinds: {', '.join(KINDS)}") from None


def parse_query(canonical: bytes) -> Query:
    """Parse a signed query's bytes and check the envelope and its kind's rules; InvalidQuery saying what to fix."""
    query = parse_envelope(canonical)
    kind(query.kind).validate(query)
    return query


def new_query(
    kind_name: str,
    *,
    start: date | None,
    end: date,
    params: Mapping[str, str],
    coordinator: str,
    data_start: date | None = None,
) -> Query:
    """A fresh query with a random nonce and the current UTC time, validated as :func:`parse_query` does.

    ``start`` may be None where the kind derives it (a trailing window, or the data's first day ``data_start``).
    """
    entry = kind(kind_name)
    first, signed_params = entry.resolve_window(start, end, string_params(dict(params)), data_start)
    query = Query(
        kind=entry.name,
        start=first,
        end=end,
        params=string_params(signed_params),
        coordinator=coordinator,
        nonce=secrets.token_hex(16),
        issued_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    check_envelope(query)
    entry.validate(query)
    return query


def agency_query_kinds(agency_kind: str) -> tuple[str, ...]:
    """The query kinds an agency of ``agency_kind`` contributes to: those whose round plans may use one of its
    aggregates (catalog order)."""
    return tuple(
        name for name, entry in KINDS.items() if any(AGGREGATES[a].agency_kind == agency_kind for a in entry.aggregates)
    )
