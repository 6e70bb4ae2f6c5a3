"""Stage hooks: the one seam through which a test harness may act when a round stage arrives at an adapter.

Production nodes run with :data:`NO_HOOKS`, which does nothing; nothing here reads the environment. The
fault harness (:mod:`fedbroker.faults`) starts a node through its own test-only entry point and passes hooks
that crash or hang the node at a chosen stage.
"""

from __future__ import annotations

from typing import Protocol

#: The round stages an adapter answers, in protocol order (docs/protocol.md, "Round stages").
STAGES = ("open", "share-keys", "masked-input", "consistency", "unmask")


class StageHooks(Protocol):
    async def before(self, stage: str) -> None:
        """Called when a request for ``stage`` arrives, before the node does anything with it."""

    def after(self, stage: str) -> None:
        """Called once the answer to ``stage`` is handed to gRPC."""


class _NoHooks:
    async def before(self, stage: str) -> None:
        return None

    def after(self, stage: str) -> None:
        return None


NO_HOOKS: StageHooks = _NoHooks()
