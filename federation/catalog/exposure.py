"""``exposure``: the people now in each district who stayed 4 hours or more in a listed district lately
(docs/protocol.md, "exposure").

One round, ``exposure`` (telecom.exposure over the ``days`` days ending at ``end``, index ``d * 2 + j``): per
district d, j = 1 the subscribers present in d on ``end`` (their last event of the day is in d) and j = 0 those
of them who had a stay (a maximal run of events in one district) of at least 4 hours inside the window in one
of the ``risk_districts``; only a stay's part inside the window counts, so the answer never depends on data
after ``end``. This is the aggregate of what the itinerary service tells one person.

Rows ``district, name, province, exposed, present, exposed_share`` for every listed district (``--districts``,
within the coordinator's province) with anyone present, by exposed descending (withheld last), then code.
Disclosure: ``exposed`` and ``present`` are mobility counts, None where 0 < count < k (each counted in
``suppressed``); ``exposed_share`` = exposed / present only where both are released and present ≥ k.

``risk_districts`` are signed as given; the round carries them ascending and without repeats. A client may
find them with a ``warning`` query first (``fedbroker query exposure --risk-from-warning``): that is then two
signed queries, and the adapters still see exactly the list they compute over.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from federation.catalog.base import (
    DISTRICTS,
    Param,
    QueryKind,
    Release,
    RoundPlan,
    Scope,
    domain_counts,
    plan,
)
from federation.catalog.disclosure import released_count, small_cell_mask
from federation.catalog.result import Cell, QueryResult
from federation.errors import InvalidQuery, UnknownDistrict
from federation.queries import Query
from federation.registry import Registry

MAX_DAYS = 60
MAX_RISK_DISTRICTS = 3_000
STAY_HOURS = 4
COLUMNS = ("district", "name", "province", "exposed", "present", "exposed_share")


class Exposure(QueryKind):
    name = "exposure"
    summary = f"people in each district on --end who stayed {STAY_HOURS} h or more in a listed district lately"
    disclosure = "mobility"
    params = (
        Param(
            "risk_districts",
            "districts",
            f"districts where a stay of {STAY_HOURS} h or more counts as exposure",
            required=True,
        ),
        Param("days", "int", "days of the window ending at --end", default="14", minimum=1, maximum=MAX_DAYS),
        DISTRICTS,
    )
    aggregates = ("telecom.exposure",)
    trailing_window = "days"

    def check(self, query: Query, values: Mapping[str, Any]) -> None:
        if len(values["risk_districts"]) > MAX_RISK_DISTRICTS:
            raise InvalidQuery(f"--risk-districts lists more than {MAX_RISK_DISTRICTS} districts; shorten it")

    def risk_districts(self, query: Query, registry: Registry) -> tuple[int, ...]:
        """The listed districts, ascending and distinct; UnknownDistrict for a code outside the domain."""
        codes: tuple[int, ...] = self.values(query)["risk_districts"]
        unknown = [
            c for c, found in zip(codes, registry.contains(np.asarray(codes)).tolist(), strict=True) if not found
        ]
        if unknown:
            shown = ", ".join(str(c) for c in unknown[:10])
            raise UnknownDistrict(f"risk districts {shown} are not in this federation's domain; check the codes")
        return codes

    def rounds(self, query: Query, registry: Registry, scope: Scope) -> tuple[RoundPlan, ...]:
        listed = ",".join(str(c) for c in self.risk_districts(query, registry))
        return (plan("exposure", "telecom.exposure", query.start, query.end, registry, scope, risk_districts=listed),)

    def exposure_matrix(self, query: Query, release: Release) -> NDArray[np.int64]:
        """Exact counts before suppression, int64 (districts, 2): column 0 exposed, column 1 present."""
        (exposure,) = self.rounds(query, release.registry, release.scope)
        return domain_counts(release, exposure).reshape(len(release.registry), 2)

    def build(self, query: Query, release: Release) -> QueryResult:
        registry, k = release.registry, release.mobility_k
        counts = released_count(self.exposure_matrix(query, release))
        listed = np.flatnonzero(self.district_mask(query, registry, release.scope) & (counts[:, 1] > 0))
        exposed, present = counts[listed, 0], counts[listed, 1]
        hide_exposed, hide_present = small_cell_mask(exposed, k), small_cell_mask(present, k)
        order = np.lexsort((registry.codes[listed], -np.where(hide_exposed, -1, exposed)))
        rows: list[tuple[Cell, ...]] = []
        for at in order.tolist():
            i = int(listed[at])
            e = None if hide_exposed[at] else int(exposed[at])
            p = None if hide_present[at] else int(present[at])
            share = None if e is None or p is None else e / p
            rows.append((int(registry.codes[i]), registry.names[i], registry.provinces[i], e, p, share))
        suppressed = int(hide_exposed.sum() + hide_present.sum())
        notes = (
            f"exposed: present on {query.end} after a stay of {STAY_HOURS} h or more in a risk district within "
            f"{query.start}..{query.end} ({query.window_days} days); risk districts: "
            f"{len(self.risk_districts(query, registry))}",
            f"counts below k={k} (and above 0) suppressed: {suppressed}; shares only where both counts are shown",
        )
        return QueryResult(query=query, columns=COLUMNS, rows=rows, suppressed=suppressed, notes=notes)


KIND = Exposure()
