"""``cases``: health cases per district and status over the window (docs/protocol.md, "cases").

One round, ``cases`` (health.cases, index ``d * 3 + s``, statuses in :data:`federation.vocabulary.CASE_STATUSES`
order). Rows ``(district, name, confirmed, suspected, close_contact)`` for districts with at least one case
(restricted to ``--districts`` if given), in code order. A cell with ``0 < count < k`` is released as None and
counted; zeros are released.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from federation.catalog.base import DISTRICTS, QueryKind, Release, RoundPlan, Scope, domain_counts, plan
from federation.catalog.disclosure import released_count, small_cell_mask
from federation.catalog.result import Cell, QueryResult
from federation.queries import Query
from federation.registry import Registry
from federation.vocabulary import CASE_STATUSES

COLUMNS = ("district", "name", *CASE_STATUSES)


class Cases(QueryKind):
    name = "cases"
    summary = "health cases per district and status, by report date over the window"
    disclosure = "cases"
    params = (DISTRICTS,)
    aggregates = ("health.cases",)

    def rounds(self, query: Query, registry: Registry, scope: Scope) -> tuple[RoundPlan, ...]:
        return (plan("cases", "health.cases", query.start, query.end, registry, scope, "inside"),)

    def case_matrix(self, query: Query, release: Release) -> NDArray[np.int64]:
        """Exact case counts before suppression, int64 of shape (districts, 3) in CASE_STATUSES order."""
        (cases,) = self.rounds(query, release.registry, release.scope)
        counts = domain_counts(release, cases)
        return counts.reshape(len(release.registry), len(CASE_STATUSES))

    def build(self, query: Query, release: Release) -> QueryResult:
        registry, k = release.registry, release.cases_k
        cases = released_count(self.case_matrix(query, release))  # each cell is released as it is: clip it
        listed = np.flatnonzero(self.district_mask(query, registry, release.scope) & (cases.sum(axis=1) > 0))
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


KIND = Cases()
