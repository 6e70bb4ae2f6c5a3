"""Coordinator jurisdictions: a national coordinator sees every district, a provincial one only its province.

A query naming a district outside the jurisdiction is refused (:func:`check_jurisdiction`). A provincial
coordinator's result is built for its own districts only (:func:`build_released`): rows, suppression counts and
notes cover districts inside the province. Flows keep pairs with both ends inside; the flows of each inside
district across the border are summed exactly, each way, into one "outside the province" row (district code 0)
that is released only when that sum reaches k. Importation risk lists inside destinations; every origin counts in
I_d, but an origin outside the province is shown as "outside the province", never by name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np
from numpy.typing import NDArray

from broker.catalog import flows, importation_risk, query_kind
from broker.result import Cell, QueryResult
from federation.config import CoordinatorConfig
from federation.errors import PermissionDenied
from federation.queries import Query, district_filter, district_mask
from federation.registry import Registry
from federation.signed_query import outside_jurisdiction

OUTSIDE = 0
OUTSIDE_NAME = "outside the province"


def check_jurisdiction(coordinator: CoordinatorConfig, registry: Registry, districts: Sequence[int] | None) -> None:
    """Refuse a provincial coordinator's query that names a district outside its province."""
    if _sees_everything(coordinator):
        return
    province = coordinator.jurisdiction
    if not (registry.province_codes == province).any():
        raise PermissionDenied(
            f"{coordinator.id}'s jurisdiction, province {province}, is not in this federation's domain"
        )
    outside = outside_jurisdiction(coordinator, districts)
    if outside:
        named = ", ".join(f"{code} ({registry.name_of(code)})" for code in outside[:5])
        more = f" and {len(outside) - 5} more" if len(outside) > 5 else ""
        raise PermissionDenied(
            f"district {named}{more} lies outside {coordinator.id}'s jurisdiction, province {province}; "
            "a provincial coordinator may query only its own province"
        )


def build_released(
    query: Query, coordinator: CoordinatorConfig, registry: Registry, sums: Mapping[str, NDArray[np.uint64]], k: int
) -> QueryResult:
    """The result of ``query`` as ``coordinator`` may see it, disclosure control applied with threshold ``k``.

    For a provincial coordinator the catalog builds the result for the districts inside the province (those
    the query names, or all of them), so nothing about an outside district is listed or counted.
    """
    kind = query_kind(query.kind)
    if _sees_everything(coordinator):
        return kind.build_result(query, registry, sums, k)
    province = int(coordinator.jurisdiction or 0)
    scoped = _scoped_query(query, registry, province)
    result = kind.build_result(scoped, registry, sums, k)
    if query.kind == flows.KIND:
        result = _restrict_flows(result, scoped, registry, sums, k, province)
    elif query.kind == importation_risk.KIND:
        result = _hide_outside_origins(result, province)
    result = restrict_to_jurisdiction(result, coordinator, registry)
    return replace(result, query=query)


def restrict_to_jurisdiction(result: QueryResult, coordinator: CoordinatorConfig, registry: Registry) -> QueryResult:
    """Drop every row naming a district outside a provincial coordinator's province (the "outside the
    province" rows of flows excepted); a national coordinator's result is unchanged. A last guard after
    :func:`build_released`, which already builds the result for inside districts only."""
    if _sees_everything(coordinator):
        return result
    province = int(coordinator.jurisdiction or 0)
    columns = [c for c in ("district", "origin", "destination") if c in result.columns]
    at = [result.columns.index(c) for c in columns]
    rows = [row for row in result.rows if all(_visible(row[i], province) for i in at)]
    note = f"restricted to province {province}"
    notes = result.notes if note in result.notes else (*result.notes, note)
    return replace(result, rows=rows, notes=notes)


def _sees_everything(coordinator: CoordinatorConfig) -> bool:
    return coordinator.role == "national" or coordinator.jurisdiction is None


