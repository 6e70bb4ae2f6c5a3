"""``fedbroker itinerary request|show``: a person's phone and their carrier's SMS gateway, in one command.

The command holds the gateway's identity (its certificate from the roster's ``gateways``) and calls the
carrier's Itinerary service over mutual TLS, as the real gateway would on behalf of the phone; the code itself
arrives by SMS (the local federation writes it to ``DIR/sms/outbox.jsonl``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import grpc

from adapters.itinerary.sms import local_outbox
from federation.config import FederationConfig, load_federation
from federation.errors import ConfigError
from federation.rpc import error_from_rpc
from federation.tls import channel_credentials, channel_options
from federation.v1 import itinerary_pb2, itinerary_pb2_grpc

__all__ = ["add_arguments", "answer_json", "answer_table", "get_itinerary", "request_code", "run"]

#: Seconds one itinerary call may take (the answer is one subscriber's SQL).
CALL_TIMEOUT_S = 30.0

Reply = TypeVar("Reply")


async def _call(
    federation: FederationConfig,
    carrier: str,
    rpc: Callable[[itinerary_pb2_grpc.ItineraryAsyncStub], Awaitable[Reply]],
) -> Reply:
    node = federation.node(carrier)
    if node.kind != "telecom":
        raise ConfigError(f"{carrier} is a {node.kind} node, not a carrier: give a telecom node id")
    gateway = federation.gateway_of(carrier)
    identity = federation.identity(gateway.id)
    async with grpc.aio.secure_channel(
        node.address, channel_credentials(identity), options=channel_options(carrier)
    ) as channel:
        stub: itinerary_pb2_grpc.ItineraryAsyncStub = itinerary_pb2_grpc.ItineraryStub(channel)
        try:
            return await rpc(stub)
        except grpc.aio.AioRpcError as error:
            raise error_from_rpc(error, node=carrier) from None


async def request_code(federation: FederationConfig, carrier: str, msisdn: str) -> itinerary_pb2.CodeSent:
    """Ask ``carrier`` to text a one-time code to ``msisdn`` (as that carrier's gateway)."""
    request = itinerary_pb2.CodeRequest(msisdn=msisdn)
    return await _call(federation, carrier, lambda stub: stub.RequestCode(request, timeout=CALL_TIMEOUT_S))


async def get_itinerary(
    federation: FederationConfig, carrier: str, msisdn: str, code: str
) -> itinerary_pb2.ItineraryAnswer:
    """Redeem ``code`` at ``carrier`` for the itinerary of ``msisdn`` (as that carrier's gateway)."""
    request = itinerary_pb2.ItineraryRequest(msisdn=msisdn, code=code)
    return await _call(federation, carrier, lambda stub: stub.GetItinerary(request, timeout=CALL_TIMEOUT_S))


def answer_json(answer: itinerary_pb2.ItineraryAnswer) -> dict[str, Any]:
    """The ``--format json`` document: masked number, period, cities (most recent first), update time."""
    return {
        "msisdn": answer.msisdn,
        "start": answer.start,
        "end": answer.end,
        "cities": [{"code": c.code, "name": c.name, "province": c.province, "risk": c.risk} for c in answer.cities],
        "updated": answer.updated,
    }


def answer_table(answer: itinerary_pb2.ItineraryAnswer) -> str:
    """The ``--format table`` text: one line per city, most recent first; ``*`` marks a risk city."""
    lines = [
        f"Places visited by {answer.msisdn}, {answer.start} .. {answer.end} "
        f"({answer.window_days} days, stays of {answer.min_stay_hours:g} h or more), most recent first"
    ]
    if not answer.cities:
        lines.append("  no city with a stay that long")
    for city in answer.cities:
        lines.append(f"  {city.code}  {city.name}  {city.province}{'  *' if city.risk else ''}")
    lines.append(f"updated {answer.updated or '-'}; * = the city holds a district on the carrier's risk list")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``fedbroker itinerary request|show`` (the parser's own subcommands)."""
    actions = parser.add_subparsers(dest="itinerary_command", required=True, metavar="ACTION")
    request = actions.add_parser("request", help="have the carrier text a one-time code to the number")
    show = actions.add_parser("show", help="redeem the code: the places visited in the carrier's window")
    for sub in (request, show):
        sub.add_argument("--federation", type=Path, required=True, help="the roster (federation.yaml)")
        sub.add_argument("--carrier", required=True, help="the subscriber's carrier, e.g. telecom-a")
        sub.add_argument("--msisdn", required=True, help="the number in E.164, e.g. +8613800000000")
    show.add_argument("--code", required=True, help="the 6 digits of the SMS")
    show.add_argument("--format", choices=["table", "json"], default="table")


def run(args: argparse.Namespace) -> int:
    """Run ``fedbroker itinerary``; a refusal raises (the CLI prints it and exits 2)."""
    federation = load_federation(args.federation)
    if args.itinerary_command == "request":
        sent = asyncio.run(request_code(federation, args.carrier, args.msisdn))
        outbox = local_outbox(federation.ca)
        print(
            f"if {sent.msisdn} is a {args.carrier} subscriber, a code valid for {sent.valid_for_s // 60} min is on "
            f"its way ({sent.requests_left} more request(s) this hour); the local federation's SMS go to {outbox}"
        )
        return 0
    answer = asyncio.run(get_itinerary(federation, args.carrier, args.msisdn, args.code))
    if args.format == "json":
        print(json.dumps(answer_json(answer), ensure_ascii=False, indent=2))
    else:
        print(answer_table(answer))
    return 0
