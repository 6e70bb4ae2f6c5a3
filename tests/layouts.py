"""The provincial vector layouts (docs/protocol.md, "Vector layouts") computed the slow, obvious way in numpy from
a whole-domain vector: the reference the adapters' SQL and the kinds' decoding are checked against.

Never used by a node: an adapter computes a limited vector inside its store and never holds the whole one.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.typing import NDArray

from federation.catalog import RoundPlan, Scope, kind
from federation.queries import Query
from federation.registry import Registry

__all__ = ["limit", "limit_vector", "limited_sums"]


def limit_vector(whole: NDArray[np.integer], layout: str | None, inside: NDArray[np.bool_]) -> NDArray[np.uint64]:
    """``whole`` (an aggregate over the whole domain) in the provincial ``layout`` over the ``inside`` districts
    (boolean mask over the domain), uint64; ``layout`` None gives it back unchanged."""
    vector = np.asarray(whole).astype(np.int64)
    if layout is None:
        return vector.astype(np.uint64)
    n, m = int(inside.shape[0]), int(inside.sum())
    if layout == "inside":
        rows: NDArray[np.int64] = vector.reshape(n, -1)[inside]
        return rows.reshape(-1).astype(np.uint64)
    od = vector.reshape(n, n)
    if layout == "inflow":
        return od[:, inside].reshape(-1).astype(np.uint64)
    assert layout == "border", layout
    square = np.zeros((m + 1, m + 1), dtype=np.int64)
    square[:m, :m] = od[np.ix_(inside, inside)]
    square[:m, m] = od[np.ix_(inside, ~inside)].sum(axis=1)  # inside origin -> anywhere outside
    square[m, :m] = od[np.ix_(~inside, inside)].sum(axis=0)  # anywhere outside -> inside destination
    return square.reshape(-1)[:-1].astype(np.uint64)  # the outside x outside cell is not in the layout


def limit(whole: NDArray[np.integer], plan: RoundPlan, registry: Registry) -> NDArray[np.uint64]:
    """``whole`` (the round's aggregate over the whole domain) as ``plan``'s layout lays it out, uint64."""
    inside = np.asarray(registry.province_codes == plan.province)
    return limit_vector(whole, plan.layout, inside)


def limited_sums(
    query: Query, sums: Mapping[str, NDArray[np.uint64]], registry: Registry, scope: Scope
) -> dict[str, NDArray[np.uint64]]:
    """Every round's whole-domain sum limited to the layout of ``query``'s round for ``scope``."""
    return {
        plan.name: limit(sums[plan.name], plan, registry) for plan in kind(query.kind).rounds(query, registry, scope)
    }
