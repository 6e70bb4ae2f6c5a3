"""Key agreement, share encryption and Shamir sharing of secure aggregation.

X25519, HKDF-SHA256 and AES-128-GCM are OpenSSL's, through ``cryptography`` (X25519 about 4x faster than
pycryptodome's); Shamir sharing is pycryptodome's over its GF(2^128), which pins the share bytes. The tests check
every construction against pycryptodome as a second implementation.

Pinned constructions (any second implementation of either role must match them byte for byte):

* X25519 per RFC 7748: a private key is its raw 32-byte scalar string (before clamping), a public key its
  raw 32-byte u-coordinate. A public key whose u (bit 255 cleared, reduced mod 2^255 − 19) is a point of order
  dividing 8 (u ∈ {0, 1, p − 1} and the two points of order 8) is refused: every agreement with it is zero.
* ``s_uv = HKDF-SHA256(X25519(s_u, s_v), salt = round id, info = "fedbroker/v1 pair-mask")``, 16 bytes;
  ``k_uv = HKDF-SHA256(X25519(c_u, c_v), salt = round id, info = "fedbroker/v1 share-key")``, 16 bytes.
* Share plaintext, 48 bytes, all at the recipient's share index::

      b-share (16) ‖ share of mask key bytes 0–15 (16) ‖ share of mask key bytes 16–31 (16)

* Share encryption: AES-128-GCM under ``k_uv``, a random 12-byte nonce, associated data
  ``round id ‖ sender id (UTF-8) ‖ recipient id (UTF-8)``; the ciphertext field carries the 48 ciphertext
  bytes followed by the 16-byte tag.
* Shamir: pycryptodome ``Shamir.split(t, n, secret)`` over GF(2^128), ``ssss=False``; a party's index is its
  1-based position in U1 sorted by UTF-8 bytes; a 32-byte key is shared as two 16-byte chunks under the
  same indices. Shares are recombined in the same field by :mod:`federation.secagg.shamir` (equal to
  ``Shamir.combine``, many secrets at the cost of one set of Lagrange coefficients).
"""

from __future__ import annotations

import secrets
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from Crypto.Protocol.SecretSharing import Shamir
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from federation.errors import AuthenticationFailed, RoundError
from federation.secagg import shamir
from federation.secagg.messages import EncryptedShare

__all__ = [
    "CHUNK_BYTES",
    "KEY_BYTES",
    "NONCE_BYTES",
    "PAIR_MASK_INFO",
    "SHARE_CIPHERTEXT_BYTES",
    "SHARE_KEY_INFO",
    "SHARE_PLAINTEXT_BYTES",
    "KeyPair",
    "check_public_key",
    "combine_secret",
    "combine_secrets",
    "decrypt_share",
    "encrypt_share",
    "pair_mask_seed",
    "public_from_private",
    "share_key",
    "split_secrets",
]

PAIR_MASK_INFO = b"fedbroker/v1 pair-mask"
SHARE_KEY_INFO = b"fedbroker/v1 share-key"
KEY_BYTES = 32
"""Raw X25519 private and public key length."""
CHUNK_BYTES = 16
"""Shamir secret/share length (pycryptodome shares 16-byte secrets)."""
NONCE_BYTES = 12
_TAG_BYTES = 16
SHARE_PLAINTEXT_BYTES = 3 * CHUNK_BYTES
SHARE_CIPHERTEXT_BYTES = SHARE_PLAINTEXT_BYTES + _TAG_BYTES
_DERIVED_KEY_BYTES = 16
SecretT = TypeVar("SecretT", bound=Hashable)
_FIELD_PRIME = 2**255 - 19
# u-coordinates of the points of order 1, 2, 4 and 8 on Curve25519 (RFC 7748 §6.1: their agreements are zero).
_LOW_ORDER_U = frozenset(
    {
        0,
        1,
        325606250916557431795983626356110631294008115727848805560023387167927233504,
        39382357235489614581723060781553021112529911719440698176882885853963445705823,
        _FIELD_PRIME - 1,
    }
)


