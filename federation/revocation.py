"""The federation CA's certificate revocation list, as every node checks it.

A node whose roster names a CRL (``pki.crl``) loads it at start-up (ConfigError if it is unreadable or not
signed by the federation CA) and re-reads it whenever the file changes, so a revocation takes effect without
restarting anyone: publish the new ``crl.pem`` to every host. A CRL that fails to load later (a half-copied
file) is logged and the previous one stays in force; a CRL past its ``nextUpdate`` stays in force too, with a
warning, because refusing everyone would take the federation down for a late publication.
"""

from __future__ import annotations

import datetime
import logging
import os
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from federation.errors import ConfigError

log = logging.getLogger(__name__)


def load_crl(pem: bytes, ca_pem: bytes, *, source: str) -> frozenset[int]:
    """The revoked serial numbers of a PEM CRL issued and signed by the CA; ConfigError otherwise."""
    try:
        crl = x509.load_pem_x509_crl(pem)
        ca = x509.load_pem_x509_certificate(ca_pem)
    except ValueError:
        raise ConfigError(f"{source}: not a PEM certificate revocation list; publish the CA's crl.pem") from None
    public_key = ca.public_key()
    if crl.issuer != ca.subject or not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise ConfigError(f"{source}: the CRL was not issued by the federation CA {ca.subject.rfc4514_string()}")
    if not crl.is_signature_valid(public_key):
        raise ConfigError(f"{source}: the CRL's signature does not verify against the federation CA")
    return frozenset(entry.serial_number for entry in crl)


class RevocationList:
    """Revoked serials of the federation CA, reloaded when the CRL file's mtime or size changes."""

    def __init__(self, path: Path | None, ca_pem: bytes) -> None:
        self.path = path
        self._ca_pem = ca_pem
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._revoked: frozenset[int] = frozenset()
        if path is not None:
            self._revoked = self._read(path)

    @classmethod
    def empty(cls) -> RevocationList:
        return cls(None, b"")

    def revoked(self) -> frozenset[int]:
        """The serials revoked now (re-reading the CRL if it changed since the last call)."""
        if self.path is None:
            return self._revoked
        try:
            stat = os.stat(self.path)
        except OSError:
            log.warning("CRL %s cannot be read; keeping the revocations loaded before", self.path)
            return self._revoked
        if (stat.st_mtime_ns, stat.st_size) != self._stamp:
            with self._lock:
                try:
                    self._revoked = self._read(self.path)
                except ConfigError as error:
                    log.warning("%s; keeping the revocations loaded before", error.message)
        return self._revoked

    def is_revoked(self, cert: x509.Certificate) -> bool:
        return cert.serial_number in self.revoked()

    def _read(self, path: Path) -> frozenset[int]:
        try:
            stat = os.stat(path)
            pem = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the CRL ({exc.strerror}); fix pki.crl in the roster") from exc
        revoked = load_crl(pem, self._ca_pem, source=str(path))
        crl = x509.load_pem_x509_crl(pem)
        next_update = crl.next_update_utc
        if next_update is not None and next_update < datetime.datetime.now(datetime.UTC):
            log.warning(
                "CRL %s is past its nextUpdate (%s): publish a fresh one (fedbroker pki revoke)", path, next_update
            )
        self._stamp = (stat.st_mtime_ns, stat.st_size)
        return revoked
