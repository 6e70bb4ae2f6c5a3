"""``flows``: origin → destination trips over the window (DESIGN §5).

One round, ``trips``: telecom.trips, or transport.trips for one mode (never both, they count the same travel
twice); index ``o * n + d``, summed over the window. Rows ``(origin, origin_name, destination,
destination_name, trips)`` for pairs o ≠ d with at least k trips, by trips descending then codes ascending; with
``params["districts"]`` only pairs with either end in those districts. Pairs with ``0 < trips < k`` are dropped
(that a small flow exists is itself disclosive) and counted in ``suppressed``; zero pairs are neither listed
nor counted.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.typing import NDArray

from broker.disclosure import round_counts
from broker.result import Cell, QueryResult
from federation.queries import Query, district_mask, flows_source, plan_rounds, vector_length
from federation.registry import Registry

KIND = "flows"
disclosure_kind = "mobility"
COLUMNS = ("origin", "origin_name", "destination", "destination_name", "trips")


def od_matrix(query: Query, registry: Registry, sums: Mapping[str, NDArray[np.uint64]]) -> NDArray[np.int64]:
    """Exact trips before suppression, int64 of shape (origins, destinations); the diagonal as summed."""
    n = len(registry)
    (plan,) = plan_rounds(query)
    return round_counts(sums, "trips", vector_length(plan.aggregate, n, query.start, query.end)).reshape(n, n)


def build_result(query: Query, registry: Registry, sums: Mapping[str, NDArray[np.uint64]], k: int) -> QueryResult:
    trips = od_matrix(query, registry, sums)
    n = len(registry)
    wanted = district_mask(query, registry.codes)
    eligible = (wanted[:, None] | wanted[None, :]) & ~np.eye(n, dtype=np.bool_)
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
    source, mode = flows_source(query)
    notes = (
        f"source: {source}" + (f", mode: {mode}" if mode is not None else ""),
        f"origin-destination pairs with fewer than k={k} trips (and more than 0) dropped: {suppressed}",
    )
    return QueryResult(query=query, columns=COLUMNS, rows=rows, suppressed=suppressed, notes=notes)
