"""One bench node process: the REAL adapter service with a synthetic vector source, plus a plaintext baseline.

``python -m bench._round_node --federation ROSTER --id NODE --ready-file PATH`` binds 127.0.0.1 port 0 with the
node's mutual-TLS certificate and serves two things on the same server and port:

- :class:`SyntheticAdapterService`: :class:`adapters.service.AdapterService` unchanged (policy, signed-query
  checks, audit log, secure aggregation, chunked streaming) except ``_compute``, which returns the node's seeded
  random vector of the length the approved round needs instead of querying DuckDB;
- ``/bench.v1.PlaintextSum/Fetch``: a bench-only generic handler that streams the SAME vector, unmasked, as the
  same ``MaskedInputChunk`` messages in the same 2 MiB chunks, to the broker only. It exists only here, so that
  the secure round has an honest baseline; the product has no plaintext path.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt

from adapters.node import SERVICE_NAME
from adapters.policy import Approval
from adapters.service import AdapterService
from bench._federation import synthetic_vector
from federation.audit import AuditLog
from federation.chunking import CHUNK_BYTES, iter_chunks
from federation.config import load_federation
from federation.identity import Identity, Roster
from federation.registry import load_registry
from federation.serving import serve_node
from federation.tls import peer_identity
from federation.v1 import adapter_pb2, adapter_pb2_grpc

PLAINTEXT_SERVICE = "bench.v1.PlaintextSum"
PLAINTEXT_METHOD = f"/{PLAINTEXT_SERVICE}/Fetch"


class EveryRecordFsynced(AuditLog):
    """The audit log as it was before stages that release nothing skipped their fsync (the bench's baseline for
    that change, ``--audit-fsync every``)."""

    def append(self, event: str, *, durable: bool = True, **fields: Any) -> dict[str, Any]:
        return super().append(event, durable=True, **fields)


class SyntheticAdapterService(AdapterService):
    """The real adapter service; only the vector source is replaced (seeded, cached per length)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._vectors: dict[int, npt.NDArray[np.uint64]] = {}
        self._vectors_lock = threading.Lock()

    def vector(self, length: int) -> npt.NDArray[np.uint64]:
        with self._vectors_lock:
            if length not in self._vectors:
                self._vectors[length] = synthetic_vector(self._node.id, length)
            return self._vectors[length]

    def _compute(self, approval: Approval) -> npt.NDArray[np.uint64]:
        plan = approval.plan
        return self.vector(plan.length)


def plaintext_handler(service: SyntheticAdapterService, broker_id: str, roster: Roster) -> grpc.GenericRpcHandler:
    """The baseline: the node's vector in the clear, as MaskedInputChunk messages (header, then 2 MiB chunks)."""

    async def fetch(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        if peer_identity(context, roster) != broker_id:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "only the broker may fetch")
        length = int(request.decode("ascii"))
        vector = await asyncio.to_thread(service.vector, length)
        yield adapter_pb2.MaskedInputChunk(header=adapter_pb2.MaskedInputHeader(length=length, chunk_bytes=CHUNK_BYTES))
        for chunk in iter_chunks(vector, CHUNK_BYTES):
            yield adapter_pb2.MaskedInputChunk(data=chunk)

    method = grpc.unary_stream_rpc_method_handler(
        fetch,
        request_deserializer=bytes,
        response_serializer=adapter_pb2.MaskedInputChunk.SerializeToString,
    )
    return grpc.method_handlers_generic_handler(PLAINTEXT_SERVICE, {"Fetch": method})


async def serve(roster_path: Path, node_id: str, ready_file: Path, parent_pid: int, audit_fsync: str) -> None:
    federation = load_federation(roster_path)
    node = federation.node(node_id)
    identity = Identity.load(node.id, node.cert, node.key, federation.ca)
    registry = load_registry(federation.domain.provinces)
    log_class = EveryRecordFsynced if audit_fsync == "every" else AuditLog
    service = SyntheticAdapterService(federation, node, identity, registry, log_class(node.audit_log, node.id))
    roster = Roster.from_files(federation.certificates(), ca=federation.ca)

    def register(server: grpc.aio.Server) -> None:
        adapter_pb2_grpc.add_AgencyAdapterServicer_to_server(service, server)
        server.add_generic_rpc_handlers((plaintext_handler(service, federation.broker.id, roster),))

    def ready(port: int) -> None:
        partial = ready_file.with_suffix(".partial")
        partial.write_text(f"{port}\n")
        partial.replace(ready_file)

    # The same serving path as a real node (mTLS, health, signals); it stops when the bench process is gone.
    await serve_node(identity, "127.0.0.1:0", register, SERVICE_NAME, on_ready=ready, parent_pid=parent_pid)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench._round_node")
    parser.add_argument("--federation", type=Path, required=True)
    parser.add_argument("--id", required=True)
    parser.add_argument("--ready-file", type=Path, required=True)
    parser.add_argument("--parent-pid", type=int, required=True, help="stop when this process is gone")
    parser.add_argument(
        "--audit-fsync",
        choices=("release", "every"),
        default="release",
        help="fsync audit records where something leaves the node (the product's) or every record (the old way)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(serve(args.federation, args.id, args.ready_file, args.parent_pid, args.audit_fsync))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
