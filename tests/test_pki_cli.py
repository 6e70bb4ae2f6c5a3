"""`fedbroker pki`: a CA, key requests, signing with SAN = id and the right key usages, revocation with a CRL
that running nodes re-read; and rotating one node's certificate on a running federation without restarting
any other node.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from broker.client import run_query, sign_query
from fedbroker.cli import main as fedbroker_main
from fedbroker.harness import LocalFederation
from federation.ca import CaFiles, publish_crl
from federation.catalog import new_query
from federation.config import dump_federation, load_federation
from federation.errors import AuthenticationFailed
from federation.identity import Identity
from federation.revocation import RevocationList
from tests.federation_fixtures import own_federation
from tests.test_round_refusals import EvilBroker

TELECOM = ("telecom-a", "telecom-b", "telecom-c")
NATIONAL = "nhc-national"
PROVINCIAL = "hubei-jpc"  # revoked by one test; the other queries as NATIONAL, so the order does not matter


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_request_sign_revoke(tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    assert fedbroker_main(["pki", "init", "--dir", str(ca), "--name", "test CA"]) == 0
    assert _mode(ca / "ca.key") == 0o600 and (ca / "ca.pem").exists() and (ca / "crl.pem").exists()
    assert fedbroker_main(["pki", "init", "--dir", str(ca)]) == 3  # config: never over an existing CA

    host = tmp_path / "telecom-a-host"
    assert fedbroker_main(["pki", "request", "telecom-a", "--dir", str(host)]) == 0
    assert _mode(host / "telecom-a.key") == 0o600
    assert fedbroker_main(["pki", "request", "telecom-a", "--dir", str(host)]) == 3  # config: a key is kept
    assert fedbroker_main(["pki", "sign", str(host / "telecom-a.csr"), "--ca-dir", str(ca), "--days", "30"]) == 0

    cert_pem = (host / "telecom-a.pem").read_bytes()
    cert = x509.load_pem_x509_certificate(cert_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["telecom-a"]
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign and not usage.key_encipherment
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    # The product accepts it as telecom-a's identity (chain, SAN, key match, validity).
    identity = Identity.from_pem(
        "telecom-a", cert_pem, (host / "telecom-a.key").read_bytes(), (ca / "ca.pem").read_bytes()
    )
    assert identity.node_id == "telecom-a"

    # A CSR whose key was not the one that signed it, or naming no valid id, is refused.
    forged = tmp_path / "forged.csr"
    forged.write_bytes((host / "telecom-a.csr").read_bytes().replace(b"A", b"B", 1))
    assert fedbroker_main(["pki", "sign", str(forged), "--ca-dir", str(ca)]) == 3  # config: a bad CSR file

    crl = RevocationList(ca / "crl.pem", (ca / "ca.pem").read_bytes())
    assert not crl.is_revoked(cert)
    assert fedbroker_main(["pki", "revoke", "telecom-a", "--ca-dir", str(ca)]) == 0
    assert crl.is_revoked(cert)  # the same list sees the new file without being rebuilt


@pytest.fixture(scope="module")
def fed(small_scenario: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    """The small scenario with its own copy of the PKI (this test rotates and revokes in it) and a CRL."""
    base = load_federation(small_scenario)
    work = tmp_path_factory.mktemp("pki-fed")
    pki = work / "pki"
    shutil.copytree(base.ca.parent, pki)
    publish_crl(CaFiles(pki))

    def moved(path: Path) -> Path:
        return pki / path.name

    config = dataclasses.replace(
        base,
        ca=pki / "ca.pem",
        crl=pki / "crl.pem",
        broker=dataclasses.replace(base.broker, cert=moved(base.broker.cert), key=moved(base.broker.key)),
        nodes=tuple(
            dataclasses.replace(
                n,
                cert=moved(n.cert),
                key=moved(n.key),
                policy=dataclasses.replace(n.policy, min_contributors=2),
            )
            for n in base.nodes
        ),
        coordinators=tuple(
            dataclasses.replace(c, cert=moved(c.cert), key=moved(c.key) if c.key else None) for c in base.coordinators
        ),
    )
    roster = work / "federation.pki.yaml"
    dump_federation(config, roster)
    with own_federation(roster, work / "run", nodes=TELECOM) as federation:
        yield federation


def _contributors(fed: LocalFederation) -> list[str]:
    config = fed.config
    query = new_query("population", start=config.data_end, end=config.data_end, params={}, coordinator=NATIONAL)
    answer = asyncio.run(run_query(config, NATIONAL, query))
    return list(answer.contributors["presence"]["contributed"])


@pytest.mark.slow
def test_rotating_one_certificate_needs_no_other_restart(fed: LocalFederation, tmp_path: Path) -> None:
    config = fed.config
    assert _contributors(fed) == list(TELECOM)
    pids = {n: fed.pid(n) for n in (config.broker.id, "telecom-a", "telecom-c")}
    node = config.node("telecom-b")
    old_serial = x509.load_pem_x509_certificate(node.cert.read_bytes()).serial_number

    new = tmp_path / "new"
    assert fedbroker_main(["pki", "request", "telecom-b", "--dir", str(new)]) == 0
    assert fedbroker_main(["pki", "sign", str(new / "telecom-b.csr"), "--ca-dir", str(config.ca.parent)]) == 0
    os.replace(new / "telecom-b.pem", node.cert)  # step 2: the roster's certificate file, on every host
    os.replace(new / "telecom-b.key", node.key)  # step 3: telecom-b's own host, then restart it alone
    fed.restart("telecom-b")
    assert _contributors(fed) == list(TELECOM)  # the others verified its adverts with the new certificate
    assert {n: fed.pid(n) for n in pids} == pids

    assert (
        fedbroker_main(["pki", "revoke", "telecom-b", "--ca-dir", str(config.ca.parent), "--serial", f"{old_serial:x}"])
        == 0
    )
    assert _contributors(fed) == list(TELECOM)  # revoking the old certificate leaves the new one working


@pytest.mark.slow
def test_a_revoked_coordinator_is_refused_on_every_call_and_signed_query(fed: LocalFederation) -> None:
    config = fed.config
    query = new_query("population", start=config.data_end, end=config.data_end, params={}, coordinator=PROVINCIAL)
    signed = sign_query(config.identity(PROVINCIAL), query)
    coordinator = config.coordinator(PROVINCIAL)
    assert (
        fedbroker_main(
            ["pki", "revoke", PROVINCIAL, "--ca-dir", str(config.ca.parent), "--cert", str(coordinator.cert)]
        )
        == 0
    )
    fresh = new_query("population", start=config.data_end, end=config.data_end, params={}, coordinator=PROVINCIAL)
    with pytest.raises(AuthenticationFailed, match="revoked"):
        asyncio.run(run_query(config, PROVINCIAL, fresh))

    # A query it signed before, handed to an adapter by the (valid) broker, is refused there too.
    evil = EvilBroker(config)

    async def open_revoked() -> grpc.aio.AioRpcError:
        try:
            await evil.open_all(secrets.token_bytes(16), signed, evil.spec(query), targets=["telecom-a"])
        except grpc.aio.AioRpcError as error:
            return error
        raise AssertionError("the adapter accepted a query signed with a revoked certificate")

    error = asyncio.run(open_revoked())
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED and "revoked" in (error.details() or "")
