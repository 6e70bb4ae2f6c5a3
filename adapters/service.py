"""The agency node's gRPC service: thin; reads requests, calls policy, aggregates and secagg, maps results.

Aggregate-only: the node's vector x_u is computed here and only ever leaves as y_u, the masked contribution.
Every request and every refusal is appended to the node's audit log before the node answers.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
from collections.abc import AsyncIterator
from typing import Any, TypedDict

import grpc
import numpy as np
import numpy.typing as npt

from adapters.aggregates import AGGREGATES_BY_KIND, AggregateRequest, compute_aggregate
from adapters.backends import data_window, open_backend
from adapters.policy import Approval, RoundRequest, approve_round, check_honest_majority
from adapters.rounds import LiveRound, RoundTable
from adapters.stages import NO_HOOKS, StageHooks
from federation import __version__, metrics
from federation.audit import AuditLog
from federation.catalog import KINDS
from federation.catalog.aggregates import SCOPE_PARAMS
from federation.chunking import CHUNK_BYTES, iter_chunks
from federation.config import FederationConfig, NodeConfig
from federation.errors import FederationError, InvalidQuery, PermissionDenied
from federation.identity import Identity, Roster
from federation.privacy.ledger import BudgetLedger, ledger_path
from federation.privacy.release import ReleaseCost, add_noise, release_cost
from federation.privacy.survivors import SurvivorMemory, release_spec, survivors_path
from federation.queries import query_hash
from federation.registry import Registry
from federation.rpc import rpc_errors
from federation.secagg import AdapterRound
from federation.tls import peer_identity
from federation.v1 import adapter_pb2, adapter_pb2_grpc, common_pb2
from federation.wire import advert_from_pb, advert_to_pb, revealed_to_pb, shares_from_pb, shares_to_pb

log = logging.getLogger(__name__)

PARTIALS_ENV = "FEDBROKER_PARTIALS"


class AdapterService(adapter_pb2_grpc.AgencyAdapterServicer):
    """One agency node. Only the roster's broker may drive rounds; anyone in the roster may Describe."""

    def __init__(
        self,
        federation: FederationConfig,
        node: NodeConfig,
        identity: Identity,
        registry: Registry,
        audit: AuditLog,
        *,
        round_ttl_s: float = 300.0,
        stage_hooks: StageHooks = NO_HOOKS,
    ) -> None:
        self._federation = federation
        self._node = node
        self._identity = identity
        self._registry = registry
        self._audit = audit
        privacy = node.policy.privacy
        self._ledger = BudgetLedger(ledger_path(node), owner=node.id, rho_per_day=privacy.rho_per_day)
        # A round that leaves the table before its masked input left gives its budget reservation back.
        self._rounds = RoundTable(ttl_s=round_ttl_s, max_live=node.limits.max_live_rounds, on_drop=self._ledger.release)
        self._verifier = Roster.from_files(federation.certificates(), ca=federation.ca, crl=federation.crl)
        self._stages = stage_hooks  # a no-op except under the fault harness
        #: host:port of this node's Prometheus endpoint once serving ("" when off), for Status.
        self.metrics_address = ""
        metrics.track_live_rounds(lambda: len(self._rounds))
        # FEDBROKER_PARTIALS=off makes every round scan the raw tables (benchmarks compare the two paths; an
        # operator who suspects a partial can rule it out without touching the store).
        self._use_partials = os.environ.get(PARTIALS_ENV, "on") != "off"
        # Exact-sum agencies unmask one survivor set per aggregate spec (federation/privacy/survivors.py).
        exact_once = not privacy.noisy and privacy.one_survivor_set
        self._survivors = SurvivorMemory(survivors_path(node), owner=node.id) if exact_once else None

    def close_audit(self) -> None:
        """fsync the audit records still unsynced and close the log (the node is stopping)."""
        self._audit.close()

    # -- boundary helpers -------------------------------------------------------------------------------

    async def on_rpc_error(self, method: str, context: Any, error: FederationError) -> None:
        """Audit every refusal with its reason (messages never carry raw values)."""
        metrics.REFUSALS.labels(method=method, reason=type(error).__name__).inc()
        await self._audit.append_async(
            "refused",
            method=method,
            peer=_peer_or_unknown(context),
            status=error.status,
            reason=error.message,
        )

    def _caller(self, context: grpc.aio.ServicerContext[Any, Any], *, broker_only: bool) -> str:
        # The certificate must be the roster's own for its id: a stray certificate from our CA is refused.
        peer = peer_identity(context, self._verifier)
        if broker_only and peer != self._federation.broker.id:
            raise PermissionDenied(
                f"only the broker {self._federation.broker.id!r} may drive secure-aggregation rounds, not {peer!r}"
            )
        return peer

    # -- RPCs ---------------------------------------------------------------------------------------------

    @rpc_errors()
    async def Describe(
        self, request: adapter_pb2.DescribeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> adapter_pb2.NodeDescription:
        self._caller(context, broker_only=False)
        window = await asyncio.to_thread(self._data_window)
        return adapter_pb2.NodeDescription(
            node_id=self._node.id,
            kind=self._node.kind,
            registry_hash=self._registry.hash,
            aggregates=list(AGGREGATES_BY_KIND.get(self._node.kind, ())),
            allowed_queries=[q for q in self._node.policy.allowed_queries if q in KINDS],
            max_window_days=self._node.policy.max_window_days,
            data_start=window[0].isoformat() if window else "",
            data_end=window[1].isoformat() if window else "",
        )

    @rpc_errors()
    async def Open(
        self, request: adapter_pb2.OpenRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> adapter_pb2.OpenResponse:
        peer = self._caller(context, broker_only=True)
        await self._stages.before("open")
        if len(request.round_id) != 16:
            raise InvalidQuery(f"round id must be 16 bytes, got {len(request.round_id)}")
        round_request = RoundRequest(
            canonical_query=request.query.canonical,
            coordinator_id=request.query.coordinator_id,
            signature=request.query.signature,
            aggregate=request.spec.aggregate,
            length=request.spec.length,
            registry_hash=request.spec.registry_hash,
            start=request.spec.start,
            end=request.spec.end,
            params=dict(request.spec.params),
            participants=tuple(request.participants),
            threshold=request.threshold,
        )
        approval = approve_round(self._federation, self._verifier, self._node, self._registry, round_request)
        cost = release_cost(
            self._node.id,
            self._node.policy.privacy,
            approval.plan.aggregate,
            approval.plan.start,
            approval.plan.end,
            request.spec.rho,
            request.threshold,
            int(request.spec.length),
            query_end=approval.query.end,  # a window-free release charges the signed query's period
        )
        self._rounds.reserve(request.round_id, approval)
        try:
            live, record = await self._open(request, approval, cost, peer)
        except BaseException:
            self._ledger.release(request.round_id)  # the round never went live: nothing of it can leave
            raise
        finally:
            self._rounds.release(request.round_id)
        async with live.lock:
            advert = live.state.advertise()
        metrics.ROUNDS.labels(outcome="opened").inc()
        self._stages.after("open")
        return adapter_pb2.OpenResponse(advert=advert_to_pb(advert), head=_head(record))

    async def _open(
        self, request: adapter_pb2.OpenRequest, approval: Approval, cost: ReleaseCost, peer: str
    ) -> tuple[LiveRound, dict[str, Any]]:
        """Reserve the budget, audit the approval, compute x_u plus noise off the event loop, make the round live."""
        query = approval.query
        if cost.noisy:
            # Reserved at Open, charged when the masked input leaves (MaskedInput): a broker that opens rounds
            # and never finishes them spends nothing, and rounds in progress together never exceed the cap.
            self._ledger.reserve(request.round_id, cost.days, cost.rho)
        # The approval's record is written while the aggregate is computed; both finish before the node answers.
        # It is fsynced with MaskedInput's record, before anything derived from the data leaves the node (Open
        # releases only public keys).
        approval_recorded = asyncio.ensure_future(
            self._audit.append_async(
                "round.open",
                peer=peer,
                **_broker_head(request),
                round=request.round_id.hex(),
                coordinator=query.coordinator,
                kind=query.kind,
                start=query.start.isoformat(),
                end=query.end.isoformat(),
                nonce=query.nonce,
                aggregate=approval.plan.aggregate,
                layout=approval.plan.layout or "domain",
                participants=list(request.participants),
                threshold=request.threshold,
                noise=self._node.policy.privacy.noise,
                party_sigma2=str(cost.party_sigma2),
                rho=cost.rho,
                decision="approved",
                durable=False,
            )
        )
        try:
            vector = await asyncio.to_thread(self._contribution, approval, cost)
        finally:
            record = await approval_recorded
        state = AdapterRound(
            node_id=self._node.id,
            round_id=request.round_id,
            query_hash=query_hash(request.query.canonical),
            participants=list(request.participants),
            threshold=request.threshold,
            vector=vector,
            signer=self._identity.sign,
            verifier=self._verifier,
        )
        return self._rounds.activate(request.round_id, state, approval, cost), record

    @rpc_errors()
    async def ShareKeys(
        self, request: adapter_pb2.ShareKeysRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> adapter_pb2.ShareKeysResponse:
        peer = self._caller(context, broker_only=True)
        await self._stages.before("share-keys")
        live = self._rounds.get(request.round_id)
        adverts = [advert_from_pb(a) for a in request.adverts]
        check_honest_majority(
            self._node.id, live.approval.threshold, len({a.node_id for a in adverts}), "U1", "ShareKeys"
        )
        async with live.lock:
            shares = await asyncio.to_thread(live.state.share_keys, adverts)
        # Encrypted key shares for the other parties leave here, nothing the broker can read: fsynced later.
        record = await self._audit.append_async(
            "round.share-keys",
            peer=peer,
            **_broker_head(request),
            round=request.round_id.hex(),
            u1=sorted(a.node_id for a in adverts),
            durable=False,
        )
        self._stages.after("share-keys")
        return adapter_pb2.ShareKeysResponse(shares=shares_to_pb(shares), head=_head(record))

    @rpc_errors()
    async def MaskedInput(
        self, request: adapter_pb2.MaskedInputRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[adapter_pb2.MaskedInputChunk]:
        peer = self._caller(context, broker_only=True)
        await self._stages.before("masked-input")
        live = self._rounds.get(request.round_id)
        survivors = list(request.survivors)
        async with live.lock:
            masked = await asyncio.to_thread(live.state.masked_input, survivors, shares_from_pb(request.shares))
        cost = live.cost
        if cost.noisy:
            # The first data-derived output of the round: charged (fsynced) before it leaves, and spent from
            # then on whether or not Unmask follows, since the other survivors' shares can unmask it alone.
            await asyncio.to_thread(
                self._ledger.charge, request.round_id, live.approval.plan.aggregate, cost.days, cost.rho
            )
        record = await self._audit.append_async(
            "round.masked-input",
            peer=peer,
            **_broker_head(request),
            round=request.round_id.hex(),
            u2=sorted(survivors),
            cells=int(masked.size),
            rho=cost.rho,
        )
        yield adapter_pb2.MaskedInputChunk(
            header=adapter_pb2.MaskedInputHeader(
                round_id=request.round_id, length=int(masked.size), chunk_bytes=CHUNK_BYTES, head=_head(record)
            )
        )
        for chunk in iter_chunks(masked, CHUNK_BYTES):
            yield adapter_pb2.MaskedInputChunk(data=chunk)
            metrics.MASKED_BYTES.labels(direction="sent").inc(len(chunk))
        self._stages.after("masked-input")

    @rpc_errors()
    async def Consistency(
        self, request: adapter_pb2.ConsistencyRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> adapter_pb2.ConsistencyResponse:
        peer = self._caller(context, broker_only=True)
        await self._stages.before("consistency")
        live = self._rounds.get(request.round_id)
        async with live.lock:
            signature = live.state.sign_survivors(list(request.survivors))
        record = await self._audit.append_async(
            "round.consistency",
            peer=peer,
            **_broker_head(request),
            round=request.round_id.hex(),
            u3=sorted(request.survivors),
            durable=False,
        )
        self._stages.after("consistency")
        return adapter_pb2.ConsistencyResponse(signature=signature, head=_head(record))

    @rpc_errors()
    async def Unmask(
        self, request: adapter_pb2.UnmaskRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> adapter_pb2.UnmaskResponse:
        peer = self._caller(context, broker_only=True)
        await self._stages.before("unmask")
        live = self._rounds.get(request.round_id)
        signatures = {s.node_id: s.signature for s in request.signatures}
        if self._survivors is not None:
            plan = live.approval.plan
            # A round limited to a province is a function of the whole-domain one: both share one survivor set,
            # else a provincial round minus the national one (a carrier "dropped" in one) gives that carrier's cells.
            params = {key: value for key, value in plan.params.items() if key not in SCOPE_PARAMS}
            spec = release_spec(plan.aggregate, plan.start, plan.end, params, self._registry.hash)
            await asyncio.to_thread(self._survivors.admit, spec, list(request.survivors))
        async with live.lock:
            revealed = await asyncio.to_thread(live.state.unmask, list(request.survivors), signatures)
        record = await self._audit.append_async(
            "round.unmask",
            peer=peer,
            **_broker_head(request),
            round=request.round_id.hex(),
            u3=sorted(request.survivors),
            revealed_for=sorted({s.owner for s in revealed}),
        )
        self._rounds.close(request.round_id)
        metrics.ROUNDS.labels(outcome="completed").inc()
        self._stages.after("unmask")
        return adapter_pb2.UnmaskResponse(shares=revealed_to_pb(revealed), head=_head(record))

    @rpc_errors()
    async def Abort(
        self, request: adapter_pb2.AbortRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> adapter_pb2.AbortResponse:
        peer = self._caller(context, broker_only=True)
        aborted = self._rounds.abort(request.round_id)
        if aborted:
            metrics.ROUNDS.labels(outcome="aborted").inc()
        await self._audit.append_async("round.abort", peer=peer, round=request.round_id.hex(), was_live=aborted)
        return adapter_pb2.AbortResponse(aborted=aborted)

    @rpc_errors()
    async def Status(
        self, request: common_pb2.StatusRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> common_pb2.NodeStatus:
        self._caller(context, broker_only=False)
        window = await asyncio.to_thread(self._data_window)
        return common_pb2.NodeStatus(
            node_id=self._node.id,
            role="adapter",
            version=__version__,
            registry_hash=self._registry.hash,
            data_start=window[0].isoformat() if window else "",
            data_end=window[1].isoformat() if window else "",
            live_rounds=len(self._rounds),
            metrics_address=self.metrics_address,
        )

    @property
    def live_rounds(self) -> int:
        """Rounds this node holds in memory now."""
        return len(self._rounds)

    @rpc_errors()
    async def Budget(
        self, request: adapter_pb2.BudgetRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> common_pb2.BudgetReport:
        """Ledger totals per data day, to the broker only (it asks on a coordinator's behalf)."""
        self._caller(context, broker_only=True)
        privacy = self._node.policy.privacy
        return common_pb2.BudgetReport(
            node_id=self._node.id,
            noise=privacy.noise,
            rho_per_day=privacy.rho_per_day,
            days=[common_pb2.BudgetDay(day=d, spent=v) for d, v in sorted(self._ledger.spent().items())],
        )

    # -- plain work, run in threads ----------------------------------------------------------------------

    def _contribution(self, approval: Approval, cost: ReleaseCost) -> npt.NDArray[np.uint64]:
        """x_u plus this agency's noise share: the vector the round masks (it never leaves unmasked)."""
        vector = self._compute(approval)
        if cost.noisy:
            add_noise(vector, cost.party_sigma2)
        return vector

    def _compute(self, approval: Approval) -> npt.NDArray[np.uint64]:
        plan = approval.plan
        store = open_backend(self._node.location())
        try:
            return compute_aggregate(
                store,
                AggregateRequest(
                    name=plan.aggregate,
                    domain=self._registry.codes,
                    start=plan.start,
                    end=plan.end,
                    params=dict(plan.params),
                    max_trips_per_day=self._node.policy.privacy.max_trips_per_day,
                ),
                use_partials=self._use_partials,
            )
        finally:
            store.close()

    def _data_window(self) -> tuple[dt.date, dt.date] | None:
        store = open_backend(self._node.location())
        try:
            return data_window(store, self._node.kind)
        finally:
            store.close()


def _peer_or_unknown(context: Any) -> str:
    try:
        return peer_identity(context)
    except FederationError:
        return "unauthenticated"


class _BrokerHead(TypedDict):
    broker_seq: int
    broker_hash: str


def _broker_head(request: Any) -> _BrokerHead:
    """The broker's audit head a stage request carries, as fields of this node's record of the stage."""
    head = request.broker_head
    return {"broker_seq": int(head.seq), "broker_hash": str(head.hash)}


def _head(record: dict[str, Any]) -> common_pb2.AuditHead:
    """This node's audit head right after ``record`` was written."""
    return common_pb2.AuditHead(seq=int(record["seq"]), hash=str(record["hash"]))
