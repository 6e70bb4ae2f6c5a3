"""What the two roles exchange, and the exact bytes that get signed (docs/protocol.md, "Signature framing").

Ids are UTF-8 strings ordered by their UTF-8 bytes (``"v > u"`` compares bytes). Signatures are made by the
caller's :data:`Signer` (ECDSA P-256 / SHA-256, DER) over a message built here:

* ``tag ‖ field₁ ‖ field₂ ‖ ...`` where the tag is the ASCII string, without a length, and every field is
  preceded by its length as a 4-byte big-endian unsigned integer;
* advert: tag ``fedbroker/v1 advert``; fields: round id (16 bytes), sha256 of the signed query (32 bytes),
  the node's id (UTF-8), c public key (32 bytes, raw X25519), s public key (32 bytes, raw X25519);
* survivors (consistency): tag ``fedbroker/v1 survivors``; fields: round id, then every id of U3 (UTF-8) in
  ascending byte order.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from federation.errors import RoundError

__all__ = [
    "ADVERT_TAG",
    "SURVIVORS_TAG",
    "Advert",
    "EncryptedShare",
    "RevealedShare",
    "SecretKind",
    "Signer",
    "Verifier",
    "advert_message",
    "sorted_ids",
    "survivors_message",
]

Signer = Callable[[bytes], bytes]
"""Signs a message with this node's identity key (ECDSA P-256 / SHA-256); returns the DER signature."""

Verifier = Callable[[str, bytes, bytes], bool]
"""``(node_id, message, signature) -> valid?`` against that node's certificate in the federation roster."""

ADVERT_TAG = b"fedbroker/v1 advert"
SURVIVORS_TAG = b"fedbroker/v1 survivors"


def _length_prefixed(tag: bytes, fields: Iterable[bytes]) -> bytes:
    parts = [tag]
    for field in fields:
        parts.append(struct.pack(">I", len(field)))
        parts.append(field)
    return b"".join(parts)


def sorted_ids(ids: Iterable[str]) -> list[str]:
    """The ids in ascending order of their UTF-8 bytes (the protocol's only order)."""
    return sorted(ids, key=lambda node_id: node_id.encode("utf-8"))


def advert_message(round_id: bytes, query_hash: bytes, node_id: str, c_public: bytes, s_public: bytes) -> bytes:
    """The bytes an adapter signs over its advert (see module doc for the layout)."""
    return _length_prefixed(
        ADVERT_TAG, (bytes(round_id), bytes(query_hash), node_id.encode("utf-8"), c_public, s_public)
    )


def survivors_message(round_id: bytes, survivors: Sequence[str]) -> bytes:
    """The bytes an adapter signs over U3: round id then the ids sorted by UTF-8 bytes, length-prefixed.

    Raises :class:`RoundError` if an id appears twice (a set with duplicates is not a survivor set).
    """
    ordered = sorted_ids(survivors)
    if len(set(ordered)) != len(ordered):
        raise RoundError(f"survivor set lists an id twice: {ordered}")
    return _length_prefixed(SURVIVORS_TAG, [bytes(round_id), *(s.encode("utf-8") for s in ordered)])


@dataclass(frozen=True)
class Advert:
    """Stage 1 answer: a node's two fresh X25519 public keys (raw, 32 bytes each), signed over
    :func:`advert_message`. ``c_public`` encrypts shares, ``s_public`` derives pairwise masks."""

    node_id: str
    c_public: bytes
    s_public: bytes
    signature: bytes


@dataclass(frozen=True)
class EncryptedShare:
    """Stage 2: one sender's Shamir shares for one recipient, relayed (unreadable) by the broker.

    ``nonce`` is 12 random bytes; ``ciphertext`` is the AES-128-GCM ciphertext of the 48-byte share
    plaintext followed by the 16-byte tag (64 bytes); see :mod:`federation.secagg.keys`.
    """

    sender: str
    recipient: str
    nonce: bytes
    ciphertext: bytes


class SecretKind(enum.Enum):
    """Which secret of ``owner`` a revealed share belongs to."""

    SELF_MASK_SEED = 1
    MASK_KEY = 2


@dataclass(frozen=True)
class RevealedShare:
    """Stage 5: a responder's Shamir share of ``owner``'s secret.

    ``index`` is the responder's share index (1-based position in U1 sorted by id). ``share`` is 16 bytes
    for :attr:`SecretKind.SELF_MASK_SEED` (b_owner) or 32 bytes for :attr:`SecretKind.MASK_KEY` (the share
    of key bytes 0–15 followed by the share of key bytes 16–31).
    """

    owner: str
    secret: SecretKind
    index: int
    share: bytes
