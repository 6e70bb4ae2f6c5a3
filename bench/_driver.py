"""The broker side of the round benchmarks: mutual-TLS channels to the bench nodes, the REAL round driver
(:func:`broker.rounds.run_round`) for secure rounds, and the plaintext baseline over the same channels.

Each secure round is a fresh query signed by the bench's national coordinator, so every adapter runs its whole
policy path (signature, freshness, replay guard, window, participants, vector length) as in production:

- ``telecom.trips`` comes from a ``flows`` query (telecom source, 14 days): OD, n_districts² cells;
- ``telecom.residents`` from an ``importation-risk`` query's ``residents`` round: n_districts cells.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt

from bench._federation import COORDINATOR_ID
from bench._round_node import PLAINTEXT_METHOD
from broker.client import coordinator_identity, sign_query
from broker.rounds import AdapterPeer, run_round
from broker.service import round_threshold
from federation.catalog import NATIONAL, kind, new_query
from federation.chunking import cells_of
from federation.config import load_federation
from federation.identity import Identity, Roster
from federation.registry import load_registry
from federation.tls import channel_credentials, channel_options
from federation.v1 import adapter_pb2, adapter_pb2_grpc, common_pb2

WINDOW_END = dt.date(2020, 1, 28)
WINDOW_START = dt.date(2020, 1, 15)
#: aggregate -> the query kind whose signed query asks for it.
QUERY_OF = {"telecom.trips": "flows", "telecom.residents": "importation-risk"}
STAGES = ("open", "share-keys", "masked-input", "consistency", "unmask")
_TIMEOUT_S = 600.0

Vector = npt.NDArray[np.uint64]


class Driver:
    """``async with Driver(roster, ports) as driver:`` opens one mTLS channel per node, as the broker does."""

    def __init__(self, federation_path: Path, ports: dict[str, int]) -> None:
        self.federation = load_federation(federation_path)
        broker = self.federation.broker
        self._identity = Identity.load(broker.id, broker.cert, broker.key, self.federation.ca)
        self._coordinator = coordinator_identity(self.federation, COORDINATOR_ID)
        self._verifier = Roster.from_files(self.federation.certificates(), ca=self.federation.ca)
        self.registry = load_registry(self.federation.domain.provinces)
        self._ports = dict(ports)
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._stubs: dict[str, adapter_pb2_grpc.AgencyAdapterAsyncStub] = {}

    async def __aenter__(self) -> Driver:
        credentials = channel_credentials(self._identity)
        for node_id, port in self._ports.items():
            channel = grpc.aio.secure_channel(f"127.0.0.1:{port}", credentials, options=channel_options(node_id))
            self._channels[node_id] = channel
            self._stubs[node_id] = adapter_pb2_grpc.AgencyAdapterStub(channel)
        for channel in self._channels.values():
            await asyncio.wait_for(channel.channel_ready(), timeout=30)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        for channel in self._channels.values():
            await channel.close()

    def length(self, aggregate: str) -> int:
        """Cells of ``aggregate``'s vector over the roster's domain and the bench window."""
        return int(self._plan(aggregate, self._new_query(aggregate)).length)

    def _new_query(self, aggregate: str) -> Any:
        name = QUERY_OF[aggregate]
        start = WINDOW_START if name == "flows" else None
        return new_query(name, start=start, end=WINDOW_END, params={}, coordinator=COORDINATOR_ID)

    def _plan(self, aggregate: str, query: Any) -> Any:
        return next(
            plan for plan in kind(query.kind).rounds(query, self.registry, NATIONAL) if plan.aggregate == aggregate
        )

    async def secure_round(
        self, participants: Sequence[str], aggregate: str, on_stage: Callable[[str], None] | None = None
    ) -> tuple[Vector, dict[str, float]]:
        """One real secure round; returns the released sum and the seconds each stage took. ``on_stage(name)``
        is called as each stage completes (the driver's progress callback)."""
        query = self._new_query(aggregate)
        plan = self._plan(aggregate, query)
        spec = common_pb2.VectorSpec(
            aggregate=aggregate,
            length=plan.length,
            registry_hash=self.registry.hash,
            start=plan.start.isoformat() if plan.start else "",
            end=plan.end.isoformat() if plan.end else "",
            params=dict(plan.params),
        )
        marks: dict[str, float] = {}
        began = time.perf_counter()

        def progress(stage: str, _round: str, _contributors: Sequence[str], _message: str) -> None:
            marks[stage] = time.perf_counter() - began
            if on_stage is not None:
                on_stage(stage)

        outcome = await run_round(
            name=plan.name,
            spec=spec,
            query=sign_query(self._coordinator, query),
            peers=[AdapterPeer(node_id, self._stubs[node_id]) for node_id in participants],
            threshold=round_threshold(self.federation, participants),
            verifier=self._verifier,
            deadline=time.monotonic() + _TIMEOUT_S,
            stage_timeout_s=_TIMEOUT_S / 2,
            progress=progress,
        )
        if sorted(outcome.contributors) != sorted(participants):
            raise RuntimeError(f"secure round lost contributors: {dict(outcome.missing)}")
        stages, previous = {}, 0.0
        for stage in STAGES:
            stages[stage] = marks[stage] - previous
            previous = marks[stage]
        return outcome.total, stages

    async def plaintext_round(self, participants: Sequence[str], length: int) -> Vector:
        """The baseline: every node's vector in the clear over the same channels, same chunks, one running sum."""
        total = np.zeros(length, dtype=np.uint64)

        async def fetch(node_id: str) -> None:
            call = self._channels[node_id].unary_stream(
                PLAINTEXT_METHOD,
                request_serializer=bytes,
                response_deserializer=adapter_pb2.MaskedInputChunk.FromString,
            )
            offset = 0
            async for message in call(str(length).encode("ascii"), timeout=_TIMEOUT_S):
                if message.HasField("header"):
                    if message.header.length != length:
                        raise RuntimeError(f"{node_id} announced {message.header.length} cells, expected {length}")
                    continue
                cells = cells_of(message.data, sender=node_id)
                target = total[offset : offset + cells.size]
                np.add(target, cells, out=target)
                offset += cells.size
            if offset != length:
                raise RuntimeError(f"{node_id} sent {offset} of {length} cells")

        await asyncio.gather(*(fetch(node_id) for node_id in participants))
        return total