@dataclass(frozen=True)
class KeyPair:
    """A fresh X25519 key pair: ``private`` is the 32-byte scalar string, ``public`` the 32-byte u, ``key``
    the loaded private key (kept so that each agreement skips re-deriving it from the bytes)."""

    private: bytes = field(repr=False)  # never in a log line or a traceback's locals
    public: bytes
    key: X25519PrivateKey = field(repr=False, compare=False)

    @classmethod
    def generate(cls) -> KeyPair:
        key = X25519PrivateKey.generate()
        return cls(private=key.private_bytes_raw(), public=key.public_key().public_bytes_raw(), key=key)


def check_public_key(public: bytes) -> None:
    """Raise ``ValueError`` unless ``public`` is 32 bytes and not a low-order point (see module doc); the same
    keys pycryptodome's ``import_x25519_public_key`` refuses."""
    if len(public) != KEY_BYTES:
        raise ValueError(f"an X25519 public key is {KEY_BYTES} bytes, got {len(public)}")
    u = (int.from_bytes(public, "little") & ((1 << 255) - 1)) % _FIELD_PRIME
    if u in _LOW_ORDER_U:
        raise ValueError("the X25519 public key is a point of small order (every agreement with it is zero)")


def public_from_private(private: bytes) -> bytes:
    """The raw public key of a raw 32-byte X25519 private key."""
    return X25519PrivateKey.from_private_bytes(bytes(private)).public_key().public_bytes_raw()


PrivateKey = bytes | X25519PrivateKey
"""A raw 32-byte X25519 private key, or the loaded key (:attr:`KeyPair.key`)."""


def _agree(private: PrivateKey, public: bytes, round_id: bytes, info: bytes) -> bytes:
    """HKDF-SHA256(X25519(private, public), salt = round id, info), 16 bytes.

    ``ValueError`` for a low-order ``public`` (OpenSSL refuses the all-zero shared secret)."""
    key = private if isinstance(private, X25519PrivateKey) else X25519PrivateKey.from_private_bytes(bytes(private))
    shared = key.exchange(X25519PublicKey.from_public_bytes(bytes(public)))
    return HKDF(algorithm=hashes.SHA256(), length=_DERIVED_KEY_BYTES, salt=bytes(round_id), info=info).derive(shared)


def pair_mask_seed(private: PrivateKey, public: bytes, round_id: bytes) -> bytes:
    """``s_uv``: the 16-byte PRG seed shared by u (``private``) and v (``public``) in this round."""
    return _agree(private, public, round_id, PAIR_MASK_INFO)


def share_key(private: PrivateKey, public: bytes, round_id: bytes) -> bytes:
    """``k_uv``: the 16-byte AES-128-GCM key that encrypts shares between u and v in this round."""
    return _agree(private, public, round_id, SHARE_KEY_INFO)


def _associated_data(round_id: bytes, sender: str, recipient: str) -> bytes:
    return bytes(round_id) + sender.encode("utf-8") + recipient.encode("utf-8")


def encrypt_share(key: bytes, round_id: bytes, sender: str, recipient: str, plaintext: bytes) -> EncryptedShare:
    """Encrypt a 48-byte share plaintext from ``sender`` to ``recipient`` (see module doc)."""
    if len(plaintext) != SHARE_PLAINTEXT_BYTES:
        raise ValueError(f"a share plaintext is {SHARE_PLAINTEXT_BYTES} bytes, got {len(plaintext)}")
    nonce = secrets.token_bytes(NONCE_BYTES)
    ciphertext = AESGCM(bytes(key)).encrypt(nonce, plaintext, _associated_data(round_id, sender, recipient))
    return EncryptedShare(sender=sender, recipient=recipient, nonce=nonce, ciphertext=ciphertext)


