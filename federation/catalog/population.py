"""``population``: telecom presence per district and day (docs/protocol.md, "population").

One round, ``presence`` (telecom.presence over the window, index ``d * days + t``). Rows
``(district, name, date, count)`` for every district (or those in ``--districts``) and day, in code then date
order. Presence counts with ``0 < count < k`` are released as None and counted; zeros are released.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
from numpy.typing import NDArray

from federation.catalog.base import DISTRICTS, QueryKind, Release, RoundPlan, Scope, domain_counts, plan
from federation.catalog.disclosure import released_count, small_cell_mask
from federation.catalog.result import Cell, QueryResult
from federation.queries import Query
from federation.registry import Registry

COLUMNS = ("district", "name", "date", "count")


class Population(QueryKind):
    name = "population"
    summary = "telecom presence per district and day (distinct subscribers by their last event of the day)"
    disclosure = "mobility"
    params = (DISTRICTS,)
    aggregates = ("telecom.presence",)

    def rounds(self, query: Query, registry: Registry, scope: Scope) -> tuple[RoundPlan, ...]:
        return (plan("presence", "telecom.presence", query.start, query.end, registry, scope, "inside"),)

    def presence_matrix(self, query: Query, release: Release) -> NDArray[np.int64]:
        """Presence counts before suppression, int64 of shape (districts, window days): exact, or signed noisy sums."""
        (presence,) = self.rounds(query, release.registry, release.scope)
        counts = domain_counts(release, presence)
        return counts.reshape(len(release.registry), query.window_days)

    def build(self, query: Query, release: Release) -> QueryResult:
        registry, k = release.registry, release.mobility_k
        presence = self.presence_matrix(query, release)
        listed = np.flatnonzero(self.district_mask(query, registry, release.scope))
        counts = released_count(presence[listed])
        hidden = small_cell_mask(counts, k)
        days = [(query.start + timedelta(days=t)).isoformat() for t in range(query.window_days)]
        values, flags = counts.tolist(), hidden.tolist()
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


KIND = Population()
