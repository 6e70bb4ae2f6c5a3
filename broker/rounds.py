"""The broker's round driver: one secure-aggregation round over gRPC, stage by stage (docs/protocol.md §7).

Every stage fans out to the adapters concurrently with a deadline; whoever fails or times out is dropped and
recorded with the reason. Masked vectors stream in and are added chunk by chunk into one running sum, so the
broker's memory stays near one vector whatever the number of agencies.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
import numpy as np
import numpy.typing as npt

from federation import metrics
from federation.chunking import cells_of
from federation.errors import FederationError, NodeUnavailable, RoundAborted, VectorMismatch
from federation.queries import query_hash
from federation.rpc import error_from_rpc
from federation.secagg import BrokerRound, EncryptedShare, RevealedShare, Verifier
from federation.v1 import adapter_pb2, adapter_pb2_grpc, common_pb2
from federation.wire import advert_from_pb, revealed_from_pb, shares_from_pb, shares_to_pb

T = TypeVar("T")
#: progress(stage, round name, contributors, message); a "waiting" event also passes ``awaited`` (node ids not
#: yet answered at that stage) and ``waited_s`` (seconds since the stage began) as keywords.
ProgressFn = Callable[..., None]
#: How often a stage still waiting for some agencies says whom it waits for (seconds).
WAITING_EVERY_S = 2.0
#: How many times the masked-input stage is re-run when a stream broke after adding chunks.
MAX_MASKED_ATTEMPTS = 3
#: Deadline of one Abort call (seconds); it runs in the background, after the round ended.
ABORT_TIMEOUT_S = 10.0
_BACKGROUND: set[asyncio.Task[None]] = set()


@dataclass(frozen=True)
class AdapterPeer:
    node_id: str
    stub: adapter_pb2_grpc.AgencyAdapterAsyncStub


@dataclass(frozen=True)
class RoundOutcome:
    """The cross-agency sum of one round and who is in it."""

    name: str
    total: npt.NDArray[np.uint64]
    contributors: tuple[str, ...]
    missing: Mapping[str, str]
    #: Each adapter's audit head (seq, hash) from its last answer in the round, for the broker's record.
    peer_heads: Mapping[str, tuple[int, str]] = field(default_factory=dict)


@dataclass
class _Stage:
    """Shared per-round bookkeeping of who dropped and why."""

    name: str
    deadline: float
    stage_timeout_s: float
    progress: ProgressFn
    missing: dict[str, str] = field(default_factory=dict)
    broker_head: Callable[[], common_pb2.AuditHead] = common_pb2.AuditHead
    peer_heads: dict[str, tuple[int, str]] = field(default_factory=dict)

    def saw(self, node_id: str, head: common_pb2.AuditHead) -> None:
        """Keep the latest audit head an adapter answered with."""
        if head.seq and head.seq >= self.peer_heads.get(node_id, (0, ""))[0]:
            self.peer_heads[node_id] = (int(head.seq), str(head.hash))

    unreachable: set[str] = field(default_factory=set)  # dropped for a timeout or a broken connection
    masked_sent: set[str] = field(default_factory=set)  # whose masked-input header arrived

    def timeout(self) -> float:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise RoundAborted(f"round {self.name}: the query's deadline passed before the next stage")
        return min(self.stage_timeout_s, remaining)

    def drop(self, node_id: str, stage: str, error: BaseException) -> None:
        reason = error.message if isinstance(error, FederationError) else "internal error"
        self.missing.setdefault(node_id, f"{stage}: {reason}")
        if not isinstance(error, FederationError) or isinstance(error, NodeUnavailable):
            self.unreachable.add(node_id)


async def _fan_out(
    stage: _Stage, label: str, peers: Sequence[AdapterPeer], call: Callable[[AdapterPeer], Awaitable[T]]
) -> dict[str, T]:
    """Run ``call`` on every peer concurrently; return the answers of those that succeeded."""

    async def one(peer: AdapterPeer) -> tuple[str, T | BaseException]:
        try:
            return peer.node_id, await call(peer)
        except grpc.aio.AioRpcError as rpc_error:
            return peer.node_id, error_from_rpc(rpc_error, node=peer.node_id)
        except FederationError as error:
            return peer.node_id, error

    pending = {p.node_id for p in peers}
    began = time.monotonic()

    async def tracked(peer: AdapterPeer) -> tuple[str, T | BaseException]:
        try:
            return await one(peer)
        finally:
            pending.discard(peer.node_id)

    async def say_who_is_slow() -> None:
        # The coordinator sees whom the round waits for, and for how long, while a stage is still open.
        while pending:
            await asyncio.sleep(WAITING_EVERY_S)
            if pending:
                waited = time.monotonic() - began
                awaited = sorted(pending)
                answered = sorted({p.node_id for p in peers} - pending)
                stage.progress(
                    "waiting",
                    stage.name,
                    answered,
                    f"waiting for {', '.join(awaited)} at {label}, {waited:.0f} s",
                    awaited=awaited,
                    waited_s=waited,
                )

    watcher = asyncio.create_task(say_who_is_slow())
    try:
        with metrics.STAGE_SECONDS.labels(stage=label).time():
            results = await asyncio.gather(*(tracked(p) for p in peers))
    finally:
        watcher.cancel()
    answers: dict[str, T] = {}
    for node_id, answer in results:
        if isinstance(answer, BaseException):
            stage.drop(node_id, label, answer)
        else:
            answers[node_id] = answer
    return answers


def _require(stage: _Stage, label: str, have: Sequence[str], threshold: int) -> None:
    if len(have) < threshold:
        missing = "; ".join(f"{n} ({why})" for n, why in sorted(stage.missing.items())) or "none"
        raise RoundAborted(
            f"round {stage.name} aborted at {label}: {len(have)} participant(s) left "
            f"({', '.join(sorted(have)) or 'none'}), threshold {threshold}; missing: {missing}"
        )


async def run_round(
    *,
    name: str,
    spec: common_pb2.VectorSpec,
    query: common_pb2.SignedQuery,
    peers: Sequence[AdapterPeer],
    threshold: int,
    verifier: Verifier,
    deadline: float,
    stage_timeout_s: float = 60.0,
    progress: ProgressFn | None = None,
    audit_head: Callable[[], common_pb2.AuditHead] | None = None,
    masked_sent: set[str] | None = None,
) -> RoundOutcome:
    """Run one round; return the sum over the surviving contributors, or raise RoundAborted naming the stage.

    However the round ends (success, abort, a failure, the query cancelled), every participant that did not
    close it with its Unmask answer is sent ``Abort`` at once, so no adapter keeps the round's state (its
    vector) until the TTL. ``masked_sent`` (when given) is filled with every participant whose masked-input
    header arrived, however the round ends: each of them charged its budget for the round before sending it."""
    round_id = secrets.token_bytes(16)
    # Who may hold the round's state: every participant until Open has answered, then those that opened,
    # less those that closed it by answering Unmask.
    holding = {p.node_id for p in peers}
    outcome = "failed"
    try:
        stage = _Stage(name, deadline, stage_timeout_s, progress or (lambda *_: None))
        if masked_sent is not None:
            stage.masked_sent = masked_sent
        if audit_head is not None:
            stage.broker_head = audit_head
        result = await _run_stages(stage, spec, query, peers, threshold, verifier, round_id, holding)
        outcome = "completed"
        return result
    except RoundAborted:
        outcome = "aborted"
        raise
    except asyncio.CancelledError:
        outcome = "cancelled"
        raise
    finally:
        metrics.ROUNDS.labels(outcome=outcome).inc()
        abort_in_background([p for p in peers if p.node_id in holding], round_id)


def abort_in_background(peers: Sequence[AdapterPeer], round_id: bytes) -> None:
    """Send ``Abort(round_id)`` to every peer concurrently, without waiting: a stalled adapter must not delay
    the answer, and a cancelled query cannot wait. Failures are ignored (the round expires there anyway)."""
    if not peers:
        return
    request = adapter_pb2.AbortRequest(round_id=round_id)

    async def one(peer: AdapterPeer) -> None:
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.TimeoutError):
            await peer.stub.Abort(request, timeout=ABORT_TIMEOUT_S)

    async def every() -> None:
        await asyncio.gather(*(one(p) for p in peers))

    task = asyncio.get_running_loop().create_task(every())
    _BACKGROUND.add(task)  # keep a reference until done, or the loop may collect it mid-way
    task.add_done_callback(_BACKGROUND.discard)


async def _run_stages(
    stage: _Stage,
    spec: common_pb2.VectorSpec,
    query: common_pb2.SignedQuery,
    peers: Sequence[AdapterPeer],
    threshold: int,
    verifier: Verifier,
    round_id: bytes,
    holding: set[str],
) -> RoundOutcome:
    name = stage.name
    by_id = {p.node_id: p for p in peers}
    participants = sorted(by_id)
    state = BrokerRound(
        round_id=round_id,
        query_hash=query_hash(query.canonical),
        participants=participants,
        threshold=threshold,
        length=int(spec.length),
        verifier=verifier,
    )

    # 1. Open: each adapter applies its own policy, computes x_u and returns its signed advert.
    open_request = adapter_pb2.OpenRequest(
        round_id=round_id,
        query=query,
        spec=spec,
        participants=participants,
        threshold=threshold,
        broker_head=stage.broker_head(),
    )
    opened = await _fan_out(stage, "open", peers, lambda p: p.stub.Open(open_request, timeout=stage.timeout()))
    # A refusal at Open leaves nothing there to free; a node that timed out may still be computing.
    holding.intersection_update({*opened, *stage.unreachable})
    _require(stage, "open", list(opened), threshold)
    for node_id, answer in opened.items():
        stage.saw(node_id, answer.head)
    u1 = state.receive_adverts([advert_from_pb(r.advert) for r in opened.values()])
    stage.progress("open", name, u1, f"{len(u1)} of {len(participants)} opened")

    # 2. ShareKeys: adverts out, encrypted shares back (the broker relays them and cannot read them).
    adverts = [opened[n].advert for n in u1]
    share_request = adapter_pb2.ShareKeysRequest(round_id=round_id, adverts=adverts, broker_head=stage.broker_head())
    shared = await _fan_out(
        stage, "share-keys", [by_id[n] for n in u1], lambda p: p.stub.ShareKeys(share_request, timeout=stage.timeout())
    )
    _require(stage, "share-keys", list(shared), threshold)
    for node_id, shared_answer in shared.items():
        stage.saw(node_id, shared_answer.head)
    routed = state.route_shares({n: shares_from_pb(r.shares) for n, r in shared.items()})
    u2 = state.u2
    stage.progress("share-keys", name, u2, f"{len(u2)} sent shares")

    # 3. MaskedInput: stream y_u into the running sum.
    await _collect_masked(stage, state, round_id, [by_id[n] for n in u2], routed, int(spec.length))
    u3 = state.survivors
    _require(stage, "masked-input", u3, threshold)
    stage.progress("masked-input", name, u3, f"{len(u3)} masked contributions summed")

    # 4. Consistency: every survivor signs U3, so the broker cannot show parties different sets.
    consistency_request = adapter_pb2.ConsistencyRequest(
        round_id=round_id, survivors=u3, broker_head=stage.broker_head()
    )
    signed = await _fan_out(
        stage,
        "consistency",
        [by_id[n] for n in u3],
        lambda p: p.stub.Consistency(consistency_request, timeout=stage.timeout()),
    )
    _require(stage, "consistency", list(signed), threshold)
    for node_id, signed_answer in signed.items():
        stage.saw(node_id, signed_answer.head)
    signatures = state.receive_consistency({n: r.signature for n, r in signed.items()})
    stage.progress("consistency", name, sorted(signed), "survivor set signed")

    # 5. Unmask: self-mask shares of U3 and mask-key shares of U2 \ U3; the broker removes every mask.
    unmask_request = adapter_pb2.UnmaskRequest(
        round_id=round_id,
        survivors=u3,
        signatures=[adapter_pb2.SurvivorSignature(node_id=n, signature=s) for n, s in sorted(signatures.items())],
        broker_head=stage.broker_head(),
    )
    revealed_pb = await _fan_out(
        stage, "unmask", [by_id[n] for n in u3], lambda p: p.stub.Unmask(unmask_request, timeout=stage.timeout())
    )
    holding.difference_update(revealed_pb)  # an adapter drops the round once it has answered Unmask
    for node_id, unmask_answer in revealed_pb.items():
        stage.saw(node_id, unmask_answer.head)
    _require(stage, "unmask", list(revealed_pb), threshold)
    revealed: dict[str, list[RevealedShare]] = {n: revealed_from_pb(r.shares) for n, r in revealed_pb.items()}
    total = await asyncio.to_thread(state.unmask, revealed)
    stage.progress("unmask", name, u3, "sum recovered")
    missing = {n: stage.missing.get(n, "did not contribute") for n in participants if n not in u3}
    return RoundOutcome(
        name=name, total=total, contributors=tuple(u3), missing=missing, peer_heads=dict(stage.peer_heads)
    )


async def _collect_masked(
    stage: _Stage,
    state: BrokerRound,
    round_id: bytes,
    peers: Sequence[AdapterPeer],
    routed: Mapping[str, Sequence[EncryptedShare]],
    length: int,
) -> None:
    """Stream every masked vector into the running sum. A stream that breaks after some of its chunks were
    added poisons the sum: it is discarded and the complete contributors are fetched again (their y_u is
    deterministic for the same U2, so a repeat reveals nothing new)."""
    survivors = [p.node_id for p in peers]
    pending = list(peers)
    for _attempt in range(MAX_MASKED_ATTEMPTS):
        poisoned = False

        async def fetch(peer: AdapterPeer) -> None:
            nonlocal poisoned
            request = adapter_pb2.MaskedInputRequest(
                round_id=round_id,
                survivors=survivors,
                shares=shares_to_pb(routed.get(peer.node_id, ())),
                broker_head=stage.broker_head(),
            )
            header: Any = None
            offset = 0
            try:
                async for message in peer.stub.MaskedInput(request, timeout=stage.timeout()):
                    if message.HasField("header"):
                        if header is not None:
                            raise VectorMismatch(f"{peer.node_id} sent a second header in its masked-input stream")
                        header = message.header
                        stage.masked_sent.add(peer.node_id)
                        stage.saw(peer.node_id, header.head)
                        if header.length != length or header.round_id != round_id:
                            raise VectorMismatch(
                                f"{peer.node_id} announced {header.length} cells for round "
                                f"{header.round_id.hex()}, expected {length} for {round_id.hex()}"
                            )
                        continue
                    if header is None:
                        raise VectorMismatch(f"{peer.node_id} sent vector data before its header")
                    # Each read of a protobuf bytes field copies it: read the 2 MiB chunk once.
                    data = message.data
                    cells = cells_of(data, sender=peer.node_id)
                    state.add_masked_chunk(peer.node_id, offset, data)
                    metrics.MASKED_BYTES.labels(direction="received").inc(len(data))
                    offset += cells.size
                if header is None:
                    raise VectorMismatch(f"{peer.node_id} closed its stream without a header")
                state.finish_masked(peer.node_id, int(header.length))
            except BaseException:
                if offset:
                    poisoned = True
                raise

        done = await _fan_out(stage, "masked-input", pending, fetch)
        if not poisoned:
            return
        state.discard_masked()
        pending = [p for p in pending if p.node_id in done]
        stage.progress("masked-input", stage.name, sorted(done), "a stream broke mid-way: re-fetching the others")
    raise RoundAborted(f"round {stage.name}: masked-input streams kept breaking after {MAX_MASKED_ATTEMPTS} attempts")
