"""Fault injection for the fault tests: make this adapter process crash or hang at a chosen round stage.

Set ``FEDBROKER_FAULT`` in the node's environment (the harness does it per node):

- ``exit-after:STAGE``: answer STAGE, then die (any later call on this node exits at once, so no later stage is
  answered even if the broker is quick);
- ``stall-at:STAGE``: never answer STAGE (the broker's stage deadline must fire).

STAGE is one of open, share-keys, masked-input, consistency, unmask. Unset, this module does nothing.
"""

from __future__ import annotations

import asyncio
import os

FAULT_ENV = "FEDBROKER_FAULT"
STAGES = ("open", "share-keys", "masked-input", "consistency", "unmask")
EXIT_CODE = 70


class FaultPlan:
    def __init__(self, spec: str | None) -> None:
        self.action, self.stage = "", ""
        if spec:
            action, _, stage = spec.partition(":")
            if action not in ("exit-after", "stall-at") or stage not in STAGES:
                raise ValueError(f"{FAULT_ENV}={spec!r}: use exit-after:STAGE or stall-at:STAGE, STAGE in {STAGES}")
            self.action, self.stage = action, stage
        self._dying = False

    @classmethod
    def from_env(cls) -> FaultPlan:
        return cls(os.environ.get(FAULT_ENV))

    async def before(self, stage: str) -> None:
        """Called when a stage request arrives."""
        if self._dying:
            os._exit(EXIT_CODE)
        if self.action == "stall-at" and stage == self.stage:
            await asyncio.Event().wait()

    def after(self, stage: str) -> None:
        """Called once a stage's answer is handed to gRPC."""
        if self.action == "exit-after" and stage == self.stage:
            self._dying = True
            # Give gRPC a moment to flush the answer, then vanish as a crash would.
            asyncio.get_running_loop().call_later(0.3, os._exit, EXIT_CODE)
