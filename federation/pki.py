"""A development PKI for a local federation: one CA, one certificate per node and coordinator.

Every key is ECDSA P-256; it serves both for mutual TLS and for signing protocol messages (docs/security.md).
A leaf certificate names its node id twice: as the subjectAltName DNS name (the identity every peer checks)
and as the subject CN (for people reading logs). Private keys are written PKCS#8 PEM, unencrypted, mode 0600:
this is a development PKI for loopback demos and tests; a production federation issues its certificates
from its own CA and only points the roster at them.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from federation.errors import ConfigError
from federation.identity import require_node_id

CA_DAYS_VALID = 3650
# Backdate notBefore a little so a peer whose clock runs slightly behind still accepts a fresh certificate.
CLOCK_SKEW = datetime.timedelta(minutes=5)
# A kept leaf must stay valid at least this long; otherwise generate_dev_pki issues a new one.
MIN_REMAINING_VALIDITY = datetime.timedelta(days=1)


def generate_ca(name: str, *, days_valid: int = CA_DAYS_VALID) -> tuple[bytes, bytes]:
    """Make a self-signed CA; returns (certificate PEM, PKCS#8 private key PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + datetime.timedelta(days=days_valid))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _private_pem(key)


def issue_certificate(
    ca_cert_pem: bytes,
    ca_key_pem: bytes,
    node_id: str,
    *,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
) -> tuple[bytes, bytes]:
    """Issue a leaf for ``node_id`` (SAN DNS name and CN) with a fresh P-256 key; returns (cert PEM, key PEM).

    The validity window is taken as given (timezone-aware datetimes), so tests can make expired or
    not-yet-valid certificates.
    """
    require_node_id(node_id)
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError("the CA key must be an ECDSA key")
    key = ec.generate_private_key(ec.SECP256R1())
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node_id)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(node_id)]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _private_pem(key)


def generate_dev_pki(
    pki_dir: Path, ids: Sequence[str], *, days_valid: int = 365, ca_name: str = "fedbroker dev CA"
) -> None:
    """Write ``ca.pem``/``ca.key`` and ``<id>.pem``/``<id>.key`` for every id into ``pki_dir``.

    Idempotent: an existing CA is reused, and an existing leaf is kept when it was issued by that CA, names
    its id, matches its key and stays valid for at least a day; anything else is reissued.
    """
    if days_valid <= 0:
        raise ValueError(f"days_valid must be positive, got {days_valid}")
    for node_id in ids:
        require_node_id(node_id)
    pki_dir.mkdir(parents=True, exist_ok=True)
    ca_cert_path, ca_key_path = pki_dir / "ca.pem", pki_dir / "ca.key"
    if ca_cert_path.exists() or ca_key_path.exists():
        ca_cert_pem, ca_key_pem = _load_existing_ca(ca_cert_path, ca_key_path)
    else:
        ca_cert_pem, ca_key_pem = generate_ca(ca_name, days_valid=max(CA_DAYS_VALID, days_valid))
        _write_private(ca_key_path, ca_key_pem)
        ca_cert_path.write_bytes(ca_cert_pem)
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    now = datetime.datetime.now(datetime.UTC)
    for node_id in dict.fromkeys(ids):
        cert_path, key_path = pki_dir / f"{node_id}.pem", pki_dir / f"{node_id}.key"
        if _leaf_is_usable(cert_path, key_path, node_id, ca_cert, now):
            continue
        not_after = min(now + datetime.timedelta(days=days_valid), ca_cert.not_valid_after_utc)
        cert_pem, key_pem = issue_certificate(
            ca_cert_pem, ca_key_pem, node_id, not_before=now - CLOCK_SKEW, not_after=not_after
        )
        _write_private(key_path, key_pem)
        cert_path.write_bytes(cert_pem)


def _load_existing_ca(cert_path: Path, key_path: Path) -> tuple[bytes, bytes]:
    fix = f"delete {cert_path} and {key_path} (and every certificate in {cert_path.parent}) to start a new CA"
    if not (cert_path.exists() and key_path.exists()):
        raise ConfigError(f"{cert_path.parent}: found only one of ca.pem and ca.key; {fix}")
    cert_pem, key_pem = cert_path.read_bytes(), key_path.read_bytes()
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
    except ValueError as exc:
        raise ConfigError(f"{cert_path} / {key_path}: not a PEM certificate and key ({exc}); {fix}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        raise ConfigError(f"{key_path} is not the private key of {cert_path}; {fix}")
    if cert.not_valid_after_utc <= datetime.datetime.now(datetime.UTC) + MIN_REMAINING_VALIDITY:
        raise ConfigError(f"{cert_path}: the CA expires on {cert.not_valid_after_utc:%Y-%m-%d}; {fix}")
    return cert_pem, key_pem


def _leaf_is_usable(
    cert_path: Path, key_path: Path, node_id: str, ca_cert: x509.Certificate, now: datetime.datetime
) -> bool:
    if not (cert_path.exists() and key_path.exists()):
        return False
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        cert.verify_directly_issued_by(ca_cert)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns_names = names.get_values_for_type(x509.DNSName)
    except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    return (
        dns_names == [node_id]
        and isinstance(key, ec.EllipticCurvePrivateKey)
        and key.public_key() == cert.public_key()
        and cert.not_valid_before_utc <= now
        and cert.not_valid_after_utc > now + MIN_REMAINING_VALIDITY
    )


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write_private(path: Path, data: bytes) -> None:
    """Write a private key readable by its owner only (0600), even if the file already existed."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "wb") as key_file:
        key_file.write(data)
