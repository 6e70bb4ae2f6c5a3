"""Node identities: a certificate from the federation CA whose SAN DNS name is the node id, and its key.

One ECDSA P-256 key per node serves for mutual TLS and for signing protocol messages (ECDSA / SHA-256,
DER-encoded signatures; docs/protocol.md §7, docs/security.md). A :class:`Roster` holds every peer's
certificate by id and is the ``Verifier`` the secure-aggregation code calls: it answers True only for a valid
signature by a known peer whose certificate is within its validity period, and never raises for a bad signature.

No gRPC here; :mod:`federation.tls` turns an :class:`Identity` into channel and server credentials.
"""

from __future__ import annotations

import datetime
import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import verification

from federation.errors import AuthenticationFailed, ConfigError
from federation.revocation import RevocationList

log = logging.getLogger(__name__)

Verifier = Callable[[str, bytes, bytes], bool]
"""verifier(node_id, message, signature) -> True iff ``signature`` is node_id's valid signature of message."""

# A node id is a DNS name (lowercase labels), since it is the certificate's SAN and the TLS target name.
# It starts with a letter so that it can never be read as an IP address.
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
NODE_ID_PATTERN = re.compile(rf"[a-z](?:[a-z0-9-]{{0,61}}[a-z0-9])?(?:\.{_LABEL})*")
_SIGNATURE_ALGORITHM = ec.ECDSA(hashes.SHA256())


def is_node_id(value: str) -> bool:
    """True if ``value`` can name a node: lowercase DNS labels starting with a letter, such as ``telecom-a``."""
    return len(value) <= 253 and NODE_ID_PATTERN.fullmatch(value) is not None


def require_node_id(value: str) -> None:
    """Raise ValueError unless ``value`` is a valid node id (see :func:`is_node_id`)."""
    if not is_node_id(value):
        raise ValueError(
            f"{value!r} is not a valid node id: use lowercase letters, digits and inner hyphens (a DNS name)"
        )


