"""The coordinator-facing broker service: thin. Validates, plans, runs the rounds, joins, releases.

The broker learns only each round's cross-agency sum; what it releases passes disclosure control first.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import grpc

from broker.budget import BudgetMirror, RoundBudget
from broker.reuse import KeptRelease, WindowFreeReleases, release_key
from broker.rounds import AdapterPeer, RoundOutcome, run_round
from federation import __version__, metrics
from federation.audit import AuditLog
from federation.catalog import KINDS, QueryResult, Release, RoundPlan, kind
from federation.catalog.aggregates import AGGREGATES
from federation.catalog.jurisdiction import check_jurisdiction, scope_of
from federation.config import CoordinatorConfig, FederationConfig
from federation.errors import FederationError, InvalidQuery, PermissionDenied, ResourceExhausted
from federation.identity import Roster
from federation.privacy.accounting import WINDOW_FREE, window_free_period
from federation.queries import Query, parse_envelope
from federation.registry import Registry
from federation.rpc import error_from_rpc, rpc_errors
from federation.signed_query import QueryReplayGuard, verify_signed_query
from federation.tls import peer_identity
from federation.v1 import adapter_pb2, adapter_pb2_grpc, broker_pb2, broker_pb2_grpc, common_pb2
from federation.wire import kinds_to_pb

log = logging.getLogger(__name__)


def round_threshold(federation: FederationConfig, participants: Sequence[str]) -> int:
    """t for a round: a majority of the participants, at least 2, and at least every participant's
    ``min_contributors`` as the roster states it (each adapter still enforces its own)."""
    minimum = max((federation.node(n).policy.min_contributors for n in participants), default=2)
    return min(len(participants), max(2, len(participants) // 2 + 1, minimum))


class BrokerService(broker_pb2_grpc.BrokerServicer):
    def __init__(
        self,
        federation: FederationConfig,
        registry: Registry,
        audit: AuditLog,
        stubs: Mapping[str, adapter_pb2_grpc.AgencyAdapterAsyncStub],
    ) -> None:
        self._federation = federation
        self._registry = registry
        self._audit = audit
        self._stubs = dict(stubs)
        self._verifier = Roster.from_files(federation.certificates(), ca=federation.ca, crl=federation.crl)
        self._replays = QueryReplayGuard()
        self._in_flight: dict[str, int] = {}  # coordinator id -> queries running now
        self._budget = BudgetMirror(federation)
        self._round_budgets: dict[tuple[str, str], RoundBudget] = {}  # (query nonce, round) -> budget
        # Window-free sums released earlier in their period, reused instead of run again (broker/reuse.py).
        self._kept = WindowFreeReleases(federation.broker.audit_log.parent / "budget" / "window-free.jsonl")
        self._reused: dict[tuple[str, str], tuple[KeptRelease, str, str]] = {}  # -> (release, aggregate, key)
        self._to_keep: dict[tuple[str, str], tuple[str, KeptRelease]] = {}  # run this query, kept once released
        self._rounds_running = 0
        #: Per agency kind, reachability at the last health check (kept current by broker.reachability).
        self.kind_health: list[common_pb2.KindHealth] = []
        #: host:port of the broker's Prometheus endpoint once serving ("" when off), for Status.
        self.metrics_address = ""
        metrics.track_live_rounds(lambda: self._rounds_running)
        metrics.QUERIES_IN_FLIGHT.set_function(lambda: float(self.queries_in_flight))

    def threshold_of(self, agency_kind: str) -> int:
        """t for a round over every agency of ``agency_kind`` in the roster."""
        return round_threshold(self._federation, [n.id for n in self._federation.nodes_of_kind(agency_kind)])

    async def on_rpc_error(self, method: str, context: Any, error: FederationError) -> None:
        metrics.REFUSALS.labels(method=method, reason=type(error).__name__).inc()
        try:
            peer = peer_identity(context)
        except FederationError:
            peer = "unauthenticated"
        await self._audit.append_async("refused", method=method, peer=peer, status=error.status, reason=error.message)

    @rpc_errors()
    async def Status(
        self, request: common_pb2.StatusRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> common_pb2.NodeStatus:
        peer_identity(context, self._verifier)  # any roster member, with the roster's own certificate
        return common_pb2.NodeStatus(
            node_id=self._federation.broker.id,
            role="broker",
            version=__version__,
            registry_hash=self._registry.hash,
            data_start=self._federation.data_start.isoformat(),
            data_end=self._federation.data_end.isoformat(),
            live_rounds=self._rounds_running,
            queries_in_flight=self.queries_in_flight,
            metrics_address=self.metrics_address,
            kinds=self.kind_health,
        )

    @rpc_errors()
    async def DescribeFederation(
        self, request: broker_pb2.DescribeFederationRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> broker_pb2.FederationDescription:
        self._coordinator(context)
        return broker_pb2.FederationDescription(
            registry_hash=self._registry.hash,
            districts=len(self._registry),
            query_kinds=list(KINDS),
            nodes=[n.id for n in self._federation.nodes],
            data_start=self._federation.data_start.isoformat(),
            data_end=self._federation.data_end.isoformat(),
            kinds=kinds_to_pb(KINDS.values()),
        )

    @rpc_errors()
    async def RunQuery(
        self, request: broker_pb2.RunQueryRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[broker_pb2.QueryEvent]:
        caller = self._coordinator(context)
        cap = self._federation.broker.limits.max_queries_per_coordinator
        running = self._in_flight.get(caller.id, 0)
        if running >= cap:
            raise ResourceExhausted(
                f"{caller.id} already has {running} queries running, its cap "
                f"(limits.max_queries_per_coordinator = {cap}); wait for one to finish"
            )
        self._in_flight[caller.id] = running + 1
        try:
            async for event in self._run_query(request, caller):
                yield event
        finally:
            self._in_flight[caller.id] -= 1
            if not self._in_flight[caller.id]:
                del self._in_flight[caller.id]

    @property
    def queries_in_flight(self) -> int:
        """Queries running now, over every coordinator."""
        return sum(self._in_flight.values())

    async def _run_query(
        self, request: broker_pb2.RunQueryRequest, caller: CoordinatorConfig
    ) -> AsyncIterator[broker_pb2.QueryEvent]:
        signed = request.query
        query, signer = verify_signed_query(
            self._federation, self._verifier, signed.canonical, signed.coordinator_id, signed.signature
        )
        if signer.id != caller.id:
            raise PermissionDenied(
                f"{caller.id} submitted a query signed by {signer.id}; a coordinator submits only its own queries"
            )
        self._replays.claim(query)  # each signed query runs once; the adapters keep their own memory too
        await self._audit.append_async(
            "query.received",
            peer=caller.id,
            kind=query.kind,
            start=query.start.isoformat(),
            end=query.end.isoformat(),
            nonce=query.nonce,
            params=[f"{k}={v}" for k, v in sorted(query.params.items())],
        )
        plans = kind(query.kind).rounds(query, self._registry, scope_of(caller))
        self._validate(query, plans, caller)
        events: asyncio.Queue[broker_pb2.QueryEvent | None] = asyncio.Queue()

        def progress(
            stage: str,
            round_name: str,
            contributors: Sequence[str],
            message: str,
            *,
            awaited: Sequence[str] = (),
            waited_s: float = 0.0,
        ) -> None:
            events.put_nowait(
                broker_pb2.QueryEvent(
                    progress=broker_pb2.Progress(
                        stage=stage,
                        round=round_name,
                        contributors=list(contributors),
                        message=message,
                        awaited=list(awaited),
                        waited_s=waited_s,
                    )
                )
            )

        progress("plan", "", [], ", ".join(f"{p.name}: {p.aggregate}" for p in plans))
        deadline = time.monotonic() + self._federation.broker.round_timeout_s
        task = asyncio.create_task(self._run_rounds(signed, query, plans, deadline, progress))
        task.add_done_callback(lambda _: events.put_nowait(None))
        try:
            while (event := await events.get()) is not None:
                yield event
        finally:
            # The coordinator hung up or the deadline passed: stop driving rounds nobody will read.
            if not task.done():
                task.cancel()
        outcomes = task.result()  # re-raises a round's RoundAborted / refusal for the boundary to map
        result = await self._release(query, caller, outcomes)
        yield broker_pb2.QueryEvent(result=result)

    # -- plain steps ---------------------------------------------------------------------------------------

    def _coordinator(self, context: grpc.aio.ServicerContext[Any, Any]) -> CoordinatorConfig:
        peer = peer_identity(context, self._verifier)  # the roster's own certificate for that id, nothing else
        for coordinator in self._federation.coordinators:
            if coordinator.id == peer:
                return coordinator
        raise PermissionDenied(f"{peer!r} is not a coordinator in the federation roster; only coordinators may query")

    def _validate(self, query: Query, plans: Sequence[RoundPlan], coordinator: CoordinatorConfig) -> None:
        for plan in plans:
            if plan.start is None or plan.end is None:
                continue
            nodes = self._federation.nodes_of_kind(plan.agency_kind)
            longest = max((n.policy.max_window_days for n in nodes), default=0)
            days = (plan.end - plan.start).days + 1
            if days > longest:
                raise InvalidQuery(
                    f"window of {days} days exceeds the longest window any {plan.agency_kind} agency "
                    f"allows ({longest} days); shorten it or split the query"
                )
        first, last = self._federation.data_start, self._federation.data_end
        if query.start < first or query.end > last:
            raise InvalidQuery(
                f"window {query.start}..{query.end} lies outside the federation's data {first}..{last}; "
                "pick dates inside it"
            )
        districts = kind(query.kind).districts(query)
        if districts:
            self._registry.index_of(list(districts))  # UnknownDistrict names the codes not in the domain
        check_jurisdiction(coordinator, self._registry, districts)

    async def _run_rounds(
        self,
        signed: common_pb2.SignedQuery,
        query: Query,
        plans: Sequence[RoundPlan],
        deadline: float,
        progress: Any,
    ) -> list[RoundOutcome]:
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self._run_round(signed, query, plan, deadline, progress)) for plan in plans]
        except ExceptionGroup as failures:
            # One round failing cancels the others; the coordinator gets the reason of the first that failed.
            group_of_ours = failures.subgroup(FederationError)
            if group_of_ours is None:
                raise
            first: BaseException = group_of_ours
            while isinstance(first, BaseExceptionGroup):
                first = first.exceptions[0]
            raise first from None
        return [t.result() for t in tasks]

    async def _run_round(
        self, signed: common_pb2.SignedQuery, query: Query, plan: RoundPlan, deadline: float, progress: Any
    ) -> RoundOutcome:
        participants = [n.id for n in self._federation.nodes_of_kind(plan.agency_kind)]
        if len(participants) < 2:
            raise InvalidQuery(
                f"the {plan.name} round needs at least two {plan.agency_kind} agencies; the roster has "
                f"{len(participants)}"
            )
        threshold = round_threshold(self._federation, participants)
        reuse_key = ""
        if not AGGREGATES[plan.aggregate].windowed:
            noisy = any(self._federation.node(n).policy.privacy.noisy for n in participants)
            period = window_free_period(query.end)
            reuse_key = release_key(plan.aggregate, plan.params, self._registry.hash, participants, noisy, period)
            kept = self._kept.get(reuse_key)
            if kept is not None:
                # Released earlier in this period: reusing it is post-processing, it costs no budget.
                self._reused[query.nonce, plan.name] = (kept, plan.aggregate, f"{WINDOW_FREE}:{period}")
                progress("unmask", plan.name, kept.contributors, f"reused the {period} release, no new round")
                await self._audit.append_async(
                    "round.reused",
                    nonce=query.nonce,
                    round=plan.name,
                    aggregate=plan.aggregate,
                    period=period,
                    contributors=list(kept.contributors),
                    sigma=kept.sigma,
                )
                return RoundOutcome(plan.name, kept.total.copy(), kept.contributors, {})
        budget = self._budget.plan(
            participants, plan.aggregate, plan.start, plan.end, threshold, plan.length, query_end=query.end
        )
        spec = common_pb2.VectorSpec(
            aggregate=plan.aggregate,
            length=plan.length,
            registry_hash=self._registry.hash,
            start=plan.start.isoformat() if plan.start else "",
            end=plan.end.isoformat() if plan.end else "",
            params=dict(plan.params),
            rho=budget.rho_text,
        )
        mirror_handle = secrets.token_bytes(16)
        self._budget.reserve(plan.name, mirror_handle, budget, threshold)
        self._round_budgets[query_nonce(signed), plan.name] = budget
        sent: set[str] = set()  # whose masked input arrived, so whose own ledger charged the round
        self._rounds_running += 1
        try:
            outcome = await run_round(
                name=plan.name,
                spec=spec,
                query=signed,
                peers=[AdapterPeer(n, self._stubs[n]) for n in participants],
                threshold=threshold,
                verifier=self._verifier,
                deadline=deadline,
                stage_timeout_s=self._federation.broker.stage_timeout_s,
                progress=progress,
                audit_head=self._audit_head,
                masked_sent=sent,
            )
        finally:
            self._rounds_running -= 1
            self._budget.settle(mirror_handle, budget, sent)
        await self._audit.append_async(
            "round.summed",
            peer_heads=[f"{node}:{seq}:{digest}" for node, (seq, digest) in sorted(outcome.peer_heads.items())],
            round=plan.name,
            aggregate=plan.aggregate,
            cells=int(spec.length),
            contributors=list(outcome.contributors),
            missing=sorted(outcome.missing),
            missing_reasons=[f"{node}: {why}" for node, why in sorted(outcome.missing.items())],
            threshold=threshold,
            rho=budget.rho_text,
            sigma=self._budget.sigma(budget, outcome.contributors),
        )
        if reuse_key:
            noisy_contributors = any(budget.costs[n].noisy for n in outcome.contributors)
            sigma = self._budget.sigma(budget, outcome.contributors)
            # Kept once the kind has released it (a sum that fails its checks is never reused).
            kept = KeptRelease(outcome.total.copy(), outcome.contributors, sigma, noisy_contributors)
            self._to_keep[query.nonce, plan.name] = (reuse_key, kept)
        # A noisy sum goes to the kind as it is (noise may have wrapped a small count below zero mod 2^64): the
        # kind reads it as signed with the round's σ and clips only what it releases, after summing over cells.
        return outcome

    async def _release(
        self, query: Query, coordinator: CoordinatorConfig, outcomes: Sequence[RoundOutcome]
    ) -> broker_pb2.QueryResult:
        entry = kind(query.kind)
        disclosure = self._federation.broker
        reused = {
            o.name: self._reused.pop((query.nonce, o.name)) for o in outcomes if (query.nonce, o.name) in self._reused
        }
        budgets = {o.name: self._round_budgets.pop((query.nonce, o.name)) for o in outcomes if o.name not in reused}
        contributors = {o.name: o.contributors for o in outcomes}
        to_keep = [self._to_keep.pop(at) for at in [(query.nonce, o.name) for o in outcomes] if at in self._to_keep]
        sigmas = {name: kept.sigma for name, (kept, _, _) in reused.items()}
        sigmas.update({name: self._budget.sigma(b, contributors[name]) for name, b in budgets.items()})
        release = Release(
            registry=self._registry,
            sums={o.name: o.total for o in outcomes},
            mobility_k=disclosure.mobility_k,
            cases_k=disclosure.cases_k,
            scope=scope_of(coordinator),
            sigma={name: sigma for name, sigma in sigmas.items() if sigma > 0},
        )
        result = entry.release(query, release)
        for key, kept in to_keep:
            self._kept.keep(key, kept)
        k = disclosure.mobility_k if entry.disclosure == "mobility" else disclosure.cases_k
        await self._audit.append_async(
            "query.released",
            peer=coordinator.id,
            kind=query.kind,
            nonce=query.nonce,
            rows=len(result.rows),
            suppressed=result.suppressed,
            k=k,
            contributors=sorted({c for o in outcomes for c in o.contributors}),
            missing=sorted({m for o in outcomes for m in o.missing}),
        )
        privacy = []
        for outcome in outcomes:
            if outcome.name in reused:
                kept, aggregate, ledger_key = reused[outcome.name]
                privacy.append(
                    broker_pb2.RoundPrivacy(
                        round=outcome.name,
                        aggregate=aggregate,
                        noise="discrete-gaussian" if kept.noisy else "none",
                        sigma=kept.sigma,
                        rho_spent=0.0,  # reused: released earlier in its period
                        rho_left=self._budget.left_on(kept.contributors, [ledger_key]),
                    )
                )
                continue
            budget = budgets[outcome.name]
            noisy = [n for n in outcome.contributors if budget.costs[n].noisy]
            privacy.append(
                broker_pb2.RoundPrivacy(
                    round=outcome.name,
                    aggregate=budget.aggregate,
                    noise="discrete-gaussian" if noisy else "none",
                    sigma=sigmas[outcome.name],
                    rho_spent=max((budget.costs[n].rho for n in noisy), default=0.0),
                    rho_left=self._budget.rho_left(budget, noisy),
                )
            )
        answer = result_to_pb(result, outcomes)
        answer.privacy.extend(privacy)
        return answer

    def _audit_head(self) -> common_pb2.AuditHead:
        """The broker's audit head now, sent with every stage request so that adapters record it."""
        return common_pb2.AuditHead(seq=self._audit.last_seq, hash=self._audit.head)

    @rpc_errors()
    async def Budget(
        self, request: broker_pb2.FederationBudgetRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> broker_pb2.FederationBudget:
        """Every agency's ledger totals as the agency reports them, for a coordinator."""
        self._coordinator(context)
        timeout = self._federation.broker.stage_timeout_s

        async def ask(node_id: str) -> common_pb2.BudgetReport | str:
            try:
                report: common_pb2.BudgetReport = await self._stubs[node_id].Budget(
                    adapter_pb2.BudgetRequest(), timeout=timeout
                )
                return report
            except grpc.aio.AioRpcError as error:
                return f"{node_id}: {error_from_rpc(error, node=node_id).message}"

        answers = await asyncio.gather(*(ask(n.id) for n in self._federation.nodes))
        return broker_pb2.FederationBudget(
            agencies=[a for a in answers if not isinstance(a, str)],
            missing=[a for a in answers if isinstance(a, str)],
        )


def query_nonce(signed: common_pb2.SignedQuery) -> str:
    """The nonce of a signed query the broker already verified (the key of its per-query bookkeeping)."""
    return parse_envelope(signed.canonical).nonce


def result_to_pb(result: QueryResult, outcomes: Sequence[RoundOutcome]) -> broker_pb2.QueryResult:
    rows = _rows_to_pb(result.rows)
    coverage = [
        broker_pb2.Coverage(
            round=o.name,
            contributed=list(o.contributors),
            missing=[f"{n}: {why}" for n, why in sorted(o.missing.items())],
        )
        for o in outcomes
    ]
    return broker_pb2.QueryResult(
        query=result.query.canonical(),
        columns=list(result.columns),
        rows=rows,
        suppressed=result.suppressed,
        coverage=coverage,
        notes=list(result.notes),
        tables=[
            broker_pb2.Table(name=t.name, columns=list(t.columns), rows=_rows_to_pb(t.rows), suppressed=t.suppressed)
            for t in result.tables
        ],
    )


def _rows_to_pb(rows: Sequence[Sequence[Any]]) -> list[broker_pb2.Row]:
    return [broker_pb2.Row(cells=[_cell(v) for v in row]) for row in rows]


def _cell(value: Any) -> broker_pb2.Cell:
    if value is None:
        return broker_pb2.Cell(suppressed=True)
    if isinstance(value, bool):
        return broker_pb2.Cell(bool_value=value)
    if isinstance(value, int):
        return broker_pb2.Cell(int_value=value)
    if isinstance(value, float):
        return broker_pb2.Cell(float_value=value if math.isfinite(value) else 0.0)
    return broker_pb2.Cell(text_value=str(value))