def decrypt_share(key: bytes, round_id: bytes, share: EncryptedShare) -> bytes:
    """The 48-byte plaintext of ``share``; :class:`AuthenticationFailed` naming the sender if it does not
    authenticate (wrong key, altered bytes, or a sender/recipient/round other than the one it was made for)."""
    if len(share.nonce) != NONCE_BYTES or len(share.ciphertext) != SHARE_CIPHERTEXT_BYTES:
        raise AuthenticationFailed(
            f"share from {share.sender} to {share.recipient} is malformed: nonce {len(share.nonce)} bytes "
            f"(expected {NONCE_BYTES}), ciphertext {len(share.ciphertext)} bytes "
            f"(expected {SHARE_CIPHERTEXT_BYTES})"
        )
    associated = _associated_data(round_id, share.sender, share.recipient)
    try:
        return AESGCM(bytes(key)).decrypt(bytes(share.nonce), bytes(share.ciphertext), associated)
    except InvalidTag:
        raise AuthenticationFailed(
            f"share from {share.sender} to {share.recipient} does not authenticate "
            "(altered in transit, or not made by the sender for this round)"
        ) from None


def split_secrets(self_mask_seed: bytes, mask_key: bytes, threshold: int, count: int) -> list[bytes]:
    """Shamir-share b_u (16 bytes) and the mask private key (32 bytes) t-of-``count``.

    Returns ``count`` 48-byte share plaintexts; item ``i`` belongs to share index ``i + 1``.
    """
    if len(self_mask_seed) != CHUNK_BYTES or len(mask_key) != KEY_BYTES:
        raise ValueError("b_u is 16 bytes and the mask key 32 bytes")
    split = [
        Shamir.split(threshold, count, secret)
        for secret in (self_mask_seed, mask_key[:CHUNK_BYTES], mask_key[CHUNK_BYTES:])
    ]
    plaintexts = []
    for position in range(count):
        for shares in split:
            if shares[position][0] != position + 1:
                raise AssertionError("pycryptodome Shamir returned shares out of index order")
        plaintexts.append(b"".join(shares[position][1] for shares in split))
    return plaintexts


def combine_secret(shares: Sequence[tuple[int, bytes]], threshold: int) -> bytes:
    """Rebuild a 16- or 32-byte secret from ``(index, share)`` pairs, using the first ``threshold`` of them.

    A 32-byte share is two chunks combined separately. Raises :class:`RoundError` if fewer than
    ``threshold`` shares are given, indices repeat, or share lengths differ.
    """
    return combine_secrets({None: shares}, threshold)[None]


def combine_secrets(
    shares_by_secret: Mapping[SecretT, Sequence[tuple[int, bytes]]], threshold: int
) -> dict[SecretT, bytes]:
    """:func:`combine_secret` for many secrets at once: each from the first ``threshold`` of its
    ``(index, share)`` pairs. Secrets rebuilt from the same indices share one set of Lagrange coefficients
    (see :mod:`federation.secagg.shamir`); the result equals pycryptodome's ``Shamir.combine`` per chunk."""
    coefficients: dict[tuple[int, ...], list[int]] = {}
    secrets_out: dict[SecretT, bytes] = {}
    for name, shares in shares_by_secret.items():
        if len(shares) < threshold:
            raise RoundError(f"{len(shares)} shares cannot rebuild a secret shared {threshold}-of-n")
        chosen = list(shares[:threshold])
        lengths = {len(share) for _, share in chosen}
        if len(lengths) != 1 or lengths.pop() not in (CHUNK_BYTES, KEY_BYTES):
            raise RoundError("shares of one secret must all be 16 or all be 32 bytes")
        indices = tuple(index for index, _ in chosen)
        if len(set(indices)) != len(indices):
            raise RoundError("two shares of one secret carry the same index")
        if indices not in coefficients:
            try:
                coefficients[indices] = shamir.lagrange_at_zero(indices)
            except ValueError as exc:
                raise RoundError(f"shares carry unusable indices: {exc}") from None
        width = len(chosen[0][1])
        secrets_out[name] = b"".join(
            shamir.combine_with_indices(
                coefficients[indices], [share[offset : offset + CHUNK_BYTES] for _, share in chosen]
            )
            for offset in range(0, width, CHUNK_BYTES)
        )
    return secrets_out
