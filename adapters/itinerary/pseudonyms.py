"""Numbers in the audit log: HMAC-SHA256 under a secret key of the node, never the number itself.

The key (32 random bytes, hex, mode 0600) lives beside the node's audit log as ``<log name>.number-key`` and is
created on first use. Whoever holds only the log sees the same pseudonym for every request about one number
(so repeated tries and limits can be followed) but cannot test a guessed number; whoever also holds the key
(the carrier, which holds the subscriber table anyway) can.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from federation.errors import ConfigError

__all__ = ["NumberPseudonyms", "key_path_for"]

_KEY_BYTES = 32


def key_path_for(audit_log: Path) -> Path:
    """Where the number key of the node whose audit log is ``audit_log`` is kept."""
    return audit_log.with_name(audit_log.stem + ".number-key")


class NumberPseudonyms:
    """Keyed pseudonyms of numbers: ``hmac_sha256(key, msisdn)`` as 64 hex digits."""

    def __init__(self, key_path: Path) -> None:
        self.key_path = key_path
        self._key = _load_or_create(key_path)

    def of(self, msisdn: str) -> str:
        return hmac.new(self._key, msisdn.encode("utf-8"), hashlib.sha256).hexdigest()


def _load_or_create(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as stream:
            stream.write(secrets.token_hex(_KEY_BYTES) + "\n")
    try:
        text = path.read_text(encoding="ascii").strip()
        key = bytes.fromhex(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(
            f"{path}: cannot read the audit number key ({exc}); restore it (or move it aside to start new "
            "pseudonyms, which no longer match older audit entries)"
        ) from exc
    if len(key) != _KEY_BYTES:
        raise ConfigError(f"{path}: the audit number key must be {_KEY_BYTES} bytes as hex; restore the file")
    return key
