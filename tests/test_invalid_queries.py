"""Malformed and out-of-range queries get INVALID_ARGUMENT from the broker with a message that says what to
fix, are recorded in the broker's audit log, and start no round (no adapter hears of them). So do signed bytes
that are not the query's canonical encoding."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest

from fedbroker.harness import LocalFederation
from federation.catalog import parse_query
from federation.errors import InvalidQuery
from federation.identity import Roster
from federation.signed_query import verify_signed_query
from federation.tls import channel_credentials, channel_options
from federation.v1 import broker_pb2, broker_pb2_grpc, common_pb2
from tests.federation_fixtures import own_federation

pytestmark = pytest.mark.slow
NATIONAL = "nhc-national"


@pytest.fixture(scope="module")
def fed(small_scenario: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    with own_federation(small_scenario, tmp_path_factory.mktemp("run-invalid")) as federation:
        yield federation


def signed(fed: LocalFederation, **fields: Any) -> common_pb2.SignedQuery:
    """Sign arbitrary query JSON as the national coordinator, bypassing the client's own validation."""
    document = {
        "kind": "population",
        "start": fed.config.data_start.isoformat(),
        "end": fed.config.data_end.isoformat(),
        "params": {},
        "coordinator": NATIONAL,
        "nonce": secrets.token_hex(16),
        "issued_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    } | fields
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    identity = fed.config.identity(NATIONAL)
    return common_pb2.SignedQuery(canonical=canonical, coordinator_id=NATIONAL, signature=identity.sign(canonical))


async def _run(fed: LocalFederation, query: common_pb2.SignedQuery) -> None:
    identity = fed.config.identity(NATIONAL)
    broker = fed.config.broker
    async with grpc.aio.secure_channel(
        broker.address, channel_credentials(identity), options=channel_options(broker.id)
    ) as channel:
        stub = broker_pb2_grpc.BrokerStub(channel)
        async for _ in stub.RunQuery(broker_pb2.RunQueryRequest(query=query), timeout=30):
            pass


def audit_lines(fed: LocalFederation, node_id: str) -> list[dict[str, Any]]:
    path = fed.config.broker.audit_log if node_id == fed.config.broker.id else fed.config.node(node_id).audit_log
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.parametrize(
    ("fields", "expect"),
    [
        ({"kind": "prevalence"}, "unknown query kind 'prevalence'"),
        ({"start": "2020-01-20", "end": "2020-01-10"}, "swap them"),
        ({"start": "2019-11-01", "end": "2019-12-31"}, "exceeds the longest window"),
        ({"start": "2019-12-01", "end": "2019-12-05"}, "outside the federation's data"),
        ({"params": {"districts": "420106,999999"}}, "999999"),
        ({"params": {"colour": "red"}}, "colour"),
        ({"kind": "flows", "params": {"source": "telecom", "mode": "rail"}}, "mode"),
        ({"start": "2020-1-5"}, "YYYY-MM-DD"),
    ],
)
def test_invalid_query_is_refused_with_a_fix(fed: LocalFederation, fields: dict[str, Any], expect: str) -> None:
    before = {n: len(audit_lines(fed, n)) for n in ("broker", "telecom-a")}
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        asyncio.run(_run(fed, signed(fed, **fields)))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    message = caught.value.details() or ""
    assert expect in message
    broker_new = audit_lines(fed, "broker")[before["broker"] :]
    assert any(r["event"] == "refused" and r["reason"] == message for r in broker_new)
    assert len(audit_lines(fed, "telecom-a")) == before["telecom-a"], "no round may start for an invalid query"


def _sign_bytes(fed: LocalFederation, canonical: bytes) -> common_pb2.SignedQuery:
    identity = fed.config.identity(NATIONAL)
    return common_pb2.SignedQuery(canonical=canonical, coordinator_id=NATIONAL, signature=identity.sign(canonical))


def _variants(canonical: bytes) -> dict[str, bytes]:
    """The same query in encodings that parse to it but are not its canonical bytes (docs/protocol.md, "Signed
    queries")."""
    document = json.loads(canonical)
    return {
        "spaces": json.dumps(document, sort_keys=True, ensure_ascii=False).encode(),
        "unsorted keys": json.dumps(dict(reversed(document.items())), separators=(",", ":")).encode(),
        "escaped letter": canonical.replace(b'"population"', b'"\\u0070opulation"'),
        "trailing newline": canonical + b"\n",
    }


@pytest.mark.parametrize("variant", ["spaces", "unsorted keys", "escaped letter", "trailing newline"])
def test_signed_bytes_that_are_not_canonical_are_refused(fed: LocalFederation, variant: str) -> None:
    """The check both roles run (verify_signed_query): the canonical bytes pass, the same query in any other
    encoding is refused, though it parses to the same query and its signature verifies."""
    config = fed.config
    roster = Roster.from_files(config.certificates(), ca=config.ca)
    canonical = signed(fed).canonical
    altered = _variants(canonical)[variant]
    assert altered != canonical and parse_query(altered).canonical() == canonical, "the same query, other bytes"
    good = _sign_bytes(fed, canonical)
    assert verify_signed_query(config, roster, good.canonical, NATIONAL, good.signature)[0].canonical() == canonical
    bad = _sign_bytes(fed, altered)
    with pytest.raises(InvalidQuery, match="not in canonical form"):
        verify_signed_query(config, roster, bad.canonical, NATIONAL, bad.signature)


def test_non_canonical_bytes_are_refused_over_the_wire(fed: LocalFederation) -> None:
    altered = _variants(signed(fed).canonical)["spaces"]
    before = len(audit_lines(fed, "telecom-a"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        asyncio.run(_run(fed, _sign_bytes(fed, altered)))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    assert "not in canonical form" in (caught.value.details() or "")
    assert len(audit_lines(fed, "telecom-a")) == before, "no round may start for non-canonical bytes"
