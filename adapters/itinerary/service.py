"""The Itinerary gRPC service of a telecom adapter: thin; checks the caller, calls the code book and the store.

Only the carrier's own SMS gateway (a roster gateway whose ``carrier`` is this node) may call; everyone else,
the broker included, is refused with PERMISSION_DENIED. Every request and every decision is audited with the
number as a keyed pseudonym (:mod:`.pseudonyms`), never the number, the code, a city or an event.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from pathlib import Path
from typing import Any

import grpc

from adapters.backends import open_backend
from adapters.itinerary.codes import CODE_DIGITS, CodeBook
from adapters.itinerary.pseudonyms import NumberPseudonyms, key_path_for
from adapters.itinerary.query import SubscriberItinerary, is_subscriber, itinerary_of
from adapters.itinerary.risk import RiskList
from adapters.itinerary.sms import SmsSender, code_text
from federation.audit import AuditLog
from federation.config import FederationConfig, NodeConfig
from federation.errors import ConfigError, FederationError, InvalidQuery, PermissionDenied
from federation.identity import Roster
from federation.msisdn import check_msisdn, mask_msisdn
from federation.registry import Registry, load_registry
from federation.rpc import rpc_errors
from federation.tls import peer_identity
from federation.v1 import itinerary_pb2, itinerary_pb2_grpc

log = logging.getLogger(__name__)

__all__ = ["ItineraryService"]


def _audited_already(method: str, context: Any, error: FederationError) -> None:
    """The handlers audit their own refusals (with the number's pseudonym); the boundary only maps the status."""


class ItineraryService(itinerary_pb2_grpc.ItineraryServicer):
    """One carrier's itinerary service over its own store."""

    def __init__(
        self,
        federation: FederationConfig,
        node: NodeConfig,
        audit: AuditLog,
        sender: SmsSender,
        *,
        risk_list: Path | None = None,
        codes: CodeBook | None = None,
        registry: Registry | None = None,
    ) -> None:
        if node.kind != "telecom":
            raise ConfigError(f"{federation.path}: {node.id} is a {node.kind} node; only carriers serve itineraries")
        self._federation = federation
        self._node = node
        self._audit = audit
        self._sender = sender
        self._codes = codes or CodeBook()
        self._risk = RiskList(risk_list)
        self._pseudonyms = NumberPseudonyms(key_path_for(node.audit_log))
        self._roster = Roster.from_files(federation.certificates(), ca=federation.ca, crl=federation.crl)
        self._gateways = frozenset(g.id for g in federation.gateways if g.carrier == node.id)
        # City names and provinces come from the full registry: a subscriber may have roamed outside the domain.
        full = registry or load_registry(None)
        self._cities = {
            int(code) // 100: (prefecture, province)
            for code, prefecture, province in zip(full.codes, full.prefectures, full.provinces, strict=True)
        }
        self._deliveries: set[asyncio.Task[None]] = set()

    # -- boundary ---------------------------------------------------------------------------------------

    def _gateway(self, context: grpc.aio.ServicerContext[Any, Any]) -> str:
        peer = peer_identity(context, self._roster)
        if peer not in self._gateways:
            raise PermissionDenied(
                f"only {self._node.id}'s own SMS gateway may use its itinerary service, not {peer!r}"
            )
        return peer

    def _peer_or_unknown(self, context: grpc.aio.ServicerContext[Any, Any]) -> str:
        try:
            return peer_identity(context)
        except FederationError:
            return "unauthenticated"

    async def on_rpc_error(self, method: str, context: Any, error: FederationError) -> None:
        """Audit a request refused before its handler ran (malformed or oversized, federation.handlers)."""
        await self._refused(method, context, None, error)

    async def _refused(self, method: str, context: Any, number: str | None, error: FederationError) -> None:
        await self._audit.append_async(
            "itinerary.refused",
            method=method,
            peer=self._peer_or_unknown(context),
            number=number,
            status=error.status,
            reason=error.message,
        )

    # -- RPCs -------------------------------------------------------------------------------------------

    @rpc_errors(on_error=_audited_already)
    async def RequestCode(
        self, request: itinerary_pb2.CodeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> itinerary_pb2.CodeSent:
        number: str | None = None
        try:
            peer = self._gateway(context)
            msisdn = check_msisdn(request.msisdn)
            number = self._pseudonyms.of(msisdn)
            code = self._codes.issue(msisdn)
            await self._audit.append_async(
                "itinerary.code-issued", peer=peer, number=number, valid_for_s=int(self._codes.ttl_s)
            )
        except FederationError as error:
            await self._refused("RequestCode", context, number, error)
            raise
        # The SMS goes out after the answer is decided and off the request's path, so neither the answer nor
        # its timing depends on whether the number is a subscriber.
        task = asyncio.create_task(asyncio.to_thread(self._deliver, msisdn, code))
        self._deliveries.add(task)  # held until done: the loop keeps only weak references to tasks
        task.add_done_callback(self._delivered)
        return itinerary_pb2.CodeSent(
            msisdn=mask_msisdn(msisdn),
            valid_for_s=int(self._codes.ttl_s),
            requests_left=self._codes.requests_left(msisdn),
        )

    @rpc_errors(on_error=_audited_already)
    async def GetItinerary(
        self, request: itinerary_pb2.ItineraryRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> itinerary_pb2.ItineraryAnswer:
        number: str | None = None
        try:
            peer = self._gateway(context)
            msisdn = check_msisdn(request.msisdn)
            number = self._pseudonyms.of(msisdn)
            if not (len(request.code) == CODE_DIGITS and request.code.isascii() and request.code.isdigit()):
                raise InvalidQuery(f"the code is the {CODE_DIGITS} digits of the SMS")
            risky = self._risk.prefectures()  # before the code is spent: a broken risk list costs no code
            self._codes.redeem(msisdn, request.code)
            await self._audit.append_async("itinerary.code-verified", peer=peer, number=number)
            found = await asyncio.to_thread(self._itinerary, msisdn)
            await self._audit.append_async(
                "itinerary.released",
                peer=peer,
                number=number,
                start=found.start.isoformat(),
                end=found.end.isoformat(),
            )
        except FederationError as error:
            await self._refused("GetItinerary", context, number, error)
            raise
        return self._answer(msisdn, found, risky)

    # -- plain work ---------------------------------------------------------------------------------------

    def _delivered(self, task: asyncio.Task[None]) -> None:
        self._deliveries.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # Only the exception's type: its text could name the number.
            log.error("itinerary SMS delivery failed: %s", type(task.exception()).__name__)

    def _deliver(self, msisdn: str, code: str) -> None:
        store = open_backend(self._node.location())
        try:
            known = is_subscriber(store, msisdn)
        finally:
            store.close()
        if not known:
            return  # not a subscriber: nothing to send, and nobody is told
        policy = self._node.policy.itinerary
        text = code_text(self._node.id, code, ttl_min=int(self._codes.ttl_s // 60), window_days=policy.window_days)
        self._sender.send(self._node.id, msisdn, text)

    def _itinerary(self, msisdn: str) -> SubscriberItinerary:
        policy = self._node.policy.itinerary
        store = open_backend(self._node.location())
        try:
            return itinerary_of(
                store,
                msisdn,
                window_days=policy.window_days,
                min_stay=dt.timedelta(hours=policy.min_stay_hours),
            )
        finally:
            store.close()

    def _answer(self, msisdn: str, found: SubscriberItinerary, risky: frozenset[int]) -> itinerary_pb2.ItineraryAnswer:
        policy = self._node.policy.itinerary
        cities = []
        for visit in found.cities:
            name, province = self._cities.get(visit.prefecture, ("", ""))
            cities.append(
                itinerary_pb2.City(code=visit.prefecture, name=name, province=province, risk=visit.prefecture in risky)
            )
        return itinerary_pb2.ItineraryAnswer(
            msisdn=mask_msisdn(msisdn),
            start=found.start.isoformat(),
            end=found.end.isoformat(),
            cities=cities,
            updated=found.updated.isoformat(timespec="seconds") if found.updated else "",
            window_days=policy.window_days,
            min_stay_hours=policy.min_stay_hours,
        )
