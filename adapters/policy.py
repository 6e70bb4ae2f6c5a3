"""An agency's own approval of each round: pure checks, no gRPC.

Every adapter decides for itself, from its own config, whether to contribute: the query must be signed by a
coordinator in the roster, fresh, of a kind and window its policy allows, from a coordinator and role it serves,
within the signer's jurisdiction, and the round the broker asks for must be one that the signed query really
needs (so a broker can neither alter a query nor invent a round), over no more districts than the signer's
jurisdiction needs: the plan is recomputed for the signing coordinator's scope, so a provincial coordinator's
round limited to its province (docs/protocol.md, "Vector layouts") cannot be widened to the whole domain or
moved to another province by the broker.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from federation.catalog import RoundPlan, kind
from federation.catalog.aggregates import LAYOUT_PARAM, PROVINCE_PARAM, SCOPE_PARAMS
from federation.catalog.jurisdiction import outside_jurisdiction, scope_of
from federation.config import CoordinatorConfig, FederationConfig, NodeConfig
from federation.errors import InvalidQuery, PermissionDenied, PolicyRefused, RegistryMismatch
from federation.identity import Roster
from federation.queries import Query
from federation.registry import Registry
from federation.signed_query import verify_signed_query


@dataclass(frozen=True)
class RoundRequest:
    """What the broker asks an adapter to contribute to, as read from an Open request."""

    canonical_query: bytes
    coordinator_id: str
    signature: bytes
    aggregate: str
    length: int
    registry_hash: str
    start: str
    end: str
    params: dict[str, str]
    participants: tuple[str, ...]
    threshold: int


@dataclass(frozen=True)
class Approval:
    query: Query
    coordinator: CoordinatorConfig
    plan: RoundPlan
    threshold: int  # t of the round, fixed at Open; ShareKeys checks honest majority against it again


def _iso(day: dt.date | None) -> str:
    return day.isoformat() if day else ""


def approve_round(
    federation: FederationConfig,
    roster: Roster,
    node: NodeConfig,
    registry: Registry,
    request: RoundRequest,
) -> Approval:
    """Apply the node's own policy to a round; raise the refusal a person can act on, or approve it."""
    query, coordinator = verify_signed_query(
        federation, roster, request.canonical_query, request.coordinator_id, request.signature
    )
    policy = node.policy
    if query.kind not in policy.allowed_queries:
        raise PolicyRefused(
            f"{node.id} refused: its policy allows {', '.join(policy.allowed_queries) or 'no'} queries, "
            f"not {query.kind!r}"
        )
    # The limit is on the days this agency computes over: the round's window, which a query may have several of
    # (warning sums 14 days of trips but a whole epidemic curve of cases).
    round_days = _window_days(request.start, request.end)
    if round_days > policy.max_window_days:
        raise PolicyRefused(
            f"{node.id} refused: window of {round_days} days exceeds its limit of {policy.max_window_days}"
        )
    if policy.allowed_coordinators and coordinator.id not in policy.allowed_coordinators:
        raise PolicyRefused(f"{node.id} refused: coordinator {coordinator.id} is not on its allowed list")
    if coordinator.role not in policy.allowed_roles:
        raise PolicyRefused(f"{node.id} refused: its policy does not serve {coordinator.role} coordinators")
    # The broker checks jurisdictions too; checking here keeps a broker that skips it from getting a contribution.
    outside = outside_jurisdiction(coordinator, kind(query.kind).districts(query))
    if outside:
        raise PolicyRefused(
            f"{node.id} refused: district(s) {', '.join(str(c) for c in outside[:5])} lie outside "
            f"{coordinator.id}'s jurisdiction, province {coordinator.jurisdiction}"
        )
    _check_participants(federation, node, request.participants, request.threshold)
    if request.registry_hash != registry.hash:
        raise RegistryMismatch(
            f"{node.id} uses district registry {registry.hash[:12]}…, the round names "
            f"{request.registry_hash[:12]}…; both sides must load the same domain"
        )
    plan = _matching_plan(node, query, coordinator, registry, request)
    if request.length != plan.length:
        raise InvalidQuery(
            f"the round asks for {request.length} cells of {plan.aggregate}, but over {len(registry)} districts "
            f"and this window it has {plan.length}"
        )
    return Approval(query=query, coordinator=coordinator, plan=plan, threshold=request.threshold)


