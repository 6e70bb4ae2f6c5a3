"""The federation's certificate authority, for ``fedbroker pki``: a CA directory, key requests, signing and
revocation.

Layout of a CA directory: ``ca.pem`` (the CA certificate every host gets), ``ca.key`` (0600, stays with the
CA's operator), ``crl.pem`` (the revocation list every host gets) and ``index.json`` (what was issued and
revoked: serial as hex, id, notAfter, revocation time). A member's key is made on its own host with
:func:`request_key` and never travels: only the CSR goes to the CA and the certificate comes back.

Leaf certificates are those :func:`federation.pki.issue_certificate` makes: ECDSA P-256, SAN DNS = the
member id (and CN), key usage digitalSignature only, extended key usage serverAuth and clientAuth. The CSR
only proposes the key and the id; everything else is the CA's choice.
"""

from __future__ import annotations

import datetime
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from federation.errors import ConfigError
from federation.identity import is_node_id
from federation.pki import CLOCK_SKEW, _key_usage, _private_pem, _write_private, generate_ca

#: Days a CRL is valid; revoke (or re-publish with ``fedbroker pki revoke --refresh``) before it lapses.
CRL_DAYS = 30
LEAF_DAYS = 365


@dataclass(frozen=True)
class CaFiles:
    directory: Path

    @property
    def cert(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def crl(self) -> Path:
        return self.directory / "crl.pem"

    @property
    def index(self) -> Path:
        return self.directory / "index.json"


def init_ca(directory: Path, name: str, *, days: int = 3650) -> CaFiles:
    """Create a CA in ``directory``: certificate, key (0600), an empty CRL and an empty index."""
    files = CaFiles(directory)
    if files.cert.exists() or files.key.exists():
        raise ConfigError(f"{directory} already holds a CA (ca.pem / ca.key); use another directory")
    directory.mkdir(parents=True, exist_ok=True)
    cert_pem, key_pem = generate_ca(name, days_valid=days)
    _write_private(files.key, key_pem)
    files.cert.write_bytes(cert_pem)
    _write_index(files, {"issued": [], "revoked": []})
    files.crl.write_bytes(issue_crl(cert_pem, key_pem, []))
    return files


def request_key(member_id: str, directory: Path) -> tuple[Path, Path]:
    """Make ``<id>.key`` (P-256, 0600) and ``<id>.csr`` naming the id in ``directory``; refuses to overwrite a key."""
    if not is_node_id(member_id):
        raise ConfigError(f"{member_id!r} is not a valid member id; use a lowercase DNS name like telecom-a")
    directory.mkdir(parents=True, exist_ok=True)
    key_path, csr_path = directory / f"{member_id}.key", directory / f"{member_id}.csr"
    if key_path.exists():
        raise ConfigError(f"{key_path} exists; move it aside first (a key is never overwritten)")
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, member_id)]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(member_id)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(key_path, _private_pem(key))
    csr_path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    return key_path, csr_path


def csr_member_id(csr: x509.CertificateSigningRequest, *, source: str) -> str:
    """The one member id a CSR asks for (its SAN DNS name, which must equal its CN); ConfigError otherwise."""
    if not csr.is_signature_valid:
        raise ConfigError(f"{source}: the CSR's signature does not verify (corrupt, or not made with its key)")
    key = csr.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ConfigError(f"{source}: the key must be ECDSA P-256; make the request with fedbroker pki request")
    try:
        names = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = names.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        dns = []
    common = [a.value for a in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if len(dns) != 1 or not is_node_id(dns[0]) or common not in ([], [dns[0]]):
        raise ConfigError(f"{source}: the CSR must name exactly one valid member id as SAN (and CN), got {dns}")
    return dns[0]


def sign_request(files: CaFiles, csr_pem: bytes, *, days: int = LEAF_DAYS, source: str = "CSR") -> tuple[str, bytes]:
    """Issue a certificate for a CSR: (member id, certificate PEM); the serial is recorded in the index."""
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError:
        raise ConfigError(f"{source}: not a PEM certificate signing request") from None
    member_id = csr_member_id(csr, source=source)
    ca_cert_pem, ca_key = _load_ca(files)
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    now = datetime.datetime.now(datetime.UTC)
    not_after = min(now + datetime.timedelta(days=days), ca_cert.not_valid_after_utc)
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    public_key = csr.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, member_id)]))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(member_id)]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    index = _read_index(files)
    index["issued"].append(
        {"serial": f"{cert.serial_number:x}", "id": member_id, "not_after": cert.not_valid_after_utc.isoformat()}
    )
    _write_index(files, index)
    return member_id, cert.public_bytes(serialization.Encoding.PEM)


def revoke(files: CaFiles, member_id: str, *, serials: list[int] | None = None) -> list[int]:
    """Revoke ``serials`` (default: every certificate the index shows issued to ``member_id``), write the new
    CRL and return the serials newly revoked. Certificates issued elsewhere (a development PKI) are revoked by
    serial: pass them explicitly."""
    index = _read_index(files)
    already = {int(entry["serial"], 16) for entry in index["revoked"]}
    wanted = serials if serials is not None else [int(e["serial"], 16) for e in index["issued"] if e["id"] == member_id]
    if not wanted:
        raise ConfigError(f"{files.index} lists no certificate issued to {member_id}; pass --serial or --cert")
    now = datetime.datetime.now(datetime.UTC).isoformat()
    fresh = [serial for serial in dict.fromkeys(wanted) if serial not in already]
    index["revoked"] += [{"serial": f"{s:x}", "id": member_id, "revoked_at": now} for s in fresh]
    _write_index(files, index)
    publish_crl(files)
    return fresh


def publish_crl(files: CaFiles) -> Path:
    """(Re)write ``crl.pem`` from the index, valid for CRL_DAYS from now."""
    ca_cert_pem, ca_key = _load_ca(files)
    serials = [int(entry["serial"], 16) for entry in _read_index(files)["revoked"]]
    partial = files.crl.with_name("crl.pem.partial")
    partial.write_bytes(issue_crl(ca_cert_pem, _private_pem(ca_key), serials))
    partial.replace(files.crl)  # nodes re-read the file when it changes: never let them see half of it
    return files.crl


def issue_crl(ca_cert_pem: bytes, ca_key_pem: bytes, serials: list[int], *, days: int = CRL_DAYS) -> bytes:
    """A PEM CRL of the CA revoking ``serials``, valid from now for ``days``."""
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ConfigError("the CA key must be an ECDSA key")
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - CLOCK_SKEW)
        .next_update(now + datetime.timedelta(days=days))
    )
    for serial in serials:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now - CLOCK_SKEW).build()
        )
    return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _load_ca(files: CaFiles) -> tuple[bytes, ec.EllipticCurvePrivateKey]:
    try:
        cert_pem, key_pem = files.cert.read_bytes(), files.key.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{files.directory}: no CA here ({exc.strerror}); run fedbroker pki init first") from exc
    key = serialization.load_pem_private_key(key_pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{files.key}: the CA key must be an ECDSA key")
    return cert_pem, key


def _read_index(files: CaFiles) -> dict[str, list[dict[str, Any]]]:
    if not files.index.exists():  # a CA made before the index existed (e.g. the scenario's development CA)
        return {"issued": [], "revoked": []}
    document = json.loads(files.index.read_text())
    return {"issued": list(document.get("issued", [])), "revoked": list(document.get("revoked", []))}


def _write_index(files: CaFiles, index: dict[str, list[dict[str, Any]]]) -> None:
    partial = files.index.with_name("index.json.partial")
    partial.write_text(json.dumps(index, indent=2) + "\n")
    os.replace(partial, files.index)
