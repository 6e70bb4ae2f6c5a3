"""What a coordinator sees while a query runs: each round's stage and, per agency, who has answered and who is
awaited for how long ("waiting for transport-c at share-keys, 12 s").

In a terminal it is one line redrawn in place, with a bar over every round's stages; elsewhere (a log, a pipe)
each event is one plain line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TextIO

from federation.v1 import broker_pb2

#: The stages of one round, in order; a round has done a stage once the broker reports it.
STAGES = ("open", "share-keys", "masked-input", "consistency", "unmask")
_BAR = 24


@dataclass
class ProgressView:
    """Folds the broker's progress events into a display on ``stream``."""

    stream: TextIO
    interactive: bool
    rounds: dict[str, int] = field(default_factory=dict)  # round -> stages done
    waiting: dict[str, str] = field(default_factory=dict)  # round -> "waiting for ... at STAGE, N s"

    def __call__(self, event: broker_pb2.Progress) -> None:
        if event.stage == "plan":
            # "trips: telecom.trips, residents: telecom.residents"
            self.rounds = {part.split(":", 1)[0].strip(): 0 for part in event.message.split(",") if ":" in part}
        elif event.stage == "waiting":
            self.waiting[event.round] = (
                f"waiting for {', '.join(event.awaited)} at {event.message.rsplit(' at ', 1)[-1]}"
                if event.awaited
                else event.message
            )
        elif event.stage in STAGES and event.round:
            self.rounds[event.round] = max(self.rounds.get(event.round, 0), STAGES.index(event.stage) + 1)
            self.waiting.pop(event.round, None)
        if not self.interactive:
            label = f"[{event.round}] " if event.round else ""
            print(f"{label}{event.stage}: {event.message}", file=self.stream, flush=True)
            return
        print(f"\r\033[K{self.line()}", end="", file=self.stream, flush=True)

    def line(self) -> str:
        """The one-line summary: a bar over all rounds' stages, then each round's state."""
        total = len(self.rounds) * len(STAGES) or 1
        done = sum(self.rounds.values())
        filled = round(_BAR * done / total)
        parts = []
        for name, stages in self.rounds.items():
            state = self.waiting.get(name) or (STAGES[stages - 1] if stages else "planned")
            parts.append(f"{name}: {state}")
        return f"[{'#' * filled}{'.' * (_BAR - filled)}] {done}/{total} " + "; ".join(parts)

    def close(self) -> None:
        if self.interactive:
            print("\r\033[K", end="", file=self.stream, flush=True)
