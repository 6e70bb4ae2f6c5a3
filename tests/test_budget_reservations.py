"""A broker cannot burn an agency's budget with rounds it never finishes (issue 12), against real carriers.

Each agency reserves a round's ρ at Open and charges it (fsynced) only when its masked input is about to leave;
a round that dies before that gives its reservation back, and a restart drops every reservation but no charge
(docs/protocol.md, "Noise, the budget and audit heads"). The broker here is :class:`EvilBroker`: it holds the
broker's certificate and drives the stages by hand, so it can walk away from a round at any stage. Each test
uses its own data day, so the module's one federation serves them in any order.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path

import grpc
import pytest
from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_fixed

from broker.client import run_query
from fedbroker.harness import LocalFederation
from federation.catalog import new_query
from federation.config import PrivacyPolicy
from federation.errors import FederationError
from federation.privacy.ledger import ledger_path
from federation.v1 import adapter_pb2, common_pb2
from tests.federation_fixtures import own_federation, private_copy
from tests.test_round_refusals import TELECOM, EvilBroker

pytestmark = pytest.mark.slow
RHO = 0.05
# Two rounds of 0.05 fit in a day, a third does not.
NOISY = PrivacyPolicy(noise="discrete-gaussian", rho_per_day=0.12, max_trips_per_day=4)


@pytest.fixture(scope="module")
def fed(small_scenario: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    directory = tmp_path_factory.mktemp("reservations")
    roster = private_copy(small_scenario, directory, privacy=NOISY, rho_per_round=RHO, min_contributors=2)
    with own_federation(roster, directory / "run", nodes=TELECOM) as federation:
        yield federation


def _day(fed: LocalFederation, back: int) -> dt.date:
    return fed.config.data_end - dt.timedelta(days=back)


def spent(evil: EvilBroker, node_id: str, day: dt.date) -> float:
    """ρ charged on ``day`` as the agency reports it (Budget: ledger totals only)."""
    report = asyncio.run(evil.call(node_id, "Budget", adapter_pb2.BudgetRequest()))
    return float(sum(d.spent for d in report.days if d.day == day.isoformat()))


async def _open(
    evil: EvilBroker, day: dt.date, targets: Sequence[str] = TELECOM
) -> tuple[bytes, dict[str, adapter_pb2.KeyAdvert]]:
    """A fresh signed query of ``day``'s population and one round of it opened at ``targets``."""
    query, signed = evil.query(start=day, end=day)
    round_id = secrets.token_bytes(16)
    adverts = await evil.open_all(round_id, signed, evil.spec(query, rho=repr(RHO)), targets=targets)
    return round_id, adverts


async def _through_share_keys(
    evil: EvilBroker, day: dt.date
) -> tuple[bytes, dict[str, list[adapter_pb2.EncryptedShare]]]:
    round_id, adverts = await _open(evil, day)
    request = adapter_pb2.ShareKeysRequest(round_id=round_id, adverts=list(adverts.values()))
    answers = await asyncio.gather(*(evil.call(n, "ShareKeys", request) for n in TELECOM))
    inbox: dict[str, list[adapter_pb2.EncryptedShare]] = {n: [] for n in TELECOM}
    for answer in answers:
        for share in answer.shares:
            inbox[share.recipient].append(share)
    return round_id, inbox


async def _masked_inputs(evil: EvilBroker, day: dt.date) -> bytes:
    """A round driven until every carrier has streamed its masked input, then left there (no Unmask)."""
    round_id, inbox = await _through_share_keys(evil, day)
    for node in TELECOM:
        request = adapter_pb2.MaskedInputRequest(round_id=round_id, survivors=list(TELECOM), shares=inbox[node])
        chunks = await evil.call(node, "MaskedInput", request)
        assert chunks[0].HasField("header") and len(chunks) > 1
    return round_id


async def _abort(evil: EvilBroker, round_id: bytes, targets: Sequence[str] = TELECOM) -> None:
    await asyncio.gather(*(evil.call(n, "Abort", adapter_pb2.AbortRequest(round_id=round_id)) for n in targets))


def _refused_for_budget(evil: EvilBroker, day: dt.date, node_id: str) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as refusal:
        asyncio.run(_open(evil, day, targets=[node_id]))
    assert refusal.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, refusal.value.details()
    message = refusal.value.details() or ""
    assert day.isoformat() in message
    return message


def test_a_round_abandoned_before_its_masked_input_costs_nothing(fed: LocalFederation) -> None:
    evil = EvilBroker(fed.config)
    day = _day(fed, 0)
    # Walked away from after ShareKeys (it stays live until its TTL), and one aborted after Open.
    asyncio.run(_through_share_keys(evil, day))
    aborted, _ = asyncio.run(_open(evil, day))
    asyncio.run(_abort(evil, aborted))
    for node_id in TELECOM:
        assert spent(evil, node_id, day) == 0.0, node_id
        ledger = ledger_path(fed.config.node(node_id))
        assert not ledger.exists() or day.isoformat() not in ledger.read_text(), node_id
    # The aborted round gave its reservation back, the abandoned one still holds its own: one more round fits,
    # a second does not, and the refusal says that rounds in progress hold it.
    extra, _ = asyncio.run(_open(evil, day, targets=["telecom-a"]))
    assert "reserved by rounds in progress" in _refused_for_budget(evil, day, "telecom-a")
    asyncio.run(_abort(evil, extra, targets=["telecom-a"]))


