"""The adapter's round table: live rounds with a TTL and a cap, and replay memory for round ids and signed queries."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from adapters.policy import Approval
from federation.errors import ResourceExhausted, RoundAborted, RoundReplayed, UnknownRound
from federation.privacy.release import ReleaseCost
from federation.secagg import AdapterRound


@dataclass
class LiveRound:
    """One round this node takes part in. ``lock`` serialises its stages."""

    round_id: bytes
    state: AdapterRound
    approval: Approval
    cost: ReleaseCost  # what the round charges when its masked input leaves (reserved until then)
    expires_at: float
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class RoundTable:
    """Rounds by id. A round id is accepted once; a signed query may open each of its planned rounds once.

    Round state lives in memory only and expires ``ttl_s`` seconds after Open; the replay memory of ids and
    query nonces is kept for ``replay_memory_s`` (longer than a signed query's validity, so a replay of a
    query that could still pass the freshness check is always caught). At most ``max_live`` rounds are live
    or opening at once (each holds the node's vector); the broker frees abandoned ones with :meth:`abort`.
    ``on_drop(round_id)`` is called whenever a live round leaves the table (closed, aborted or expired), so the
    node can release what the round held (its budget reservation).
    """

    def __init__(
        self,
        *,
        ttl_s: float = 300.0,
        replay_memory_s: float = 3600.0,
        max_live: int = 16,
        on_drop: Callable[[bytes], None] = lambda _round_id: None,
    ) -> None:
        self._on_drop = on_drop
        self._ttl_s = ttl_s
        self._replay_memory_s = replay_memory_s
        self._max_live = max_live
        self._live: dict[bytes, LiveRound] = {}
        self._opening: set[bytes] = set()  # reserved, vector still being computed
        self._aborted: set[bytes] = set()  # aborted while opening: activate refuses them
        self._seen_ids: dict[bytes, float] = {}
        self._seen_queries: dict[tuple[str, str], float] = {}

    def reserve(self, round_id: bytes, approval: Approval) -> None:
        """Claim a round id and the (signed query, round) pair before any work is done; replays are refused."""
        now = time.monotonic()
        self._sweep(now)
        if len(self._live) + len(self._opening) >= self._max_live:
            raise ResourceExhausted(
                f"this node holds {len(self._live) + len(self._opening)} live rounds, its cap "
                f"(limits.max_live_rounds = {self._max_live}); retry when rounds finish, are aborted or expire "
                f"({self._ttl_s:.0f} s)"
            )
        if round_id in self._seen_ids:
            raise RoundReplayed(f"round {round_id.hex()} was already opened here; a replayed round id is refused")
        use = (approval.query.nonce, approval.plan.name)
        if use in self._seen_queries:
            raise RoundReplayed(
                f"the signed query {approval.query.nonce} already opened its {approval.plan.name!r} round here; "
                "a replayed query is refused: the coordinator must sign a new one"
            )
        self._seen_ids[round_id] = now
        self._seen_queries[use] = now
        self._opening.add(round_id)

    def release(self, round_id: bytes) -> None:
        """Give up a reservation whose Open failed (the round id stays used)."""
        self._opening.discard(round_id)
        self._aborted.discard(round_id)

    def activate(self, round_id: bytes, state: AdapterRound, approval: Approval, cost: ReleaseCost) -> LiveRound:
        """Make a reserved round live, with its TTL starting now; RoundAborted if it was aborted meanwhile."""
        self._opening.discard(round_id)
        if round_id in self._aborted:
            self._aborted.discard(round_id)
            raise RoundAborted(f"round {round_id.hex()} was aborted by the broker while it was opening")
        expires_at = time.monotonic() + self._ttl_s
        live = LiveRound(round_id=round_id, state=state, approval=approval, cost=cost, expires_at=expires_at)
        self._live[round_id] = live
        return live

    def get(self, round_id: bytes) -> LiveRound:
        now = time.monotonic()
        self._sweep(now)
        live = self._live.get(round_id)
        if live is None:
            if round_id in self._seen_ids:
                raise UnknownRound(f"round {round_id.hex()} expired after {self._ttl_s:.0f} s or was closed")
            raise UnknownRound(f"round {round_id.hex()} was never opened here")
        return live

    def close(self, round_id: bytes) -> None:
        if self._live.pop(round_id, None) is not None:
            self._on_drop(round_id)

    def abort(self, round_id: bytes) -> bool:
        """Drop a live or opening round at once; True if there was one. Its id stays used."""
        if round_id in self._opening:
            self._aborted.add(round_id)
            return True
        if self._live.pop(round_id, None) is None:
            return False
        self._on_drop(round_id)
        return True

    def __len__(self) -> int:
        return len(self._live)

    def _sweep(self, now: float) -> None:
        for rid in [r for r, live in self._live.items() if live.expires_at < now]:
            del self._live[rid]
            self._on_drop(rid)
        horizon = now - self._replay_memory_s
        for rid in [r for r, seen in self._seen_ids.items() if seen < horizon]:
            del self._seen_ids[rid]
        for use in [u for u, seen in self._seen_queries.items() if seen < horizon]:
            del self._seen_queries[use]
