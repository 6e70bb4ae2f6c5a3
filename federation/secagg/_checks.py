"""Checks shared by both roles: round parameters, id sets, stage order, threshold aborts."""

from __future__ import annotations

import itertools
from collections.abc import Collection, Iterable, Sequence

from federation.errors import RoundAborted, RoundError
from federation.secagg.messages import sorted_ids

ROUND_ID_BYTES = 16
QUERY_HASH_BYTES = 32


def round_label(round_id: bytes) -> str:
    """A short, printable name for a round in messages (hex of the 16-byte id)."""
    return bytes(round_id).hex()


def check_round_parameters(
    round_id: bytes, query_hash: bytes, participants: Sequence[str], threshold: int
) -> list[str]:
    """Validate what Open fixes; return U sorted by UTF-8 bytes.

    Refuses (``RoundError``): a round id that is not 16 bytes, a query hash that is not 32 bytes (sha256),
    an empty or duplicated id, a threshold below 2 or above |U|, and two ids whose concatenations in either
    order coincide (e.g. ``a`` and ``aa``), since the share encryption's associated data
    ``round id ‖ sender ‖ recipient`` could then not tell the direction of a share.
    """
    if len(round_id) != ROUND_ID_BYTES:
        raise RoundError(f"a round id is {ROUND_ID_BYTES} bytes, got {len(round_id)}")
    if len(query_hash) != QUERY_HASH_BYTES:
        raise RoundError(f"the query hash is a {QUERY_HASH_BYTES}-byte sha256, got {len(query_hash)} bytes")
    ordered = sorted_ids(participants)
    if any(not node_id for node_id in ordered):
        raise RoundError("a participant id is empty")
    duplicates = sorted_ids({a for a, b in itertools.pairwise(ordered) if a == b})
    if duplicates:
        raise RoundError(f"participant list names {', '.join(duplicates)} more than once")
    if not 2 <= threshold <= len(ordered):
        raise RoundError(f"threshold {threshold} must be between 2 and the {len(ordered)} participants")
    for i, first in enumerate(ordered):
        for second in ordered[i + 1 :]:
            if first + second == second + first:
                raise RoundError(
                    f"participant ids {first!r} and {second!r} are ambiguous in the share encryption's "
                    "associated data (each is a repetition of the same string); rename one"
                )
    return ordered


def check_members(ids: Sequence[str], allowed: Collection[str], what: str, allowed_name: str) -> list[str]:
    """Return ``ids`` sorted; ``RoundError`` on a duplicate or an id outside ``allowed``."""
    seen: set[str] = set()
    for node_id in ids:
        if node_id in seen:
            raise RoundError(f"{what} names {node_id} more than once")
        seen.add(node_id)
    outsiders = sorted_ids(seen.difference(allowed))
    if outsiders:
        raise RoundError(f"{what} names {', '.join(outsiders)}, not in {allowed_name}")
    return sorted_ids(seen)


def require_threshold(
    round_id: bytes, stage: str, present: Collection[str], expected: Iterable[str], threshold: int, what: str
) -> None:
    """``RoundAborted`` naming the stage and who was missing if fewer than ``threshold`` are present."""
    if len(present) >= threshold:
        return
    expected_ids = set(expected)
    missing = sorted_ids(expected_ids.difference(present))
    raise RoundAborted(
        f"round {round_label(round_id)} aborted at {stage}: {len(present)} of {len(expected_ids)} {what}, "
        f"threshold is {threshold}; "
        f"missing: {', '.join(missing) if missing else 'none'}"
    )


class StageTracker:
    """The last completed stage of one role's round; refuses a call made out of order."""

    def __init__(self, role: str, round_id: bytes, order: Sequence[str]) -> None:
        self._role = role
        self._round_id = round_id
        self._order = list(order)
        self.current = self._order[0]

    def require(self, call: str, *allowed: str) -> None:
        """``RoundError`` unless the current stage is one of ``allowed``."""
        if self.current not in allowed:
            raise RoundError(
                f"{self._role} round {round_label(self._round_id)}: {call} is out of order at stage "
                f"{self.current} (allowed after: {', '.join(allowed)})"
            )

    def advance(self, stage: str) -> None:
        self.current = stage