def test_a_masked_input_that_left_is_charged_without_unmask(fed: LocalFederation) -> None:
    evil = EvilBroker(fed.config)
    day = _day(fed, 1)
    round_id = asyncio.run(_masked_inputs(evil, day))
    asyncio.run(_abort(evil, round_id))  # too late: the masked inputs have left, the others' shares unmask them
    for node_id in TELECOM:
        assert math.isclose(spent(evil, node_id, day), RHO, rel_tol=1e-6), node_id
        node = fed.config.node(node_id)
        charges = [json.loads(line) for line in ledger_path(node).read_text().splitlines()]
        assert [c["round"] for c in charges if c["days"] == [day.isoformat()]] == [round_id.hex()]
        records = [json.loads(line) for line in node.audit_log.read_text().splitlines()]
        sent = [r for r in records if r["event"] == "round.masked-input" and r.get("round") == round_id.hex()]
        assert len(sent) == 1 and math.isclose(sent[0]["rho"], RHO, rel_tol=1e-6)


def test_concurrent_opens_cannot_exceed_the_budget(fed: LocalFederation) -> None:
    evil = EvilBroker(fed.config)
    day = _day(fed, 2)

    async def three_at_once() -> list[tuple[bytes, dict[str, adapter_pb2.KeyAdvert]] | BaseException]:
        return await asyncio.gather(
            *(_open(evil, day, targets=["telecom-b"]) for _ in range(3)), return_exceptions=True
        )

    for _attempt in range(2):  # the second time after the first two were aborted: their reservations are back
        outcomes = asyncio.run(three_at_once())
        opened = [o for o in outcomes if not isinstance(o, BaseException)]
        refused = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
        assert len(opened) == 2 and len(refused) == 1, outcomes
        assert refused[0].code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        for round_id, _ in opened:
            asyncio.run(_abort(evil, round_id, targets=["telecom-b"]))
    assert spent(evil, "telecom-b", day) == 0.0


def test_a_restart_drops_reservations_and_keeps_charges(fed: LocalFederation) -> None:
    evil = EvilBroker(fed.config)
    day = _day(fed, 3)
    asyncio.run(_masked_inputs(evil, day))  # charged 0.05 everywhere
    asyncio.run(_open(evil, day, targets=["telecom-a"]))  # reserved 0.05 more at telecom-a, never finished
    _refused_for_budget(evil, day, "telecom-a")
    fed.restart("telecom-a")
    evil = EvilBroker(fed.config)
    assert math.isclose(spent(evil, "telecom-a", day), RHO, rel_tol=1e-6)
    again, _ = asyncio.run(_open(evil, day, targets=["telecom-a"]))  # the reservation died with the process
    _refused_for_budget(evil, day, "telecom-a")  # and this one is held
    asyncio.run(_abort(evil, again, targets=["telecom-a"]))


def test_the_broker_mirror_charges_only_masked_inputs_it_received(fed: LocalFederation) -> None:
    """Two carriers' own ledgers are spent on a day the broker's copy knows nothing of (a broker that ignored
    it); a broker query of that day is refused by them at Open and aborts with one carrier opened. Nobody's
    masked input left, so neither the broker's copy nor the carrier that opened is charged, and that carrier's
    reservation is released by the broker's Abort."""
    config = fed.config
    evil = EvilBroker(config)
    day = _day(fed, 4)
    pair = ("telecom-a", "telecom-b")
    for _ in range(2):
        asyncio.run(_masked_inputs_of(evil, day, pair))
    live_before = asyncio.run(evil.call("telecom-c", "Status", common_pb2.StatusRequest())).live_rounds
    query = new_query("population", start=day, end=day, params={}, coordinator="nhc-national")
    with pytest.raises(FederationError) as failed:
        asyncio.run(run_query(config, "nhc-national", query))
    assert "telecom-a" in failed.value.message and "telecom-b" in failed.value.message
    mirror = config.broker.audit_log.parent / "budget"
    for node_id in TELECOM:
        mirrored = mirror / f"{node_id}.jsonl"
        assert not mirrored.exists() or day.isoformat() not in mirrored.read_text(), node_id
    assert spent(evil, "telecom-c", day) == 0.0

    @retry(retry=retry_if_exception_type(AssertionError), stop=stop_after_delay(30), wait=wait_fixed(0.2), reraise=True)
    def aborted_at_telecom_c() -> None:
        status = asyncio.run(evil.call("telecom-c", "Status", common_pb2.StatusRequest()))
        assert status.live_rounds <= live_before, status.live_rounds

    aborted_at_telecom_c()
    both = [asyncio.run(_open(evil, day, targets=["telecom-c"]))[0] for _ in range(2)]  # 0.10 fits in 0.12
    for round_id in both:
        asyncio.run(_abort(evil, round_id, targets=["telecom-c"]))


async def _masked_inputs_of(evil: EvilBroker, day: dt.date, members: Sequence[str]) -> None:
    """As :func:`_masked_inputs`, in a round whose participants are ``members`` only (t = 2)."""
    query, signed = evil.query(start=day, end=day)
    round_id = secrets.token_bytes(16)
    spec = evil.spec(query, rho=repr(RHO))
    adverts = await evil.open_all(round_id, signed, spec, participants=members)
    request = adapter_pb2.ShareKeysRequest(round_id=round_id, adverts=list(adverts.values()))
    answers = await asyncio.gather(*(evil.call(n, "ShareKeys", request) for n in members))
    inbox: dict[str, list[adapter_pb2.EncryptedShare]] = {n: [] for n in members}
    for answer in answers:
        for share in answer.shares:
            inbox[share.recipient].append(share)
    for node in members:
        masked = adapter_pb2.MaskedInputRequest(round_id=round_id, survivors=list(members), shares=inbox[node])
        await evil.call(node, "MaskedInput", masked)
