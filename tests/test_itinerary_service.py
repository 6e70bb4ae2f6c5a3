"""The itinerary service against real adapter processes over mutual TLS: a subscriber of the small scenario gets
its own cities with the code read from the SMS outbox, and every refusal is tried, audited and existence-blind.

Expiry runs the real servicer in this process (still a gRPC server with mutual TLS) on an injected clock, so no
test waits five minutes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import functools
import json
import re
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import grpc
import pytest

from adapters.itinerary.codes import CodeBook
from adapters.itinerary.service import ItineraryService
from adapters.itinerary.sms import OutboxSender, local_outbox
from fedbroker.harness import LocalFederation
from federation.audit import AuditLog
from federation.config import FederationConfig
from federation.identity import Identity
from federation.msisdn import mask_msisdn
from federation.pki import issue_certificate
from federation.registry import load_registry
from federation.tls import channel_credentials, channel_options, server_credentials, server_options
from federation.v1 import itinerary_pb2, itinerary_pb2_grpc
from tests.oracle import oracle_itinerary

pytestmark = pytest.mark.slow
T = TypeVar("T")

CARRIER = "telecom-a"
OTHER_CARRIER = "telecom-b"
GATEWAY = "telecom-a-gateway"
UNKNOWN = "+8610000000000"  # no carrier's prefix: nobody's number


@pytest.fixture(scope="module")
def risk_list(small_scenario: Path) -> Path:
    path = small_scenario.parent / "itinerary-risk.json"
    path.write_text("[]")
    return path


@pytest.fixture(scope="module")
def fed(small_scenario: Path, risk_list: Path) -> Iterator[LocalFederation]:
    with LocalFederation(
        small_scenario,
        run_dir=small_scenario.parent / "run-itinerary",
        nodes=(CARRIER, OTHER_CARRIER),
        risk_lists={CARRIER: risk_list},
    ) as federation:
        yield federation


def numbers(config: FederationConfig, carrier: str) -> list[str]:
    con = duckdb.connect(str(config.node(carrier).store), read_only=True)
    try:
        return [m for (m,) in con.execute("SELECT msisdn FROM subscribers ORDER BY subscriber_id").fetchall()]
    finally:
        con.close()


def expected(config: FederationConfig, msisdn: str) -> list[int]:
    con = duckdb.connect(str(config.node(CARRIER).store), read_only=True)
    try:
        policy = config.node(CARRIER).policy.itinerary
        min_stay = dt.timedelta(hours=policy.min_stay_hours)
        return oracle_itinerary(con, msisdn, policy.window_days, min_stay, last_day=config.data_end)
    finally:
        con.close()


class Numbers:
    """Hands out telecom-a numbers, each used by one test only (the hourly limit is per number)."""

    def __init__(self, config: FederationConfig) -> None:
        self.config = config
        self._all = numbers(config, CARRIER)
        self._next = 0

    def any(self) -> str:
        self._next += 1
        return self._all[self._next * 7]

    def with_cities(self, at_least: int) -> tuple[str, list[int]]:
        while True:
            msisdn = self.any()
            cities = expected(self.config, msisdn)
            if len(cities) >= at_least:
                return msisdn, cities


@pytest.fixture(scope="module")
def pool(fed: LocalFederation) -> Numbers:
    return Numbers(fed.config)


def call(
    fed: LocalFederation,
    caller: str,
    carrier: str,
    rpc: Callable[[Any], Awaitable[T]],
    *,
    identity: Identity | None = None,
) -> T:
    """Call ``carrier``'s Itinerary service with ``caller``'s certificate (or ``identity``); AioRpcError on
    refusal."""

    async def go() -> T:
        identity_used = identity or fed.config.identity(caller)
        address = fed.config.node(carrier).address
        options = channel_options(carrier)
        credentials = channel_credentials(identity_used)
        async with grpc.aio.secure_channel(address, credentials, options=options) as channel:
            return await rpc(itinerary_pb2_grpc.ItineraryStub(channel))

    return asyncio.run(go())


def request_code(fed: LocalFederation, msisdn: str, *, caller: str = GATEWAY, carrier: str = CARRIER) -> Any:
    return call(fed, caller, carrier, lambda s: s.RequestCode(itinerary_pb2.CodeRequest(msisdn=msisdn), timeout=30))


def get(fed: LocalFederation, msisdn: str, code: str, *, caller: str = GATEWAY, carrier: str = CARRIER) -> Any:
    request = itinerary_pb2.ItineraryRequest(msisdn=msisdn, code=code)
    return call(fed, caller, carrier, lambda s: s.GetItinerary(request, timeout=30))


def refusal(action: Callable[[], Any]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        action()
    return caught.value.code(), caught.value.details() or ""


def outbox(fed: LocalFederation) -> Path:
    return local_outbox(fed.config.ca)


def outbox_lines(fed: LocalFederation) -> list[dict[str, str]]:
    path = outbox(fed)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def code_for(fed: LocalFederation, msisdn: str) -> str:
    """The code in the latest SMS to ``msisdn``; the SMS leaves just after the answer, so wait for it."""
    for _ in range(400):
        sent = [line for line in outbox_lines(fed) if line["to"] == msisdn]
        if sent:
            match = re.search(r"\b([0-9]{6})\b", sent[-1]["text"])
            assert match is not None
            return match.group(1)
        time.sleep(0.05)  # bounded poll for the condition
    raise AssertionError("no SMS reached the outbox")


def sms_count(fed: LocalFederation, msisdn: str, *, reaching: int) -> int:
    """How many SMS went to ``msisdn``, once ``reaching`` have arrived (or after a bounded wait)."""
    for _ in range(400):
        count = len([line for line in outbox_lines(fed) if line["to"] == msisdn])
        if count >= reaching:
            return count
        time.sleep(0.05)
    return count


def fresh_code(fed: LocalFederation, msisdn: str) -> str:
    before = len([line for line in outbox_lines(fed) if line["to"] == msisdn])
    request_code(fed, msisdn)
    for _ in range(400):
        sent = [line for line in outbox_lines(fed) if line["to"] == msisdn]
        if len(sent) > before:
            return code_for(fed, msisdn)
        time.sleep(0.05)
    raise AssertionError("no new SMS reached the outbox")


def audit_entries(fed: LocalFederation, carrier: str = CARRIER) -> list[dict[str, Any]]:
    path = fed.config.node(carrier).audit_log
    return [json.loads(line) for line in path.read_text().splitlines()]


def new_entries(fed: LocalFederation, since: int) -> list[dict[str, Any]]:
    return [e for e in audit_entries(fed) if e["seq"] > since and str(e["event"]).startswith("itinerary.")]


def last_seq(fed: LocalFederation) -> int:
    entries = audit_entries(fed)
    return int(entries[-1]["seq"]) if entries else 0


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


# -- the service does its job ----------------------------------------------------------------------------------


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fedbroker", *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_a_subscriber_gets_its_own_cities_with_the_code_from_the_outbox(fed: LocalFederation, pool: Numbers) -> None:
    msisdn, cities = pool.with_cities(2)
    roster = str(fed.config.path)
    requested = cli("itinerary", "request", "--federation", roster, "--carrier", CARRIER, "--msisdn", msisdn)
    assert requested.returncode == 0, requested.stderr
    assert mask_msisdn(msisdn) in requested.stdout and str(outbox(fed)) in requested.stdout
    code = code_for(fed, msisdn)
    sms = [line for line in outbox_lines(fed) if line["to"] == msisdn][-1]
    assert set(sms) == {"carrier", "to", "text"} and sms["carrier"] == CARRIER
    shown = cli(
        "itinerary",
        "show",
        "--federation",
        roster,
        "--carrier",
        CARRIER,
        "--msisdn",
        msisdn,
        "--code",
        code,
        "--format",
        "json",
    )
    assert shown.returncode == 0, shown.stderr
    answer = json.loads(shown.stdout)
    assert set(answer) == {"msisdn", "start", "end", "cities", "updated"}
    assert answer["msisdn"] == mask_msisdn(msisdn) and re.fullmatch(r"\+86 1[0-9]{2}\*{4}[0-9]{4}", answer["msisdn"])
    end = fed.config.data_end
    assert (answer["start"], answer["end"]) == ((end - dt.timedelta(days=13)).isoformat(), end.isoformat())
    assert answer["updated"].startswith(end.isoformat())
    assert [c["code"] for c in answer["cities"]] == cities
    registry = load_registry(None)
    names = {
        int(c) // 100: (p, v) for c, p, v in zip(registry.codes, registry.prefectures, registry.provinces, strict=True)
    }
    for city in answer["cities"]:
        assert set(city) == {"code", "name", "province", "risk"}
        assert (city["name"], city["province"]) == names[city["code"]] and city["risk"] is False
    # The code was single-use: the same command again is refused, with the CLI's refusal exit status.
    again = cli("itinerary", "show", "--federation", roster, "--carrier", CARRIER, "--msisdn", msisdn, "--code", code)
    assert again.returncode == 5 and "no valid code" in again.stderr  # AuthenticationFailed
    # The audit shows every step under the number's pseudonym, never the number or a city.
    log_text = fed.config.node(CARRIER).audit_log.read_text()
    assert msisdn not in log_text and msisdn[1:] not in log_text and msisdn[3:] not in log_text
    assert all(names[c][0] not in log_text for c in cities)
    steps = [e for e in audit_entries(fed) if e["event"].startswith("itinerary.")]
    pseudonym = steps[-1]["number"]
    assert re.fullmatch(r"[0-9a-f]{64}", pseudonym)
    mine = [e["event"] for e in steps if e["number"] == pseudonym]
    assert mine[-4:] == ["itinerary.code-issued", "itinerary.code-verified", "itinerary.released", "itinerary.refused"]


def test_the_table_format(fed: LocalFederation, pool: Numbers) -> None:
    msisdn, cities = pool.with_cities(1)
    code = fresh_code(fed, msisdn)
    roster = str(fed.config.path)
    shown = cli("itinerary", "show", "--federation", roster, "--carrier", CARRIER, "--msisdn", msisdn, "--code", code)
    assert shown.returncode == 0, shown.stderr
    assert mask_msisdn(msisdn) in shown.stdout and "14 days, stays of 4 h or more" in shown.stdout
    assert [int(line.split()[0]) for line in shown.stdout.splitlines()[1:-1]] == cities


def test_the_risk_flag_follows_the_carriers_list(fed: LocalFederation, pool: Numbers, risk_list: Path) -> None:
    msisdn, cities = pool.with_cities(2)
    flagged = cities[-1]
    district = next(int(c) for c in load_registry(None).codes if int(c) // 100 == flagged)
    risk_list.write_text(json.dumps({"columns": ["district", "tier"], "rows": [[district, "high"], [1, "low"]]}))
    answer = get(fed, msisdn, fresh_code(fed, msisdn))
    assert {c.code: c.risk for c in answer.cities} == {c: c == flagged for c in cities}
    risk_list.write_text("[]   ")  # a new size, so the node sees the change
    answer = get(fed, msisdn, fresh_code(fed, msisdn))
    assert not any(c.risk for c in answer.cities)


# -- refusals: each audited, none telling a subscriber from a stranger ---------------------------------------


def assert_refused_and_audited(
    fed: LocalFederation, since: int, method: str, status: grpc.StatusCode, reason: str, *, peer: str = GATEWAY
) -> None:
    refused = [e for e in new_entries(fed, since) if e["event"] == "itinerary.refused"]
    assert refused, "the refusal left no audit entry"
    entry = refused[-1]
    assert (entry["method"], entry["status"], entry["peer"]) == (method, status.name, peer)
    assert reason in entry["reason"]


def test_a_wrong_code_then_the_right_one(fed: LocalFederation, pool: Numbers) -> None:
    msisdn = pool.any()
    code = fresh_code(fed, msisdn)
    since = last_seq(fed)
    status, details = refusal(lambda: get(fed, msisdn, wrong(code)))
    assert status == grpc.StatusCode.UNAUTHENTICATED and "wrong code: 4 tries left" in details
    assert_refused_and_audited(fed, since, "GetItinerary", status, "wrong code")
    get(fed, msisdn, code)


def test_a_reused_code(fed: LocalFederation, pool: Numbers) -> None:
    msisdn = pool.any()
    code = fresh_code(fed, msisdn)
    get(fed, msisdn, code)
    since = last_seq(fed)
    status, details = refusal(lambda: get(fed, msisdn, code))
    assert status == grpc.StatusCode.UNAUTHENTICATED and "no valid code" in details
    assert_refused_and_audited(fed, since, "GetItinerary", status, "no valid code")


def test_the_sixth_try_fails_even_with_the_right_code(fed: LocalFederation, pool: Numbers) -> None:
    msisdn = pool.any()
    code = fresh_code(fed, msisdn)
    for _ in range(5):
        refusal(lambda: get(fed, msisdn, wrong(code)))
    since = last_seq(fed)
    status, details = refusal(lambda: get(fed, msisdn, code))
    assert status == grpc.StatusCode.UNAUTHENTICATED and "no valid code" in details
    assert_refused_and_audited(fed, since, "GetItinerary", status, "no valid code")


def test_the_fourth_request_in_an_hour(fed: LocalFederation, pool: Numbers) -> None:
    msisdn = pool.any()
    for left in (2, 1, 0):
        assert request_code(fed, msisdn).requests_left == left
    since = last_seq(fed)
    status, details = refusal(lambda: request_code(fed, msisdn))
    assert status == grpc.StatusCode.RESOURCE_EXHAUSTED and "at most 3 codes per number per hour" in details
    assert_refused_and_audited(fed, since, "RequestCode", status, "at most 3")


@pytest.mark.parametrize("caller", ["broker", "telecom-b-gateway", "nhc-national", "telecom-b"])
def test_only_the_carriers_own_gateway_may_call(fed: LocalFederation, pool: Numbers, caller: str) -> None:
    msisdn = pool.any()
    for method, action in (
        ("RequestCode", lambda: request_code(fed, msisdn, caller=caller)),
        ("GetItinerary", lambda: get(fed, msisdn, "123456", caller=caller)),
    ):
        since = last_seq(fed)
        status, details = refusal(action)
        assert status == grpc.StatusCode.PERMISSION_DENIED and "only telecom-a's own SMS gateway" in details
        assert_refused_and_audited(fed, since, method, status, "SMS gateway", peer=caller)
    assert not [line for line in outbox_lines(fed) if line["to"] == msisdn]


@pytest.mark.parametrize("claimed", [GATEWAY, "telecom-a-gateway-2"])
def test_a_federation_certificate_the_roster_does_not_list(fed: LocalFederation, pool: Numbers, claimed: str) -> None:
    """Signed by the federation CA, but not the roster's certificate: a second gateway certificate (the CA was
    misused, or an old one) and a gateway the roster never named are both refused before any code exists."""
    ca_pem = fed.config.ca.read_bytes()
    now = dt.datetime.now(dt.UTC)
    cert_pem, key_pem = issue_certificate(
        ca_pem,
        fed.config.ca.with_suffix(".key").read_bytes(),
        claimed,
        not_before=now - dt.timedelta(hours=1),
        not_after=now + dt.timedelta(days=1),
    )
    stray = Identity(node_id=claimed, cert_pem=cert_pem, key_pem=key_pem, ca_pem=ca_pem)
    msisdn = pool.any()
    since = last_seq(fed)
    request = itinerary_pb2.CodeRequest(msisdn=msisdn)
    status, _ = refusal(
        lambda: call(fed, claimed, CARRIER, lambda s: s.RequestCode(request, timeout=30), identity=stray)
    )
    assert status == grpc.StatusCode.UNAUTHENTICATED
    assert_refused_and_audited(fed, since, "RequestCode", status, "roster", peer=claimed)
    assert request_code(fed, msisdn).requests_left == 2  # the refused call drew no code for the number


def test_a_broken_risk_list_refuses_without_spending_the_code(
    fed: LocalFederation, pool: Numbers, risk_list: Path
) -> None:
    msisdn, cities = pool.with_cities(1)
    code = fresh_code(fed, msisdn)
    since = last_seq(fed)
    risk_list.write_text("{not json")
    try:
        status, details = refusal(lambda: get(fed, msisdn, code))
    finally:
        risk_list.write_text("[]    ")  # another size than any list before, so the node rereads it
    assert status == grpc.StatusCode.FAILED_PRECONDITION and str(risk_list) in details
    assert_refused_and_audited(fed, since, "GetItinerary", status, str(risk_list))
    # The carrier fixed its list: the same code still works, once.
    assert [c.code for c in get(fed, msisdn, code).cities] == cities


def test_another_carriers_number_is_answered_like_an_unknown_one(fed: LocalFederation, pool: Numbers) -> None:
    theirs = numbers(fed.config, OTHER_CARRIER)[3]
    mine = pool.any()

    def trail(msisdn: str) -> list[Any]:
        """Everything the gateway and the audit see for one number: request, six wrong tries, the hourly limit."""
        since = last_seq(fed)
        sent = request_code(fed, msisdn)
        real = code_for(fed, msisdn) if msisdn == mine else None
        # Guesses for the others could hit their (unknown, random) code with probability 1e-6 per try.
        bad = [c for c in ("000000", "000001", "000002") if c != real][:2]
        tries = [refusal(functools.partial(get, fed, msisdn, guess)) for guess in bad * 3]
        more = [request_code(fed, msisdn).requests_left for _ in range(2)]
        limit = refusal(lambda: request_code(fed, msisdn))
        events = [(e["event"], e.get("method"), e.get("status"), e.get("reason")) for e in new_entries(fed, since)]
        assert sent.msisdn == mask_msisdn(msisdn)
        return [sent.valid_for_s, sent.requests_left, tries, more, limit, events]

    assert trail(theirs) == trail(UNKNOWN) == trail(mine)
    assert not [line for line in outbox_lines(fed) if line["to"] in (theirs, UNKNOWN)]
    assert sms_count(fed, mine, reaching=3) == 3  # the real subscriber's three codes, sent after each answer


def test_malformed_input_is_invalid_argument_and_audited(fed: LocalFederation) -> None:
    since = last_seq(fed)
    status, details = refusal(lambda: request_code(fed, "13912345678"))
    assert status == grpc.StatusCode.INVALID_ARGUMENT and "E.164" in details and "13912345678" not in details
    assert_refused_and_audited(fed, since, "RequestCode", status, "E.164")
    status, details = refusal(lambda: get(fed, UNKNOWN, "12ab56"))
    assert status == grpc.StatusCode.INVALID_ARGUMENT and "6 digits" in details


# -- expiry, on an injected clock --------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_an_expired_code(fed: LocalFederation, pool: Numbers, tmp_path: Path) -> None:
    config = fed.config
    node = dataclasses.replace(config.node(CARRIER), audit_log=tmp_path / "audit" / f"{CARRIER}.jsonl")
    clock = Clock()
    outbox_path = tmp_path / "sms" / "outbox.jsonl"
    msisdn = pool.any()

    async def scenario() -> tuple[grpc.StatusCode, str]:
        audit = AuditLog(node.audit_log, node.id)
        service = ItineraryService(config, node, audit, OutboxSender(outbox_path), codes=CodeBook(clock=clock))
        server = grpc.aio.server(options=server_options())
        itinerary_pb2_grpc.add_ItineraryServicer_to_server(service, server)
        port = server.add_secure_port("127.0.0.1:0", server_credentials(config.identity(CARRIER)))
        await server.start()
        try:
            identity = config.identity(GATEWAY)
            async with grpc.aio.secure_channel(
                f"127.0.0.1:{port}", channel_credentials(identity), options=channel_options(CARRIER)
            ) as channel:
                stub = itinerary_pb2_grpc.ItineraryStub(channel)
                await stub.RequestCode(itinerary_pb2.CodeRequest(msisdn=msisdn), timeout=30)
                for _ in range(400):
                    if outbox_path.exists() and outbox_path.read_text():
                        break
                    await asyncio.sleep(0.05)  # waiting for the SMS task, not for the clock
                code = re.findall(r"\b[0-9]{6}\b", outbox_path.read_text())[-1]
                clock.now += 300.5
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await stub.GetItinerary(itinerary_pb2.ItineraryRequest(msisdn=msisdn, code=code), timeout=30)
                return caught.value.code(), caught.value.details() or ""
        finally:
            await server.stop(None)
            audit.close()

    status, details = asyncio.run(scenario())
    assert status == grpc.StatusCode.UNAUTHENTICATED and "no valid code" in details
    entries = [json.loads(line) for line in node.audit_log.read_text().splitlines()]
    assert [e["event"] for e in entries] == ["itinerary.code-issued", "itinerary.refused"]
    assert "expired" in entries[-1]["reason"] and msisdn not in node.audit_log.read_text()


def test_malformed_bytes_are_refused_and_audited(fed: LocalFederation) -> None:
    async def go() -> None:
        identity = fed.config.identity(GATEWAY)
        address = fed.config.node(CARRIER).address
        options = channel_options(CARRIER)
        async with grpc.aio.secure_channel(address, channel_credentials(identity), options=options) as channel:
            raw: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
                "/federation.v1.Itinerary/GetItinerary"
            )
            await raw(b"\xff\xff\xff", timeout=30)

    since = last_seq(fed)
    status, details = refusal(lambda: asyncio.run(go()))
    assert status == grpc.StatusCode.INVALID_ARGUMENT and "not a valid federation.v1.ItineraryRequest" in details
    assert_refused_and_audited(fed, since, "GetItinerary", status, "malformed protobuf")
