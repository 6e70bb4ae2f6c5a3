"""The aggregates an adapter can compute, and the length and layout of each one's vector.

This table is the one place both sides agree on what a round's vector is: the broker plans a round's length from
it, every adapter checks the round it is asked for against it, and the adapter's SQL dispatch must cover every
name in it (docs/protocol.md, "Vector layouts"). ``n`` is the number of districts of the domain (ascending
codes: the vector index), ``days`` the number of days of the inclusive window.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from types import MappingProxyType

from federation.errors import InvalidQuery
from federation.vocabulary import AGENCY_KINDS, CASE_ORIGINS, CASE_STATUSES


@dataclass(frozen=True)
class AggregateSpec:
    """One aggregate: which agency kind computes it, whether it has a window, the params it accepts, and its
    vector: ``length(n, days)`` uint64 cells laid out as ``layout`` says."""

    name: str
    agency_kind: str
    windowed: bool
    params: tuple[str, ...]
    layout: str
    length: Callable[[int, int], int]


def _specs(*specs: AggregateSpec) -> Mapping[str, AggregateSpec]:
    table = {spec.name: spec for spec in specs}
    for spec in specs:
        if spec.agency_kind not in AGENCY_KINDS or not spec.name.startswith(spec.agency_kind + "."):
            raise TypeError(f"aggregate {spec.name!r} must be named after its agency kind, one of {AGENCY_KINDS}")
    if len(table) != len(specs):
        raise TypeError("aggregate names must be unique")
    return MappingProxyType(table)


AGGREGATES: Mapping[str, AggregateSpec] = _specs(
    AggregateSpec("telecom.presence", "telecom", True, (), "d * days + t", lambda n, days: n * days),
    AggregateSpec("telecom.residents", "telecom", False, (), "d", lambda n, days: n),
    AggregateSpec("telecom.trips", "telecom", True, (), "o * n + d", lambda n, days: n * n),
    AggregateSpec("telecom.roamers", "telecom", True, ("home_prefix",), "d * days + t", lambda n, days: n * days),
    AggregateSpec("telecom.arrivals", "telecom", True, ("home_prefix",), "d", lambda n, days: n),
    AggregateSpec("telecom.exposure", "telecom", True, ("risk_districts",), "d * 2 + j", lambda n, days: n * 2),
    AggregateSpec("health.cases", "health", True, (), "d * 3 + s", lambda n, days: n * len(CASE_STATUSES)),
    AggregateSpec(
        "health.confirmed_daily",
        "health",
        True,
        ("date",),
        "(d * days + t) * 2 + o",
        lambda n, days: n * days * len(CASE_ORIGINS),
    ),
    AggregateSpec("health.clusters", "health", True, (), "d * days + t", lambda n, days: n * days),
    AggregateSpec("transport.trips", "transport", True, ("mode",), "o * n + d", lambda n, days: n * n),
)


def aggregate_spec(name: str) -> AggregateSpec:
    """The spec of aggregate ``name``; InvalidQuery naming the known ones otherwise."""
    try:
        return AGGREGATES[name]
    except KeyError:
        shown = name if len(name) <= 40 else name[:37] + "..."
        raise InvalidQuery(f"unknown aggregate {shown!r}; known: {', '.join(AGGREGATES)}") from None


def vector_length(name: str, n_districts: int, start: date | None, end: date | None) -> int:
    """Number of uint64 cells of aggregate ``name`` over ``n_districts`` and the inclusive window."""
    spec = aggregate_spec(name)
    if not spec.windowed:
        return spec.length(n_districts, 0)
    if start is None or end is None or end < start:
        raise InvalidQuery(f"{name} needs a window with start <= end, got {start}..{end}")
    return spec.length(n_districts, (end - start).days + 1)
