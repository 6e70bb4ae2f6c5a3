"""The query catalog: one small module per joint query kind (DESIGN §5).

Each module has ``KIND``, ``disclosure_kind`` ("mobility" or "cases": which k applies) and
``build_result(query, registry, sums, k)``, where ``sums`` maps each :class:`~federation.queries.RoundPlan` name
to that round's unmasked uint64 sum. Rounds themselves are planned by :func:`federation.queries.plan_rounds`,
shared with the adapters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from broker.catalog import cases, flows, importation_risk, population
from broker.result import QueryResult
from federation.errors import InvalidQuery
from federation.queries import QUERY_KINDS, Query
from federation.registry import Registry

__all__ = ["CATALOG", "QueryKind", "build_result", "query_kind"]


class QueryKind(Protocol):
    KIND: str
    disclosure_kind: str

    def build_result(
        self, query: Query, registry: Registry, sums: Mapping[str, NDArray[np.uint64]], k: int
    ) -> QueryResult: ...


CATALOG: Mapping[str, QueryKind] = {
    population.KIND: population,
    flows.KIND: flows,
    cases.KIND: cases,
    importation_risk.KIND: importation_risk,
}
assert tuple(CATALOG) == QUERY_KINDS, "the catalog and federation.queries.QUERY_KINDS must list the same kinds"


def query_kind(kind: str) -> QueryKind:
    """The catalog module of a query kind; InvalidQuery listing the known kinds otherwise."""
    try:
        return CATALOG[kind]
    except KeyError:
        raise InvalidQuery(f"unknown query kind {kind!r}; known kinds: {', '.join(CATALOG)}") from None


def build_result(query: Query, registry: Registry, sums: Mapping[str, NDArray[np.uint64]], k: int) -> QueryResult:
    """Join the round sums of ``query`` and apply disclosure control with threshold ``k``."""
    return query_kind(query.kind).build_result(query, registry, sums, k)
