"""``cases``: health cases per district and status over the window (DESIGN §5).

One round, ``cases`` (health.cases, index ``d * 3 + s``, statuses confirmed, suspected, close_contact). Rows
``(district, name, confirmed, suspected, close_contact)`` for districts with at least one case (restricted to
``params["districts"]`` if given), in code order. A cell with ``0 < count < k`` is released as None and counted;
zeros are released.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.typing import NDArray

from broker.disclosure import round_counts, small_cell_mask
from broker.result import Cell, QueryResult
from federation.queries import CASE_STATUSES, Query, district_mask, vector_length
from federation.registry import Registry

KIND = "cases"
disclosure_kind = "cases"
COLUMNS = ("district", "name", *CASE_STATUSES)


def case_matrix(query: Query, registry: Registry, sums: Mapping[str, NDArray[np.uint64]]) -> NDArray[np.int64]:
    """Exact case counts before suppression, int64 of shape (districts, 3) in CASE_STATUSES order."""
    length = vector_length("health.cases", len(registry), query.start, query.end)
    return round_counts(sums, "cases", length).reshape(len(registry), len(CASE_STATUSES))


def build_result(query: Query, registry: Registry, sums: Mapping[str, NDArray[np.uint64]], k: int) -> QueryResult:
    cases = case_matrix(query, registry, sums)
    listed = np.flatnonzero(district_mask(query, registry.codes) & (cases.sum(axis=1) > 0))
    counts = cases[listed]
    hidden = small_cell_mask(counts, k)
    rows: list[tuple[Cell, ...]] = [
        (
            int(registry.codes[i]),
            registry.names[i],
            *(None if flag else value for value, flag in zip(v, f, strict=True)),
        )
        for i, v, f in zip(listed.tolist(), counts.tolist(), hidden.tolist(), strict=True)
    ]
    suppressed = int(hidden.sum())
    notes = (f"case counts below k={k} (and above 0) suppressed: {suppressed}",)
    return QueryResult(query=query, columns=COLUMNS, rows=rows, suppressed=suppressed, notes=notes)
