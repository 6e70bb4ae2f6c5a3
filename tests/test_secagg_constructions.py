"""The pinned constructions of docs/protocol.md §7, checked against a second implementation (``cryptography``) so
that another implementation of either role would interoperate with ours."""

from __future__ import annotations

import secrets
import struct

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from federation.errors import AuthenticationFailed, RoundError
from federation.secagg import advert_message, survivors_message
from federation.secagg.keys import (
    KeyPair,
    combine_secret,
    decrypt_share,
    encrypt_share,
    pair_mask_seed,
    public_from_private,
    share_key,
    split_secrets,
)

ROUND_ID = bytes(range(16))


def reference_agree(private: bytes, public: bytes, info: bytes) -> bytes:
    shared = X25519PrivateKey.from_private_bytes(private).exchange(X25519PublicKey.from_public_bytes(public))
    return HKDF(algorithm=hashes.SHA256(), length=16, salt=ROUND_ID, info=info).derive(shared)


def test_key_pair_and_agreements_match_rfc7748_and_rfc5869() -> None:
    u, v = KeyPair.generate(), KeyPair.generate()
    assert len(u.private) == len(u.public) == 32
    assert X25519PrivateKey.from_private_bytes(u.private).public_key().public_bytes_raw() == u.public
    assert public_from_private(u.private) == u.public
    assert pair_mask_seed(u.private, v.public, ROUND_ID) == reference_agree(
        u.private, v.public, b"fedbroker/v1 pair-mask"
    )
    assert pair_mask_seed(u.private, v.public, ROUND_ID) == pair_mask_seed(v.private, u.public, ROUND_ID)
    assert share_key(u.private, v.public, ROUND_ID) == reference_agree(u.private, v.public, b"fedbroker/v1 share-key")
    assert share_key(u.private, v.public, ROUND_ID) != pair_mask_seed(u.private, v.public, ROUND_ID)


def test_share_encryption_is_aes_gcm_with_the_pinned_associated_data() -> None:
    key = secrets.token_bytes(16)
    plaintext = secrets.token_bytes(48)
    share = encrypt_share(key, ROUND_ID, "telecom-a", "health-1", plaintext)
    assert len(share.nonce) == 12 and len(share.ciphertext) == 64
    aad = ROUND_ID + b"telecom-a" + b"health-1"
    assert AESGCM(key).decrypt(share.nonce, share.ciphertext, aad) == plaintext
    assert decrypt_share(key, ROUND_ID, share) == plaintext
    nonce = secrets.token_bytes(12)
    theirs = type(share)(
        "health-1", "telecom-a", nonce, AESGCM(key).encrypt(nonce, plaintext, ROUND_ID + b"health-1telecom-a")
    )
    assert decrypt_share(key, ROUND_ID, theirs) == plaintext
    with pytest.raises(AuthenticationFailed, match="share from health-1 to telecom-a does not authenticate"):
        decrypt_share(key, bytes(16), theirs)


def test_share_plaintext_layout_and_shamir_indices() -> None:
    seed, mask_key = secrets.token_bytes(16), secrets.token_bytes(32)
    plaintexts = split_secrets(seed, mask_key, threshold=3, count=5)
    assert [len(p) for p in plaintexts] == [48] * 5
    # index i+1 holds: b-share ‖ key bytes 0–15 share ‖ key bytes 16–31 share
    chosen = [(i + 1, plaintexts[i]) for i in (4, 0, 2)]
    assert combine_secret([(i, p[:16]) for i, p in chosen], 3) == seed
    assert combine_secret([(i, p[16:]) for i, p in chosen], 3) == mask_key
    assert combine_secret([(i, p[16:32]) for i, p in chosen], 3) == mask_key[:16]
    with pytest.raises(RoundError, match="2 shares cannot rebuild a secret shared 3-of-n"):
        combine_secret(chosen[:2], 3)


def test_signed_message_layouts() -> None:
    c_public, s_public = bytes([1]) * 32, bytes([2]) * 32
    query_hash = bytes([3]) * 32

    def field(data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + data

    expected = (
        b"fedbroker/v1 advert"
        + field(ROUND_ID)
        + field(query_hash)
        + field("卫健委".encode())
        + field(c_public)
        + field(s_public)
    )
    assert advert_message(ROUND_ID, query_hash, "卫健委", c_public, s_public) == expected
    survivors = b"fedbroker/v1 survivors" + field(ROUND_ID) + field(b"Z") + field(b"a") + field("é".encode())
    assert survivors_message(ROUND_ID, ["é", "a", "Z"]) == survivors
    with pytest.raises(RoundError, match="lists an id twice"):
        survivors_message(ROUND_ID, ["a", "a"])