@dataclass(frozen=True)
class Identity:
    """This node's id, certificate, private key (PEM) and the federation CA certificate it trusts."""

    node_id: str
    cert_pem: bytes
    key_pem: bytes = field(repr=False)
    ca_pem: bytes

    @classmethod
    def load(cls, node_id: str, cert: Path, key: Path, ca: Path) -> Identity:
        """Read and check an identity: the key matches the certificate, its SAN is ``node_id``, and it chains
        to the CA and is valid now. Raises ConfigError naming the files and the fix."""
        pems = {}
        for name, path in (("cert", cert), ("key", key), ("ca", ca)):
            try:
                pems[name] = path.read_bytes()
            except OSError as exc:
                raise ConfigError(
                    f"{path}: cannot read the {name} file of {node_id} ({exc.strerror}); "
                    "check the path in the roster or regenerate the PKI"
                ) from exc
        return cls.from_pem(node_id, pems["cert"], pems["key"], pems["ca"], source=f"{cert} / {key} / {ca}")

    @classmethod
    def from_pem(
        cls, node_id: str, cert_pem: bytes, key_pem: bytes, ca_pem: bytes, *, source: str = "<memory>"
    ) -> Identity:
        """Like :meth:`load`, from PEM bytes; ``source`` names where they came from in error messages."""
        fix = "regenerate it with the federation CA (fedbroker scenario generate reuses the CA in pki/)"
        if not is_node_id(node_id):
            raise ConfigError(f"{source}: {node_id!r} is not a valid node id; use a lowercase DNS name")
        try:
            cert = x509.load_pem_x509_certificate(cert_pem)
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{source}: not a PEM certificate and unencrypted private key ({exc})") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
            raise ConfigError(f"{source}: the key of {node_id} must be ECDSA P-256; {fix}")
        if key.public_key() != cert.public_key():
            raise ConfigError(f"{source}: the private key does not belong to the certificate of {node_id}")
        try:
            cert_id = certificate_id(cert_pem)
            check_certificate(cert_pem, ca_pem)
        except AuthenticationFailed as exc:
            raise ConfigError(f"{source}: {exc.message}; {fix}") from exc
        if cert_id != node_id:
            raise ConfigError(f"{source}: the certificate names {cert_id!r}, not {node_id!r}; {fix}")
        return cls(node_id=node_id, cert_pem=cert_pem, key_pem=key_pem, ca_pem=ca_pem)

    @cached_property
    def _private_key(self) -> ec.EllipticCurvePrivateKey:
        key = serialization.load_pem_private_key(self.key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ConfigError(f"the key of {self.node_id} is not an ECDSA key")
        return key

    def sign(self, message: bytes) -> bytes:
        """ECDSA P-256 / SHA-256 signature of ``message``, DER-encoded."""
        return self._private_key.sign(message, _SIGNATURE_ALGORITHM)


def certificate_id(cert_pem: bytes) -> str:
    """The node id a certificate names: its single subjectAltName DNS name.

    Raises AuthenticationFailed if the PEM does not parse or the certificate has no or several DNS names.
    """
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except ValueError as exc:
        raise AuthenticationFailed("not a readable PEM certificate") from exc
    except x509.ExtensionNotFound as exc:
        raise AuthenticationFailed("the certificate has no subjectAltName naming its node id") from exc
    dns_names = names.get_values_for_type(x509.DNSName)
    if len(dns_names) != 1:
        raise AuthenticationFailed(
            f"the certificate must name exactly one node id as SAN DNS name, it names {dns_names}"
        )
    return dns_names[0]


def verify_signature(cert_pem: bytes, message: bytes, signature: bytes) -> bool:
    """True iff ``signature`` is a valid ECDSA P-256 / SHA-256 signature of ``message`` by the certificate's
    key. False on any failure (bad signature, unreadable certificate, other key type); never raises."""
    try:
        public_key = x509.load_pem_x509_certificate(cert_pem).public_key()
    except ValueError:
        return False
    return _verify_with_key(public_key, message, signature)


def check_certificate(cert_pem: bytes, ca_pem: bytes, *, now: datetime.datetime | None = None) -> None:
    """Raise AuthenticationFailed unless the certificate was issued by the federation CA and is valid ``now``
    (default: the current time) for both TLS client and server use."""
    moment = now or datetime.datetime.now(datetime.UTC)
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        ca = x509.load_pem_x509_certificate(ca_pem)
    except ValueError as exc:
        raise AuthenticationFailed("not a readable PEM certificate") from exc
    subject = cert.subject.rfc4514_string()
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise AuthenticationFailed(
            f"certificate {subject} was not issued by the federation CA {ca.subject.rfc4514_string()}"
        ) from exc
    if moment < cert.not_valid_before_utc:
        raise AuthenticationFailed(
            f"certificate {subject} is not valid yet: valid from {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
        )
    if moment > cert.not_valid_after_utc:
        raise AuthenticationFailed(f"certificate {subject} expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
    # The explicit checks above give clear messages; the RFC 5280 path validation then checks the rest
    # (CA basic constraints and key usage, the CA's own validity, extended key usage of the leaf).
    store = verification.Store([ca])
    builder = verification.PolicyBuilder().store(store).time(moment)
    try:
        builder.build_client_verifier().verify(cert, [])
    except verification.VerificationError as exc:
        raise AuthenticationFailed(f"certificate {subject} is not accepted by the federation CA: {exc}") from exc


class Roster:
    """Every federation member's certificate by node id; an instance is a :data:`Verifier`.

    Built once from the roster at start-up; each certificate must name its own id and, when ``ca_pem`` is
    given, chain to the federation CA (ConfigError otherwise). Verification also refuses a signature by a
    certificate outside its validity period or revoked by ``revocation`` (the CA's CRL), so an expired or
    revoked member cannot keep signing. Built :meth:`from_files`, a member's certificate file is re-read when
    it changes (rotation without restarts); a replacement that fails the same checks is logged and ignored.
    """

    def __init__(
        self,
        certificates: Mapping[str, bytes],
        *,
        ca_pem: bytes | None = None,
        revocation: RevocationList | None = None,
    ) -> None:
        self._ca_pem = ca_pem
        self._revocation = revocation or RevocationList.empty()
        self._paths: dict[str, Path] = {}
        self._stamps: dict[str, tuple[int, int]] = {}
        self._certificates: dict[str, bytes] = {}
        self._keys: dict[str, tuple[object, datetime.datetime, datetime.datetime, int]] = {}
        for node_id, cert_pem in certificates.items():
            try:
                self._install(node_id, cert_pem)
            except AuthenticationFailed as exc:
                joint = " " if exc.message.startswith("names ") else ": "
                raise ConfigError(f"roster certificate of {node_id}{joint}{exc.message}") from exc

    def _install(self, node_id: str, cert_pem: bytes) -> None:
        cert_id = certificate_id(cert_pem)
        if self._ca_pem is not None:
            check_certificate(cert_pem, self._ca_pem)
        if cert_id != node_id:
            raise AuthenticationFailed(f"names {cert_id!r}; fix the roster entry")
        cert = x509.load_pem_x509_certificate(cert_pem)
        self._certificates[node_id] = cert_pem
        self._keys[node_id] = (
            cert.public_key(),
            cert.not_valid_before_utc,
            cert.not_valid_after_utc,
            cert.serial_number,
        )

    def _refresh(self, node_id: str) -> None:
        """Re-read ``node_id``'s certificate file if it changed since it was loaded."""
        path = self._paths.get(node_id)
        if path is None:
            return
        try:
            stat = os.stat(path)
            stamp = (stat.st_mtime_ns, stat.st_size)
            if stamp == self._stamps.get(node_id):
                return
            cert_pem = path.read_bytes()
        except OSError:
            return  # mid-copy or removed: keep the certificate loaded before
        try:
            self._install(node_id, cert_pem)
        except AuthenticationFailed as exc:
            log.warning("%s: new certificate of %s refused (%s); keeping the old one", path, node_id, exc.message)
        self._stamps[node_id] = stamp

    @classmethod
    def from_files(cls, paths: Mapping[str, Path], *, ca: Path | None = None, crl: Path | None = None) -> Roster:
        """Read each id's certificate file (and the CA and CRL when given); ConfigError names an unreadable
        file. The files are watched: a changed certificate or CRL is re-read on its next use."""

        def read(path: Path) -> bytes:
            try:
                return path.read_bytes()
            except OSError as exc:
                raise ConfigError(f"{path}: cannot read certificate ({exc.strerror})") from exc

        ca_pem = None if ca is None else read(ca)
        if crl is not None and ca_pem is None:
            raise ConfigError(f"{crl}: a CRL needs the CA that signed it")
        stamps = {}
        for node_id, path in paths.items():
            try:
                stat = os.stat(path)
            except OSError:
                continue  # read() below names the file
            stamps[node_id] = (stat.st_mtime_ns, stat.st_size)
        roster = cls(
            {node_id: read(path) for node_id, path in paths.items()},
            ca_pem=ca_pem,
            revocation=None if crl is None or ca_pem is None else RevocationList(crl, ca_pem),
        )
        roster._paths = dict(paths)
        roster._stamps = stamps
        return roster

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(sorted(self._certificates))

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._certificates

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids)

    def __len__(self) -> int:
        return len(self._certificates)

    def certificate(self, node_id: str) -> bytes:
        """The PEM certificate of ``node_id``; AuthenticationFailed for an id not in the roster."""
        self._refresh(node_id)
        try:
            return self._certificates[node_id]
        except KeyError:
            raise AuthenticationFailed(
                f"{node_id!r} is not in the federation roster (known: {', '.join(self.ids)})"
            ) from None

    def verify(self, node_id: str, message: bytes, signature: bytes, *, now: datetime.datetime | None = None) -> bool:
        """True iff ``signature`` is ``node_id``'s valid signature of ``message`` and its certificate is
        valid ``now``; False for an unknown id or any failure."""
        self._refresh(node_id)
        entry = self._keys.get(node_id)
        if entry is None:
            return False
        public_key, not_before, not_after, serial = entry
        moment = now or datetime.datetime.now(datetime.UTC)
        if not not_before <= moment <= not_after or serial in self._revocation.revoked():
            return False
        return _verify_with_key(public_key, message, signature)

    def require_valid(self, node_id: str, *, now: datetime.datetime | None = None) -> None:
        """AuthenticationFailed, saying which, when ``node_id`` is not in the roster or its certificate is
        outside its validity period ``now`` or revoked by the CA's CRL (the chain to the CA was checked when
        the certificate was loaded)."""
        self._refresh(node_id)
        entry = self._keys.get(node_id)
        if entry is None:
            raise AuthenticationFailed(f"{node_id!r} is not in the federation roster (known: {', '.join(self.ids)})")
        _, not_before, not_after, serial = entry
        if serial in self._revocation.revoked():
            raise AuthenticationFailed(
                f"the certificate of {node_id} (serial {serial:x}) is revoked by the federation CA; "
                "it needs a new certificate (fedbroker pki request / sign)"
            )
        moment = now or datetime.datetime.now(datetime.UTC)
        if moment < not_before:
            raise AuthenticationFailed(
                f"the certificate of {node_id} is not valid yet: valid from {not_before:%Y-%m-%d %H:%M} UTC"
            )
        if moment > not_after:
            raise AuthenticationFailed(f"the certificate of {node_id} expired on {not_after:%Y-%m-%d %H:%M} UTC")

    def __call__(self, node_id: str, message: bytes, signature: bytes) -> bool:
        return self.verify(node_id, message, signature)


def _verify_with_key(public_key: object, message: bytes, signature: bytes) -> bool:
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(public_key.curve, ec.SECP256R1):
        return False
    try:
        public_key.verify(signature, message, _SIGNATURE_ALGORITHM)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


__all__ = [
    "NODE_ID_PATTERN",
    "Identity",
    "Roster",
    "Verifier",
    "certificate_id",
    "check_certificate",
    "is_node_id",
    "require_node_id",
    "verify_signature",
]
