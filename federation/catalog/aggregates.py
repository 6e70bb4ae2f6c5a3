"""The aggregates an adapter can compute, and the length and layout of each one's vector.

This table is the one place both sides agree on what a round's vector is: the broker plans a round's length from
it, every adapter checks the round it is asked for against it, and the adapter's SQL dispatch must cover every
name in it (docs/protocol.md, "Vector layouts"). ``n`` is the number of districts of the domain (ascending
codes: the vector index), ``days`` the number of days of the inclusive window.

A provincial coordinator's round may be limited to its jurisdiction (:data:`LAYOUTS`): the round's params then
carry ``layout`` and ``province``, and ``m`` is the number of the domain's districts inside that province
(ascending codes: their own index). ``inside`` keeps the aggregate's own layout over those m districts;
``border`` is an origin × destination vector over the m districts plus one "outside" row and column (position
m), whose outside × outside cell is not part of it; ``inflow`` is every origin of the domain × the m inside
destinations. A round without ``layout`` is over the whole domain.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from types import MappingProxyType

import numpy as np
from numpy.typing import NDArray

from federation.errors import InvalidQuery
from federation.vocabulary import AGENCY_KINDS, CASE_ORIGINS, CASE_STATUSES

#: Round params that limit a round to a province (never an aggregate's own params).
LAYOUT_PARAM = "layout"
PROVINCE_PARAM = "province"
SCOPE_PARAMS = (LAYOUT_PARAM, PROVINCE_PARAM)


@dataclass(frozen=True)
class AggregateSpec:
    """One aggregate: which agency kind computes it, whether it has a window, the params it accepts, and its
    vector: ``length(n, days)`` uint64 cells laid out as ``layout`` says, the district index leading (so the
    ``inside`` layout is the same over m districts). ``limited`` names the provincial layouts it may be
    computed in (:data:`LAYOUTS`)."""

    name: str
    agency_kind: str
    windowed: bool
    params: tuple[str, ...]
    layout: str
    length: Callable[[int, int], int]
    limited: tuple[str, ...] = ("inside",)


@dataclass(frozen=True)
class Layout:
    """A provincial limit of a round's vector: its index and its length over n domain districts, m of them
    inside the province, for an aggregate of ``length(n, days)`` cells (docs/protocol.md, "Vector layouts")."""

    name: str
    index: str
    length: Callable[[AggregateSpec, int, int, int], int]


def _inside_length(spec: AggregateSpec, n: int, m: int, days: int) -> int:
    return spec.length(m, days)


#: The provincial layouts. ``border``'s outside × outside cell would be the last, (m + 1)² − 1: it is left out.
LAYOUTS: Mapping[str, Layout] = MappingProxyType(
    {
        "inside": Layout("inside", "the aggregate's own index over the m inside districts", _inside_length),
        "border": Layout(
            "border", "o * (m + 1) + d, position m = outside the province", lambda spec, n, m, days: (m + 1) ** 2 - 1
        ),
        "inflow": Layout("inflow", "o * m + d, o over the domain, d over the inside", lambda spec, n, m, days: n * m),
    }
)
# An origin × destination answer needs an end outside the province (border totals, or inflows from every
# origin), so the trips aggregates have no inside-only layout.
_OD_LAYOUTS = ("border", "inflow")


def _specs(*specs: AggregateSpec) -> Mapping[str, AggregateSpec]:
    table = {spec.name: spec for spec in specs}
    for spec in specs:
        if spec.agency_kind not in AGENCY_KINDS or not spec.name.startswith(spec.agency_kind + "."):
            raise TypeError(f"aggregate {spec.name!r} must be named after its agency kind, one of {AGENCY_KINDS}")
        if set(spec.params) & set(SCOPE_PARAMS) or not set(spec.limited) <= set(LAYOUTS):
            raise TypeError(f"aggregate {spec.name!r}: params may not be {SCOPE_PARAMS}, layouts must be in LAYOUTS")
    if len(table) != len(specs):
        raise TypeError("aggregate names must be unique")
    return MappingProxyType(table)


AGGREGATES: Mapping[str, AggregateSpec] = _specs(
    AggregateSpec("telecom.presence", "telecom", True, (), "d * days + t", lambda n, days: n * days),
    AggregateSpec("telecom.residents", "telecom", False, (), "d", lambda n, days: n),
    AggregateSpec("telecom.trips", "telecom", True, (), "o * n + d", lambda n, days: n * n, _OD_LAYOUTS),
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
    AggregateSpec("health.cluster_cases", "health", True, (), "d", lambda n, days: n),
    AggregateSpec("transport.trips", "transport", True, ("mode",), "o * n + d", lambda n, days: n * n, _OD_LAYOUTS),
)


def aggregate_spec(name: str) -> AggregateSpec:
    """The spec of aggregate ``name``; InvalidQuery naming the known ones otherwise."""
    try:
        return AGGREGATES[name]
    except KeyError:
        shown = name if len(name) <= 40 else name[:37] + "..."
        raise InvalidQuery(f"unknown aggregate {shown!r}; known: {', '.join(AGGREGATES)}") from None


def vector_length(
    name: str,
    n_districts: int,
    start: date | None,
    end: date | None,
    layout: str | None = None,
    n_inside: int = 0,
) -> int:
    """Number of uint64 cells of aggregate ``name`` over ``n_districts`` and the inclusive window; with a
    provincial ``layout``, over the ``n_inside`` districts of the province as that layout says."""
    spec = aggregate_spec(name)
    days = 0
    if spec.windowed:
        if start is None or end is None or end < start:
            raise InvalidQuery(f"{name} needs a window with start <= end, got {start}..{end}")
        days = (end - start).days + 1
    if layout is None:
        return spec.length(n_districts, days)
    check_layout(spec, layout)
    return LAYOUTS[layout].length(spec, n_districts, n_inside, days)


def check_layout(spec: AggregateSpec, layout: str) -> None:
    """InvalidQuery unless ``spec`` may be computed in the provincial ``layout``."""
    if layout not in spec.limited:
        shown = layout if len(layout) <= 20 else layout[:17] + "..."
        raise InvalidQuery(f"{spec.name} has no layout {shown!r}; it may be limited to: {', '.join(spec.limited)}")


@dataclass(frozen=True)
class ODFrame:
    """Where each domain district's trips land in an origin × destination vector.

    ``origin[i]`` / ``destination[i]`` is the row / column of domain district i (int64; −1: trips with that end
    there are not counted), a row has ``columns`` cells, and a cell at position ``row * columns + column``
    counts only below ``cells`` (the border layout's outside × outside cell is past it).
    """

    origin: NDArray[np.int64]
    destination: NDArray[np.int64]
    columns: int
    cells: int


def od_frame(layout: str | None, inside: NDArray[np.bool_]) -> ODFrame:
    """The frame of a trips vector over the domain (``layout`` None), or limited to the ``inside`` districts
    (boolean mask over the domain) in the ``border`` or ``inflow`` layout."""
    n = int(inside.shape[0])
    whole = np.arange(n, dtype=np.int64)
    if layout is None:
        return ODFrame(whole, whole, n, n * n)
    m = int(inside.sum())
    ranks = np.full(n, -1, dtype=np.int64)
    ranks[inside] = np.arange(m, dtype=np.int64)
    if layout == "border":
        edge = np.where(inside, ranks, m)
        return ODFrame(edge, edge, m + 1, (m + 1) ** 2 - 1)
    if layout == "inflow":
        return ODFrame(whole, ranks, m, n * m)
    raise InvalidQuery(f"no trips layout {layout[:20]!r}; use one of {', '.join(_OD_LAYOUTS)}")


def widen(counts: NDArray[np.int64], layout: str, inside: NDArray[np.bool_]) -> NDArray[np.int64]:
    """An ``inside`` or ``inflow`` round's counts in the whole-domain layout (int64, flat): every cell the
    round did not compute, a district outside the province (as the district, or as the destination), is 0."""
    n, m = int(inside.shape[0]), int(inside.sum())
    if layout == "inside":
        per_district = counts.reshape(m, -1)
        wide = np.zeros((n, per_district.shape[1]), dtype=np.int64)
        wide[inside] = per_district
        return wide.reshape(-1)
    if layout == "inflow":
        wide = np.zeros((n, n), dtype=np.int64)
        wide[:, inside] = counts.reshape(n, m)
        return wide.reshape(-1)
    raise InvalidQuery(f"a {layout!r} round has no whole-domain form; read it with border_parts")


def border_parts(
    counts: NDArray[np.int64], n_inside: int
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """A ``border`` round's counts as (inside × inside (m, m), each inside origin's trips to outside the
    province (m,), each inside destination's trips from outside (m,)), all int64."""
    m = n_inside
    square = np.append(counts.astype(np.int64), 0).reshape(m + 1, m + 1)
    return square[:m, :m].copy(), square[:m, m].copy(), square[m, :m].copy()
