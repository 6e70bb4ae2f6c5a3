"""``population``: telecom presence per district and day (DESIGN §5).

One round, ``presence`` (telecom.presence over the window, index ``d * days + t``). Rows
``(district, name, date, count)`` for every district (or those in ``params["districts"]``) and day, in code then
date order. Presence counts with ``0 < count < k`` are released as None and counted; zeros are released.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

import numpy as np
from numpy.typing import NDArray

from broker.disclosure import round_counts, small_cell_mask
from broker.result import Cell, QueryResult
from federation.queries import Query, district_mask, vector_length
from federation.registry import Registry

KIND = "population"
disclosure_kind = "mobility"
COLUMNS = ("district", "name", "date", "count")


def presence_matrix(query: Query, registry: Registry, sums: Mapping[str, NDArray[np.uint64]]) -> NDArray[np.int64]:
    """Exact presence counts before suppression, int64 of shape (districts, window days)."""
    length = vector_length("telecom.presence", len(registry), query.start, query.end)
    return round_counts(sums, "presence", length).reshape(len(registry), query.window_days)


def build_result(query: Query, registry: Registry, sums: Mapping[str, NDArray[np.uint64]], k: int) -> QueryResult:
    presence = presence_matrix(query, registry, sums)
    listed = np.flatnonzero(district_mask(query, registry.codes))
    counts = presence[listed]
    hidden = small_cell_mask(counts, k)
    days = [(query.start + timedelta(days=t)).isoformat() for t in range(query.window_days)]
    values = counts.tolist()
    flags = hidden.tolist()
    rows: list[tuple[Cell, ...]] = []
    for row, i in enumerate(listed.tolist()):
        code, name = int(registry.codes[i]), registry.names[i]
        rows.extend(
            (code, name, day, None if flag else value)
            for day, value, flag in zip(days, values[row], flags[row], strict=True)
        )
    suppressed = int(hidden.sum())
    notes = (f"presence counts below k={k} (and above 0) suppressed: {suppressed}",)
    return QueryResult(query=query, columns=COLUMNS, rows=rows, suppressed=suppressed, notes=notes)
