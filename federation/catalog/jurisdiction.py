"""Coordinator jurisdictions: a national coordinator sees every district, a provincial one only its province.

A query naming a district outside the jurisdiction is refused (:func:`check_jurisdiction`); a provincial
coordinator's rounds are planned for :func:`scope_of` that coordinator, limited to its province (the broker
plans them so and every adapter recomputes the plan for the signer's jurisdiction: docs/protocol.md, "Vector
layouts"), its result is built by each kind for the same scope, then restricted again by
:meth:`~federation.catalog.base.QueryKind.restrict` as a last guard.
"""

from __future__ import annotations

from collections.abc import Sequence

from federation.catalog.base import Scope
from federation.config import CoordinatorConfig
from federation.errors import PermissionDenied
from federation.registry import Registry


def scope_of(coordinator: CoordinatorConfig) -> Scope:
    """The whole domain for a national coordinator, its province for a provincial one."""
    if coordinator.role == "national" or coordinator.jurisdiction is None:
        return Scope()
    return Scope(province=int(coordinator.jurisdiction))


def outside_jurisdiction(coordinator: CoordinatorConfig, districts: Sequence[int] | None) -> list[int]:
    """The district codes of ``districts`` that ``coordinator`` may not ask about."""
    scope = scope_of(coordinator)
    return [code for code in districts or () if not scope.sees(code)]


def check_jurisdiction(coordinator: CoordinatorConfig, registry: Registry, districts: Sequence[int] | None) -> None:
    """Refuse a provincial coordinator's query that names a district outside its province (PermissionDenied)."""
    scope = scope_of(coordinator)
    if scope.province is None:
        return
    if not (registry.province_codes == scope.province).any():
        raise PermissionDenied(
            f"{coordinator.id}'s jurisdiction, province {scope.province}, is not in this federation's domain"
        )
    outside = outside_jurisdiction(coordinator, districts)
    if outside:
        named = ", ".join(f"{code} ({registry.name_of(code)})" for code in outside[:5])
        more = f" and {len(outside) - 5} more" if len(outside) > 5 else ""
        raise PermissionDenied(
            f"district {named}{more} lies outside {coordinator.id}'s jurisdiction, province {scope.province}; "
            "a provincial coordinator may query only its own province"
        )
