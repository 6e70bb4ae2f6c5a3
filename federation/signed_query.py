"""Verification of a coordinator's signed query, shared by the broker (to refuse early) and every adapter
(which decides for itself, whoever runs the broker)."""

from __future__ import annotations

import datetime as dt

from federation.config import CoordinatorConfig, FederationConfig
from federation.errors import AuthenticationFailed, InvalidQuery
from federation.identity import verify_signature
from federation.queries import Query, parse_query

#: A signed query older than this is refused as stale (seconds); clocks may differ by MAX_CLOCK_SKEW_S.
MAX_QUERY_AGE_S = 15 * 60
MAX_CLOCK_SKEW_S = 120


def _parse_iso_utc(text: str) -> dt.datetime:
    try:
        stamp = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidQuery(f"issued_at {text!r} is not an ISO-8601 UTC time") from exc
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.UTC)


def verify_signed_query(
    federation: FederationConfig, canonical: bytes, coordinator_id: str, signature: bytes
) -> tuple[Query, CoordinatorConfig]:
    """Check the coordinator's signature over the canonical query bytes, who it names, and its freshness."""
    known = {c.id: c for c in federation.coordinators}
    coordinator = known.get(coordinator_id)
    if coordinator is None:
        raise AuthenticationFailed(
            f"query signed by {coordinator_id!r}, who is not a coordinator in the federation roster"
        )
    if not verify_signature(coordinator.cert.read_bytes(), canonical, signature):
        raise AuthenticationFailed(
            f"the signature on the query from {coordinator.id} does not verify against its certificate; "
            "the query was altered after signing or not signed by that coordinator"
        )
    query = parse_query(canonical)
    if query.coordinator != coordinator.id:
        raise AuthenticationFailed(
            f"the query names coordinator {query.coordinator!r} but is signed by {coordinator.id!r}"
        )
    age = (dt.datetime.now(dt.UTC) - _parse_iso_utc(query.issued_at)).total_seconds()
    if age > MAX_QUERY_AGE_S or age < -MAX_CLOCK_SKEW_S:
        raise AuthenticationFailed(
            f"the signed query was issued at {query.issued_at}, {age:.0f} s ago; queries are accepted for "
            f"{MAX_QUERY_AGE_S} s: ask the coordinator to sign it again"
        )
    return query, coordinator
