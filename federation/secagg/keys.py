"""Key agreement, share encryption and Shamir sharing of docs/protocol.md, "Secure aggregation", with pycryptodome.

Pinned constructions (any second implementation of either role must match them byte for byte):

* X25519 per RFC 7748: a private key is its raw 32-byte scalar string (before clamping), a public key its
  raw 32-byte u-coordinate.
* ``s_uv = HKDF-SHA256(X25519(s_u, s_v), salt = round id, info = "fedbroker/v1 pair-mask")``, 16 bytes;
  ``k_uv = HKDF-SHA256(X25519(c_u, c_v), salt = round id, info = "fedbroker/v1 share-key")``, 16 bytes.
* Share plaintext, 48 bytes, all at the recipient's share index::

      b-share (16) ‖ share of mask key bytes 0–15 (16) ‖ share of mask key bytes 16–31 (16)

* Share encryption: AES-128-GCM under ``k_uv``, a random 12-byte nonce, associated data
  ``round id ‖ sender id (UTF-8) ‖ recipient id (UTF-8)``; the ciphertext field carries the 48 ciphertext
  bytes followed by the 16-byte tag.
* Shamir: pycryptodome ``Shamir.split(t, n, secret)`` over GF(2^128), ``ssss=False``; a party's index is its
  1-based position in U1 sorted by UTF-8 bytes; a 32-byte key is shared as two 16-byte chunks under the
  same indices.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from Crypto.Cipher import AES
from Crypto.Hash import SHA256
from Crypto.Protocol.DH import import_x25519_private_key, import_x25519_public_key, key_agreement
from Crypto.Protocol.KDF import HKDF
from Crypto.Protocol.SecretSharing import Shamir
from Crypto.PublicKey import ECC
from Crypto.Random import get_random_bytes

from federation.errors import AuthenticationFailed, RoundError
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


@dataclass(frozen=True)
class KeyPair:
    """A fresh X25519 key pair: ``private`` is the 32-byte scalar string, ``public`` the 32-byte u."""

    private: bytes = field(repr=False)  # never in a log line or a traceback's locals
    public: bytes

    @classmethod
    def generate(cls) -> KeyPair:
        key = ECC.generate(curve="Curve25519")
        return cls(private=key.seed, public=key.public_key().export_key(format="raw"))


def check_public_key(public: bytes) -> None:
    """Raise ``ValueError`` unless ``public`` is a 32-byte X25519 public key pycryptodome accepts."""
    if len(public) != KEY_BYTES:
        raise ValueError(f"an X25519 public key is {KEY_BYTES} bytes, got {len(public)}")
    import_x25519_public_key(bytes(public))


def public_from_private(private: bytes) -> bytes:
    """The raw public key of a raw 32-byte X25519 private key."""
    key = import_x25519_private_key(bytes(private))
    public: bytes = key.public_key().export_key(format="raw")
    return public


def _agree(private: bytes, public: bytes, round_id: bytes, info: bytes) -> bytes:
    """HKDF-SHA256(X25519(private, public), salt = round id, info), 16 bytes."""

    def kdf(shared_secret: bytes) -> bytes:
        return HKDF(bytes(shared_secret), _DERIVED_KEY_BYTES, bytes(round_id), SHA256, context=info)

    return key_agreement(
        kdf=kdf,
        static_priv=import_x25519_private_key(bytes(private)),
        static_pub=import_x25519_public_key(bytes(public)),
    )


def pair_mask_seed(private: bytes, public: bytes, round_id: bytes) -> bytes:
    """``s_uv``: the 16-byte PRG seed shared by u (``private``) and v (``public``) in this round."""
    return _agree(private, public, round_id, PAIR_MASK_INFO)


def share_key(private: bytes, public: bytes, round_id: bytes) -> bytes:
    """``k_uv``: the 16-byte AES-128-GCM key that encrypts shares between u and v in this round."""
    return _agree(private, public, round_id, SHARE_KEY_INFO)


def _associated_data(round_id: bytes, sender: str, recipient: str) -> bytes:
    return bytes(round_id) + sender.encode("utf-8") + recipient.encode("utf-8")


def encrypt_share(key: bytes, round_id: bytes, sender: str, recipient: str, plaintext: bytes) -> EncryptedShare:
    """Encrypt a 48-byte share plaintext from ``sender`` to ``recipient`` (see module doc)."""
    if len(plaintext) != SHARE_PLAINTEXT_BYTES:
        raise ValueError(f"a share plaintext is {SHARE_PLAINTEXT_BYTES} bytes, got {len(plaintext)}")
    nonce = get_random_bytes(NONCE_BYTES)
    cipher = AES.new(key, AES.MODE_GCM, nonce=nonce)
    cipher.update(_associated_data(round_id, sender, recipient))
    ciphertext, tag = cipher.encrypt_and_digest(plaintext)
    return EncryptedShare(sender=sender, recipient=recipient, nonce=nonce, ciphertext=ciphertext + tag)


def decrypt_share(key: bytes, round_id: bytes, share: EncryptedShare) -> bytes:
    """The 48-byte plaintext of ``share``; :class:`AuthenticationFailed` naming the sender if it does not
    authenticate (wrong key, altered bytes, or a sender/recipient/round other than the one it was made for)."""
    if len(share.nonce) != NONCE_BYTES or len(share.ciphertext) != SHARE_CIPHERTEXT_BYTES:
        raise AuthenticationFailed(
            f"share from {share.sender} to {share.recipient} is malformed: nonce {len(share.nonce)} bytes "
            f"(expected {NONCE_BYTES}), ciphertext {len(share.ciphertext)} bytes "
            f"(expected {SHARE_CIPHERTEXT_BYTES})"
        )
    cipher = AES.new(key, AES.MODE_GCM, nonce=bytes(share.nonce))
    cipher.update(_associated_data(round_id, share.sender, share.recipient))
    body = bytes(share.ciphertext)
    try:
        return cipher.decrypt_and_verify(body[:SHARE_PLAINTEXT_BYTES], body[SHARE_PLAINTEXT_BYTES:])
    except ValueError:
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
    if len(shares) < threshold:
        raise RoundError(f"{len(shares)} shares cannot rebuild a secret shared {threshold}-of-n")
    chosen = list(shares[:threshold])
    lengths = {len(share) for _, share in chosen}
    if len(lengths) != 1 or lengths.pop() not in (CHUNK_BYTES, KEY_BYTES):
        raise RoundError("shares of one secret must all be 16 or all be 32 bytes")
    if len({index for index, _ in chosen}) != len(chosen):
        raise RoundError("two shares of one secret carry the same index")
    width = len(chosen[0][1])
    return b"".join(
        Shamir.combine([(index, share[offset : offset + CHUNK_BYTES]) for index, share in chosen])
        for offset in range(0, width, CHUNK_BYTES)
    )
