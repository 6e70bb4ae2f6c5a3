"""How a carrier's itinerary service reaches a phone: the SmsSender interface and the local federation's outbox.

A real carrier plugs its SMS centre in behind :class:`SmsSender`; the local federation's
:class:`OutboxSender` appends one JSON line per message to ``DIR/sms/outbox.jsonl`` (DIR: the scenario folder),
``{"carrier": ..., "to": ..., "text": ...}``, where a person playing the phone reads the code.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Protocol

__all__ = ["OutboxSender", "SmsSender", "code_text", "local_outbox"]


def local_outbox(ca: Path) -> Path:
    """The local federation's outbox, ``DIR/sms/outbox.jsonl``, DIR being the scenario folder that holds
    ``pki/ca.pem`` (so every roster copy of one scenario, wherever it is written, finds the same outbox)."""
    return ca.parent.parent / "sms" / "outbox.jsonl"


class SmsSender(Protocol):
    """Delivers one text message to an E.164 number on behalf of ``carrier``."""

    def send(self, carrier: str, to: str, text: str) -> None: ...


def code_text(carrier: str, code: str, *, ttl_min: int, window_days: int) -> str:
    """The SMS carrying a one-time code."""
    return (
        f"[{carrier}] Your code for the {window_days}-day itinerary query is {code}, valid for {ttl_min} minutes "
        "and once. Do not share it: it shows where you have been."
    )


class OutboxSender:
    """Appends each message as one JSON line to ``path`` (created with its folder, mode 0600)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def send(self, carrier: str, to: str, text: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"carrier": carrier, "to": to, "text": text}, ensure_ascii=False) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            # Several carriers' nodes share one outbox: a lock keeps their lines whole.
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, line.encode("utf-8"))
        finally:
            os.close(fd)
