"""The development PKI and node identities: certificates, signatures, the roster verifier."""

from __future__ import annotations

import datetime
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from federation.errors import AuthenticationFailed, ConfigError
from federation.identity import (
    Identity,
    Roster,
    certificate_id,
    check_certificate,
    is_node_id,
    verify_signature,
)
from federation.pki import generate_ca, generate_dev_pki, issue_certificate

IDS = ["broker", "telecom-a", "nhc-national"]
NOW = datetime.datetime.now(datetime.UTC)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pki_dir = tmp_path_factory.mktemp("pki")
    generate_dev_pki(pki_dir, IDS)
    return pki_dir


def load(pki: Path, node_id: str) -> Identity:
    return Identity.load(node_id, pki / f"{node_id}.pem", pki / f"{node_id}.key", pki / "ca.pem")


def expired_cert(pki: Path, node_id: str) -> tuple[bytes, bytes]:
    return issue_certificate(
        (pki / "ca.pem").read_bytes(),
        (pki / "ca.key").read_bytes(),
        node_id,
        not_before=NOW - datetime.timedelta(days=30),
        not_after=NOW - datetime.timedelta(days=1),
    )


def test_dev_pki_writes_p256_leaves_naming_their_id(pki: Path) -> None:
    assert sorted(p.name for p in pki.iterdir()) == sorted(
        ["ca.pem", "ca.key"] + [f"{i}.pem" for i in IDS] + [f"{i}.key" for i in IDS]
    )
    for key_file in pki.glob("*.key"):
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate((pki / "telecom-a.pem").read_bytes())
    public_key = cert.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    assert isinstance(public_key.curve, ec.SECP256R1)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["telecom-a"]
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "telecom-a"
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert certificate_id((pki / "nhc-national.pem").read_bytes()) == "nhc-national"


def test_dev_pki_is_idempotent_and_reissues_only_unusable_leaves(tmp_path: Path) -> None:
    generate_dev_pki(tmp_path, ["broker", "telecom-a"])
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    generate_dev_pki(tmp_path, ["broker", "telecom-a", "health-net-1"])
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert {name: after[name] for name in before} == before
    assert "health-net-1.pem" in after

    # An expired leaf and a leaf from another CA are replaced; the CA and the good leaves stay.
    cert_pem, key_pem = expired_cert(tmp_path, "telecom-a")
    (tmp_path / "telecom-a.pem").write_bytes(cert_pem)
    (tmp_path / "telecom-a.key").write_bytes(key_pem)
    foreign_ca, foreign_key = generate_ca("someone else")
    cert_pem, key_pem = issue_certificate(
        foreign_ca, foreign_key, "broker", not_before=NOW, not_after=NOW + datetime.timedelta(days=9)
    )
    (tmp_path / "broker.pem").write_bytes(cert_pem)
    (tmp_path / "broker.key").write_bytes(key_pem)
    generate_dev_pki(tmp_path, ["broker", "telecom-a", "health-net-1"])
    assert (tmp_path / "ca.pem").read_bytes() == before["ca.pem"]
    assert (tmp_path / "health-net-1.pem").read_bytes() == after["health-net-1.pem"]
    for node_id in ("broker", "telecom-a"):
        load(tmp_path, node_id)  # valid again, from the original CA
        assert stat.S_IMODE((tmp_path / f"{node_id}.key").stat().st_mode) == 0o600


def test_dev_pki_refuses_a_ca_without_its_key(tmp_path: Path) -> None:
    generate_dev_pki(tmp_path, ["broker"])
    (tmp_path / "ca.key").unlink()
    with pytest.raises(ConfigError, match=r"ca\.pem and ca\.key"):
        generate_dev_pki(tmp_path, ["broker"])


def test_node_ids_are_dns_names(tmp_path: Path) -> None:
    assert all(is_node_id(i) for i in ["broker", "telecom-a", "nhc-national", "health-net-1", "a.b"])
    assert not any(is_node_id(i) for i in ["", "Telecom", "-a", "a-", "a_b", "a b", "a/b", "x" * 64, "127.0.0.1", "1a"])
    with pytest.raises(ValueError, match="not a valid node id"):
        generate_dev_pki(tmp_path / "pki", ["Bad_Id"])
    assert not (tmp_path / "pki").exists()


