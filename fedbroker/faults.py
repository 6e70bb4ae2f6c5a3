"""Fault injection for the fault tests: make one adapter process crash or hang at a chosen round stage.

Test-only. :class:`~fedbroker.harness.LocalFederation` starts a node with a fault through this module's own
entry point (``python -m fedbroker.faults --fault SPEC <serve adapter arguments>``), which installs a
:class:`FaultPlan` as the node's stage hooks; ``fedbroker serve adapter`` never does, and no product code reads
an environment variable for it. SPEC is

- ``exit-after:STAGE``: answer STAGE, then die (any later call on this node exits at once, so no later stage is
  answered even if the broker is quick);
- ``stall-at:STAGE``: never answer STAGE (the broker's stage deadline must fire).

STAGE is one of :data:`adapters.stages.STAGES`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from adapters.stages import STAGES

#: The exit code of a node that died by an ``exit-after`` fault.
EXIT_CODE = 70


class FaultPlan:
    """Stage hooks (:class:`adapters.stages.StageHooks`) that carry out one fault spec."""

    def __init__(self, spec: str) -> None:
        action, _, stage = spec.partition(":")
        if action not in ("exit-after", "stall-at") or stage not in STAGES:
            raise ValueError(f"fault {spec!r}: use exit-after:STAGE or stall-at:STAGE, STAGE in {', '.join(STAGES)}")
        self.action, self.stage = action, stage
        self._dying = False

    async def before(self, stage: str) -> None:
        if self._dying:
            os._exit(EXIT_CODE)
        if self.action == "stall-at" and stage == self.stage:
            await asyncio.Event().wait()

    def after(self, stage: str) -> None:
        if self.action == "exit-after" and stage == self.stage:
            self._dying = True
            # Give gRPC a moment to flush the answer, then vanish as a crash would.
            asyncio.get_running_loop().call_later(0.3, os._exit, EXIT_CODE)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve one adapter with a fault installed; the other arguments are those of ``fedbroker serve adapter``."""
    parser = argparse.ArgumentParser(prog="python -m fedbroker.faults", description=main.__doc__)
    parser.add_argument("--fault", required=True, help="exit-after:STAGE or stall-at:STAGE")
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--id", required=True)
    parser.add_argument("--listen")
    parser.add_argument("--ready-file", type=Path)
    parser.add_argument("--exit-with-parent", type=int)
    parser.add_argument("--log-format", default="text")
    parser.add_argument("--metrics-port", type=int)
    parser.add_argument("--metrics-host", default="127.0.0.1")
    args = parser.parse_args(argv)
    plan = FaultPlan(args.fault)

    from adapters.node import serve_adapter
    from fedbroker.cli import ready_file_writer
    from fedbroker.logs import configure_logging
    from federation.config import MetricsConfig, load_federation

    configure_logging(log_format=args.log_format, level="info")
    metrics = None if args.metrics_port is None else MetricsConfig(port=args.metrics_port, host=args.metrics_host)
    asyncio.run(
        serve_adapter(
            load_federation(args.config),
            args.id,
            listen=args.listen,
            on_ready=ready_file_writer(args.ready_file),
            parent_pid=args.exit_with_parent,
            metrics_config=metrics,
            stage_hooks=plan,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