def _visible(code: Cell, province: int) -> bool:
    return isinstance(code, int) and not isinstance(code, bool) and (code == OUTSIDE or code // 10000 == province)


def _scoped_query(query: Query, registry: Registry, province: int) -> Query:
    """``query`` with its district filter narrowed to the province (the broker's own copy, never re-signed)."""
    inside = registry.codes[registry.province_codes == province]
    wanted = district_filter(query)
    codes = [int(c) for c in inside] if wanted is None else [c for c in wanted if c // 10000 == province]
    return replace(query, params={**query.params, "districts": ",".join(str(c) for c in codes)})


def _restrict_flows(
    result: QueryResult,
    scoped: Query,
    registry: Registry,
    sums: Mapping[str, NDArray[np.uint64]],
    k: int,
    province: int,
) -> QueryResult:
    """Inside pairs as the catalog released them; each wanted district's exact cross-border totals, each way,
    as one row with the other end "outside the province" (code 0), suppressed below k like any flow."""
    columns = result.columns
    o_at, d_at, n_at = columns.index("origin"), columns.index("destination"), columns.index("trips")
    trips = flows.od_matrix(scoped, registry, sums)
    inside = registry.province_codes == province
    wanted = district_mask(scoped, registry.codes)
    rows = [row for row in result.rows if _visible(row[o_at], province) and _visible(row[d_at], province)]
    inside_pairs = (wanted[:, None] | wanted[None, :]) & inside[:, None] & inside[None, :]
    np.fill_diagonal(inside_pairs, False)
    suppressed = int((inside_pairs & (trips > 0) & (trips < k)).sum())
    leaving = trips[:, ~inside].sum(axis=1)  # inside origin -> anywhere outside
    arriving = trips[~inside, :].sum(axis=0)  # anywhere outside -> inside destination
    for i in np.flatnonzero(wanted).tolist():
        code, name = int(registry.codes[i]), registry.names[i]
        for total, row in (
            (int(leaving[i]), (code, name, OUTSIDE, OUTSIDE_NAME)),
            (int(arriving[i]), (OUTSIDE, OUTSIDE_NAME, code, name)),
        ):
            if total >= k:
                cells: list[Cell] = [None] * len(columns)
                cells[o_at], cells[columns.index("origin_name")] = row[0], row[1]
                cells[d_at], cells[columns.index("destination_name")] = row[2], row[3]
                cells[n_at] = total
                rows.append(tuple(cells))
            elif total > 0:
                suppressed += 1
    rows.sort(key=lambda r: (-_count(r[n_at]), _count(r[o_at]), _count(r[d_at])))
    kept_notes = tuple(n for n in result.notes if not n.startswith("origin-destination pairs with fewer"))
    notes = (
        *kept_notes,
        f"origin-destination pairs with fewer than k={k} trips (and more than 0) dropped: {suppressed}",
        f"flows across the border of province {province} summed per district as district {OUTSIDE} "
        f"({OUTSIDE_NAME}), each way",
    )
    return replace(result, rows=rows, suppressed=suppressed, notes=notes)


def _hide_outside_origins(result: QueryResult, province: int) -> QueryResult:
    """Show each named top origin outside the province as "outside the province" (its share kept)."""
    at = result.columns.index("top_origins")
    rows: list[tuple[Cell, ...]] = []
    for row in result.rows:
        entries = str(row[at]).split("; ") if row[at] else []
        shown = [_origin_entry(entry, province) for entry in entries]
        rows.append((*row[:at], "; ".join(shown), *row[at + 1 :]))
    note = f"top origins outside province {province} shown as {OUTSIDE_NAME!r}"
    return replace(result, rows=rows, notes=(*result.notes, note))


def _origin_entry(entry: str, province: int) -> str:
    """``"code name (share%)"`` unchanged for an inside origin, ``"outside the province (share%)"`` otherwise."""
    code, _, rest = entry.partition(" ")
    if code.isdigit() and int(code) // 10000 == province:
        return entry
    share = rest[rest.rfind(" (") + 1 :] if " (" in rest else "(share withheld)"
    return f"{OUTSIDE_NAME} {share}"


def _count(value: Cell) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