def _window_days(start: str, end: str) -> int:
    """Days of a round's inclusive window as the request states it; 0 for a window-free round. A malformed date
    counts as 0 here: no planned round has one, so the plan match refuses it."""
    try:
        first, last = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    except ValueError:
        return 0
    return (last - first).days + 1


def _check_participants(
    federation: FederationConfig, node: NodeConfig, participants: Sequence[str], threshold: int
) -> None:
    roster = {n.id: n for n in federation.nodes}
    unknown = [p for p in participants if p not in roster]
    if unknown:
        raise PolicyRefused(f"{node.id} refused: the participant list names unknown node(s) {', '.join(unknown)}")
    if len(set(participants)) != len(participants):
        raise PolicyRefused(f"{node.id} refused: the participant list repeats a node")
    other_kinds = [p for p in participants if roster[p].kind != node.kind]
    if other_kinds:
        raise PolicyRefused(
            f"{node.id} refused: a {node.kind} round cannot include {', '.join(other_kinds)} of another kind"
        )
    if node.id not in participants:
        raise PolicyRefused(f"{node.id} refused: it is not in the round's participant list")
    minimum = node.policy.min_contributors
    if threshold < minimum:
        raise PolicyRefused(f"{node.id} refused: threshold {threshold} is below its minimum of {minimum} contributors")
    if threshold > len(participants):
        raise InvalidQuery(f"threshold {threshold} exceeds the {len(participants)} participants")
    check_honest_majority(node.id, threshold, len(participants), "U", "Open")


def check_honest_majority(node_id: str, threshold: int, members: int, set_name: str, stage: str) -> None:
    """Refuse a round whose threshold is not a strict majority of the set (``2t > |set|``).

    With ``2t <= |U|`` a broker can show two disjoint halves of U two different survivor sets, each large
    enough to pass Consistency, and collect b-shares from one half and mask-key shares from the other for
    every party: every single vector is then unmasked. A strict majority makes two such halves impossible.
    """
    if 2 * threshold <= members:
        raise PolicyRefused(
            f"{node_id} refused at {stage}: threshold t = {threshold} is not a majority of |{set_name}| = "
            f"{members} (secure aggregation needs 2t > |{set_name}|, so t >= {members // 2 + 1}); a smaller t "
            "lets a broker show two halves different survivor sets and unmask every contribution"
        )


def _matching_plan(
    node: NodeConfig, query: Query, coordinator: CoordinatorConfig, registry: Registry, request: RoundRequest
) -> RoundPlan:
    # The same plan the broker ran (federation.catalog), for the signer's own jurisdiction: a broker can neither
    # alter a query nor invent a round, nor ask a provincial coordinator's round over more districts.
    plans = [
        plan
        for plan in kind(query.kind).rounds(query, registry, scope_of(coordinator))
        if plan.agency_kind == node.kind
        and plan.aggregate == request.aggregate
        and _iso(plan.start) == request.start
        and _iso(plan.end) == request.end
    ]
    for plan in plans:
        if dict(plan.params) == request.params:
            return plan
    asked = _unscoped(request.params)
    for plan in plans:
        if _unscoped(plan.params) == asked:
            raise PermissionDenied(
                f"{node.id} refused: {_signer(coordinator)}'s {query.kind} query needs {plan.aggregate} "
                f"{_extent(plan.params)}, the round asked for it {_extent(request.params)}"
            )
    raise PolicyRefused(
        f"{node.id} refused: the signed {query.kind} query does not need a {request.aggregate} round over "
        f"{request.start or '-'}..{request.end or '-'} with {request.params or 'no params'}"
    )


def _unscoped(params: Mapping[str, str]) -> dict[str, str]:
    return {key: value for key, value in params.items() if key not in SCOPE_PARAMS}


def _signer(coordinator: CoordinatorConfig) -> str:
    if coordinator.role == "national" or coordinator.jurisdiction is None:
        return f"national coordinator {coordinator.id}"
    return f"{coordinator.id} (provincial, province {coordinator.jurisdiction})"


def _extent(params: Mapping[str, str]) -> str:
    """Which districts a round's params limit it to, as a bounded phrase (the values come from the broker)."""
    layout, province = params.get(LAYOUT_PARAM), params.get(PROVINCE_PARAM)
    if layout is None and province is None:
        return "over the whole domain"
    return f"limited to province {_short(province or '-')} in layout {_short(layout or '-')}"


def _short(text: str) -> str:
    return repr(text if len(text) <= 12 else text[:9] + "...")
