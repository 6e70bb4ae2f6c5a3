"""The fedbroker application: CLI, synthetic scenarios, local federation launcher, reports, and
:class:`fedbroker.Client`, the coordinator's Python client."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Answer", "Client", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy, so that `fedbroker --help` and the node processes do not load the client's imports.
    if name == "Client":
        from fedbroker.client import Client

        return Client
    if name == "Answer":
        from broker.client import Answer

        return Answer
    raise AttributeError(f"module 'fedbroker' has no attribute {name!r}")
