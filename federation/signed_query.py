"""Verification of a coordinator's signed query, shared by the broker (to refuse early) and every adapter
(which decides for itself, whoever runs the broker): the signature against the roster, the signer's
certificate (federation CA, validity period), freshness, one use per nonce. Jurisdictions are checked by
:mod:`federation.catalog.jurisdiction`."""

from __future__ import annotations

import datetime as dt
import time

from federation.catalog import parse_query
from federation.config import CoordinatorConfig, FederationConfig
from federation.errors import AuthenticationFailed, InvalidQuery, RoundReplayed
from federation.identity import Roster
from federation.queries import Query

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
    federation: FederationConfig, roster: Roster, canonical: bytes, coordinator_id: str, signature: bytes
) -> tuple[Query, CoordinatorConfig]:
    """Check the coordinator's signature over the canonical query bytes, who it names, and its freshness.

    The signer must be a coordinator of the roster whose certificate (the roster's copy, checked against the
    federation CA when ``roster`` was loaded) is within its validity period now: a coordinator whose
    certificate expired while the node was running can no longer sign queries. Raises AuthenticationFailed
    saying what to fix.
    """
    known = {c.id: c for c in federation.coordinators}
    coordinator = known.get(coordinator_id)
    if coordinator is None:
        raise AuthenticationFailed(
            f"query signed by {coordinator_id!r}, who is not a coordinator in the federation roster"
        )
    try:
        roster.require_valid(coordinator.id)
    except AuthenticationFailed as exc:
        raise AuthenticationFailed(
            f"query signed by {coordinator.id}, whose roster certificate is not accepted: {exc.message}; "
            "the federation must issue it a new certificate"
        ) from exc
    if not roster.verify(coordinator.id, canonical, signature):
        raise AuthenticationFailed(
            f"the signature on the query from {coordinator.id} does not verify against its certificate; "
            "the query was altered after signing or not signed by that coordinator"
        )
    query = parse_query(canonical)
    require_canonical(query, canonical)
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


def require_canonical(query: Query, signed: bytes) -> None:
    """Refuse signed bytes that are not ``query``'s canonical encoding (docs/protocol.md, "Signed queries"), so
    one query has one encoding and its hash names it: InvalidQuery otherwise."""
    try:
        canonical = query.canonical()
    except UnicodeEncodeError:  # a JSON escape of a lone surrogate has no UTF-8 form, so no canonical bytes
        canonical = b""
    if canonical != signed:
        raise InvalidQuery(
            "the signed query is not in canonical form (keys sorted, no whitespace, UTF-8, only the escapes JSON "
            'requires: docs/protocol.md, "Signed queries"); sign exactly the canonical bytes'
        )


class QueryReplayGuard:
    """Remembers every signed query a node accepted, so that each is used once.

    A query is known by (coordinator, nonce). Entries are kept for as long as the freshness check could
    still accept the same query (``MAX_QUERY_AGE_S`` plus clock skew either way), after which the freshness
    check refuses it anyway; memory is bounded by the queries signed in that time.
    """

    def __init__(self, *, memory_s: float = MAX_QUERY_AGE_S + 2 * MAX_CLOCK_SKEW_S) -> None:
        self._memory_s = memory_s
        self._seen: dict[tuple[str, str], float] = {}

    def claim(self, query: Query) -> None:
        """Record ``query`` as used; RoundReplayed (ALREADY_EXISTS) if it was used here before."""
        now = time.monotonic()
        horizon = now - self._memory_s
        for key in [k for k, seen in self._seen.items() if seen < horizon]:
            del self._seen[key]
        key = (query.coordinator, query.nonce)
        if key in self._seen:
            raise RoundReplayed(
                f"the signed query {query.nonce} from {query.coordinator} was already submitted; a replayed "
                "query is refused: the coordinator must sign a new one (fedbroker query does so on every run)"
            )
        self._seen[key] = now

    def __len__(self) -> int:
        return len(self._seen)
