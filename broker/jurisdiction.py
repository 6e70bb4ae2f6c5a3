"""Coordinator jurisdictions: a national coordinator sees every district, a provincial one only its province.

A query naming a district outside the jurisdiction is refused; a released result keeps only the rows inside
it. Flows keep pairs with both ends inside; flows crossing the border are summed per inside district into one
"outside the province" row each way, so the province's own totals stay whole without naming outside districts.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace

from broker.result import Cell, QueryResult
from federation.config import CoordinatorConfig
from federation.errors import PermissionDenied
from federation.registry import Registry

OUTSIDE = 0
OUTSIDE_NAME = "outside the province"


def check_jurisdiction(coordinator: CoordinatorConfig, registry: Registry, districts: Sequence[int] | None) -> None:
    """Refuse a provincial coordinator's query that names a district outside its province."""
    if coordinator.role == "national" or coordinator.jurisdiction is None:
        return
    province = coordinator.jurisdiction
    if not (registry.province_codes == province).any():
        raise PermissionDenied(
            f"{coordinator.id}'s jurisdiction, province {province}, is not in this federation's domain"
        )
    for code in districts or ():
        if code // 10000 != province:
            raise PermissionDenied(
                f"district {code} ({registry.name_of(code)}) lies outside {coordinator.id}'s jurisdiction, "
                f"province {province}; a provincial coordinator may query only its own province"
            )


def restrict_to_jurisdiction(result: QueryResult, coordinator: CoordinatorConfig, registry: Registry) -> QueryResult:
    """Keep only what a provincial coordinator may see; a national coordinator's result is unchanged."""
    if coordinator.role == "national" or coordinator.jurisdiction is None:
        return result
    province = coordinator.jurisdiction
    columns = result.columns
    if "origin" in columns and "destination" in columns:
        return _restrict_flows(result, province)
    if "district" in columns:
        at = columns.index("district")
        rows = [row for row in result.rows if _province(row[at]) == province]
        return replace(result, rows=rows, notes=(*result.notes, f"restricted to province {province}"))
    return result


def _trips(value: Cell) -> int:
    return value if isinstance(value, int) else 0


def _province(code: Cell) -> int | None:
    return int(code) // 10000 if isinstance(code, int) else None


def _restrict_flows(result: QueryResult, province: int) -> QueryResult:
    columns = result.columns
    o_at, d_at, n_at = columns.index("origin"), columns.index("destination"), columns.index("trips")
    o_name, d_name = columns.index("origin_name"), columns.index("destination_name")
    inside: list[tuple[Cell, ...]] = []
    crossing: dict[tuple[int, int], int] = defaultdict(int)
    names: dict[int, Cell] = {}
    for row in result.rows:
        origin_in, dest_in = _province(row[o_at]) == province, _province(row[d_at]) == province
        trips = row[n_at]
        if origin_in and dest_in:
            inside.append(row)
        elif (origin_in or dest_in) and isinstance(trips, int):
            key = (int(row[o_at]), OUTSIDE) if origin_in else (OUTSIDE, int(row[d_at]))  # type: ignore[arg-type]
            crossing[key] += trips
            names[int(row[o_at] if origin_in else row[d_at])] = row[o_name] if origin_in else row[d_name]  # type: ignore[arg-type]
    for (origin, dest), trips in crossing.items():
        row_out: list[Cell] = [None] * len(columns)
        row_out[o_at], row_out[d_at], row_out[n_at] = origin, dest, trips
        row_out[o_name] = names.get(origin, OUTSIDE_NAME) if origin else OUTSIDE_NAME
        row_out[d_name] = names.get(dest, OUTSIDE_NAME) if dest else OUTSIDE_NAME
        inside.append(tuple(row_out))
    inside.sort(key=lambda r: _trips(r[n_at]), reverse=True)
    note = f"restricted to province {province}; flows across its border summed as district {OUTSIDE} ({OUTSIDE_NAME})"
    return replace(result, rows=inside, notes=(*result.notes, note))