def test_identity_load_checks_id_key_and_ca(pki: Path, tmp_path: Path) -> None:
    identity = load(pki, "broker")
    assert identity.node_id == "broker"
    assert "PRIVATE KEY" not in repr(identity)

    with pytest.raises(ConfigError, match=r"broker\.pem.*names 'broker', not 'telecom-a'"):
        Identity.load("telecom-a", pki / "broker.pem", pki / "broker.key", pki / "ca.pem")
    with pytest.raises(ConfigError, match="does not belong to the certificate"):
        Identity.load("broker", pki / "broker.pem", pki / "telecom-a.key", pki / "ca.pem")
    with pytest.raises(ConfigError, match=r"missing\.pem: cannot read the cert file"):
        Identity.load("broker", tmp_path / "missing.pem", pki / "broker.key", pki / "ca.pem")

    foreign_ca, _ = generate_ca("someone else")
    (tmp_path / "foreign-ca.pem").write_bytes(foreign_ca)
    with pytest.raises(ConfigError, match="not issued by the federation CA"):
        Identity.load("broker", pki / "broker.pem", pki / "broker.key", tmp_path / "foreign-ca.pem")

    cert_pem, key_pem = expired_cert(pki, "telecom-a")
    (tmp_path / "old.pem").write_bytes(cert_pem)
    (tmp_path / "old.key").write_bytes(key_pem)
    with pytest.raises(ConfigError, match=r"old\.pem.*expired on"):
        Identity.load("telecom-a", tmp_path / "old.pem", tmp_path / "old.key", pki / "ca.pem")


def test_signatures_verify_only_for_the_signer_and_message(pki: Path) -> None:
    broker, telecom = load(pki, "broker"), load(pki, "telecom-a")
    message = b"fedbroker/v1 advert" + bytes(range(40))
    signature = broker.sign(message)
    assert verify_signature(broker.cert_pem, message, signature)
    assert not verify_signature(broker.cert_pem, message + b"x", signature)
    assert not verify_signature(telecom.cert_pem, message, signature)
    assert not verify_signature(broker.cert_pem, message, signature[:-1] + bytes([signature[-1] ^ 1]))
    assert not verify_signature(broker.cert_pem, message, b"")
    assert not verify_signature(b"not a certificate", message, signature)


def test_check_certificate_names_the_reason(pki: Path) -> None:
    ca_pem = (pki / "ca.pem").read_bytes()
    check_certificate((pki / "telecom-a.pem").read_bytes(), ca_pem)

    foreign_ca, foreign_key = generate_ca("someone else")
    foreign_cert, _ = issue_certificate(
        foreign_ca, foreign_key, "telecom-a", not_before=NOW, not_after=NOW + datetime.timedelta(days=1)
    )
    with pytest.raises(AuthenticationFailed, match="not issued by the federation CA"):
        check_certificate(foreign_cert, ca_pem)

    expired, _ = expired_cert(pki, "telecom-a")
    with pytest.raises(AuthenticationFailed, match="expired on"):
        check_certificate(expired, ca_pem)

    future, _ = issue_certificate(
        ca_pem,
        (pki / "ca.key").read_bytes(),
        "telecom-a",
        not_before=NOW + datetime.timedelta(days=2),
        not_after=NOW + datetime.timedelta(days=9),
    )
    with pytest.raises(AuthenticationFailed, match="not valid yet"):
        check_certificate(future, ca_pem)
    check_certificate(future, ca_pem, now=NOW + datetime.timedelta(days=3))

    with pytest.raises(AuthenticationFailed, match="not a readable PEM"):
        check_certificate(b"garbage", ca_pem)


def test_roster_is_a_verifier(pki: Path) -> None:
    roster = Roster.from_files({i: pki / f"{i}.pem" for i in IDS}, ca=pki / "ca.pem")
    assert roster.ids == tuple(sorted(IDS)) and "broker" in roster and len(roster) == 3
    broker = load(pki, "broker")
    signature = broker.sign(b"survivors")
    assert roster("broker", b"survivors", signature)
    assert not roster("telecom-a", b"survivors", signature)
    assert not roster("stranger", b"survivors", signature)
    assert not roster.verify("broker", b"survivors", signature, now=NOW + datetime.timedelta(days=400))
    with pytest.raises(AuthenticationFailed, match="not in the federation roster"):
        roster.certificate("stranger")

    with pytest.raises(ConfigError, match="roster certificate of telecom-a names 'broker'"):
        Roster({"telecom-a": broker.cert_pem})
    foreign_ca, _ = generate_ca("someone else")
    with pytest.raises(ConfigError, match="not issued by the federation CA"):
        Roster({"broker": broker.cert_pem}, ca_pem=foreign_ca)
