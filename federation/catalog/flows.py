"""``flows``: origin → destination trips over the window (docs/protocol.md, "flows").

One round, ``trips``: telecom.trips, or transport.trips for one mode (never both: they count the same travel
twice); index ``o * n + d``, summed over the window. Rows ``(origin, origin_name, destination,
destination_name, trips)`` for pairs o ≠ d with at least k trips, by trips descending then codes ascending; with
``--districts`` only pairs with either end in those districts. Pairs with ``0 < trips < k`` are dropped (that a
small flow exists is itself disclosive) and counted in ``suppressed``; zero pairs are neither listed nor counted.

For a provincial coordinator only pairs with both ends inside the province are listed, and each listed
district's trips across the border are summed exactly, each way, into one row whose other end is district
:data:`~federation.catalog.base.OUTSIDE` ("outside the province"), released only when that sum reaches k. Its
round is in the ``border`` layout (docs/protocol.md, "Vector layouts"): the agencies sum the border trips in
their stores, and trips between two outside districts are never computed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from federation.catalog.base import (
    DISTRICTS,
    OUTSIDE,
    OUTSIDE_NAME,
    Param,
    QueryKind,
    Release,
    RoundPlan,
    Scope,
    border_counts,
    plan,
)
from federation.catalog.disclosure import released_count
from federation.catalog.result import Cell, QueryResult
from federation.errors import InvalidQuery
from federation.queries import Query
from federation.registry import Registry
from federation.vocabulary import FLOW_SOURCES, TRANSPORT_MODE_CHOICES

COLUMNS = ("origin", "origin_name", "destination", "destination_name", "trips")


class Flows(QueryKind):
    name = "flows"
    summary = "origin → destination trips over the window, from telecom or from transport (never both)"
    disclosure = "mobility"
    params = (
        Param("source", "choice", "which agencies count the trips", default="telecom", choices=FLOW_SOURCES),
        Param("mode", "choice", "transport source only: one mode", choices=TRANSPORT_MODE_CHOICES),
        DISTRICTS,
    )
    aggregates = ("telecom.trips", "transport.trips")

    def check(self, query: Query, values: Mapping[str, Any]) -> None:
        if values["mode"] is not None and values["source"] != "transport":
            raise InvalidQuery(
                f"--mode {values['mode']} applies only to --source transport; drop --mode or set --source transport"
            )

    def source(self, query: Query) -> tuple[str, str | None]:
        """(source, mode) of the query; mode is None for the telecom source."""
        values = self.values(query)
        source: str = values["source"]
        return (source, values["mode"] or "all") if source == "transport" else (source, None)

    def rounds(self, query: Query, registry: Registry, scope: Scope) -> tuple[RoundPlan, ...]:
        source, mode = self.source(query)
        if source == "transport":
            trips = plan(
                "trips", "transport.trips", query.start, query.end, registry, scope, "border", mode=mode or "all"
            )
            return (trips,)
        return (plan("trips", "telecom.trips", query.start, query.end, registry, scope, "border"),)

    def od_matrix(
        self, query: Query, release: Release
    ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
        """Trips before suppression, int64 (exact, or signed noisy sums): (origins, destinations), the diagonal as
        summed (for a provincial scope only the inside × inside block, the round computes no more), and each
        district's trips to and from anywhere outside the scope's province (n,) each."""
        (trips,) = self.rounds(query, release.registry, release.scope)
        return border_counts(release, trips)

    def build(self, query: Query, release: Release) -> QueryResult:
        registry, k, scope = release.registry, release.mobility_k, release.scope
        signed, leaving, arriving = self.od_matrix(query, release)  # noisy cells stay signed until released
        trips = released_count(signed)
        n = len(registry)
        wanted = self.district_mask(query, registry, scope)
        inside = scope.inside(registry)
        eligible = (wanted[:, None] | wanted[None, :]) & inside[:, None] & inside[None, :] & ~np.eye(n, dtype=np.bool_)
        released = eligible & (trips >= k)
        suppressed = int((eligible & (trips > 0) & (trips < k)).sum())
        origin, destination = np.nonzero(released)
        counts = trips[origin, destination]
        order = np.lexsort((destination, origin, -counts))
        codes, names = registry.codes, registry.names
        rows: list[tuple[Cell, ...]] = [
            (int(codes[o]), names[o], int(codes[d]), names[d], c)
            for o, d, c in zip(origin[order].tolist(), destination[order].tolist(), counts[order].tolist(), strict=True)
        ]
        source, mode = self.source(query)
        notes = [f"source: {source}" + (f", mode: {mode}" if mode is not None else "")]
        if scope.province is not None:
            border, border_suppressed = _border_rows(
                released_count(leaving), released_count(arriving), registry, wanted, k
            )
            suppressed += border_suppressed
            rows = sorted([*rows, *border], key=lambda r: (-int(r[4] or 0), int(r[0] or 0), int(r[2] or 0)))
        notes.append(f"origin-destination pairs with fewer than k={k} trips (and more than 0) dropped: {suppressed}")
        if scope.province is not None:
            notes.append(
                f"flows across the border of province {scope.province} summed per district as district {OUTSIDE} "
                f"({OUTSIDE_NAME}), each way"
            )
        return QueryResult(query=query, columns=COLUMNS, rows=rows, suppressed=suppressed, notes=tuple(notes))


def _border_rows(
    leaving: NDArray[np.int64], arriving: NDArray[np.int64], registry: Registry, wanted: NDArray[np.bool_], k: int
) -> tuple[list[tuple[Cell, ...]], int]:
    """Each wanted district's exact trips to (``leaving``) and from (``arriving``) anywhere outside the province,
    as rows whose other end is :data:`OUTSIDE`, released where the total reaches k; and how many non-zero totals
    were below k."""
    rows: list[tuple[Cell, ...]] = []
    suppressed = 0
    for i in np.flatnonzero(wanted).tolist():
        code, name = int(registry.codes[i]), registry.names[i]
        for total, row in (
            (int(leaving[i]), (code, name, OUTSIDE, OUTSIDE_NAME)),
            (int(arriving[i]), (OUTSIDE, OUTSIDE_NAME, code, name)),
        ):
            if total >= k:
                rows.append((*row, total))
            elif total > 0:
                suppressed += 1
    return rows, suppressed


KIND = Flows()
