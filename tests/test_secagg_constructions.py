"""The pinned constructions of secure aggregation, checked against two independent implementations
(pycryptodome and OpenSSL through ``cryptography``) so that another implementation of either role would
interoperate with ours, whichever library it uses."""

from __future__ import annotations

import secrets
import struct
from collections.abc import Callable

import pytest
from Crypto.Cipher import AES
from Crypto.Hash import SHA256
from Crypto.Protocol.DH import import_x25519_private_key, import_x25519_public_key, key_agreement
from Crypto.Protocol.KDF import HKDF as PycryptodomeHKDF
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from federation.errors import AuthenticationFailed, RoundError
from federation.secagg import advert_message, survivors_message
from federation.secagg.keys import (
    KeyPair,
    check_public_key,
    combine_secret,
    decrypt_share,
    encrypt_share,
    pair_mask_seed,
    public_from_private,
    share_key,
    split_secrets,
)

ROUND_ID = bytes(range(16))


def agree_cryptography(private: bytes, public: bytes, info: bytes) -> bytes:
    shared = X25519PrivateKey.from_private_bytes(private).exchange(X25519PublicKey.from_public_bytes(public))
    return HKDF(algorithm=hashes.SHA256(), length=16, salt=ROUND_ID, info=info).derive(shared)


def agree_pycryptodome(private: bytes, public: bytes, info: bytes) -> bytes:
    def kdf(shared: bytes) -> bytes:
        return PycryptodomeHKDF(shared, 16, ROUND_ID, SHA256, context=info)

    return key_agreement(
        kdf=kdf, static_priv=import_x25519_private_key(private), static_pub=import_x25519_public_key(public)
    )


def public_cryptography(private: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()


def public_pycryptodome(private: bytes) -> bytes:
    return import_x25519_private_key(private).public_key().export_key(format="raw")


REFERENCES = {
    "cryptography": (agree_cryptography, public_cryptography),
    "pycryptodome": (agree_pycryptodome, public_pycryptodome),
}


@pytest.mark.parametrize("library", sorted(REFERENCES))
def test_key_pair_and_agreements_match_rfc7748_and_rfc5869(library: str) -> None:
    reference_agree, reference_public = REFERENCES[library]
    u, v = KeyPair.generate(), KeyPair.generate()
    assert len(u.private) == len(u.public) == 32
    assert reference_public(u.private) == u.public
    assert public_from_private(u.private) == u.public
    assert pair_mask_seed(u.private, v.public, ROUND_ID) == reference_agree(
        u.private, v.public, b"fedbroker/v1 pair-mask"
    )
    assert pair_mask_seed(u.private, v.public, ROUND_ID) == pair_mask_seed(v.private, u.public, ROUND_ID)
    assert share_key(u.private, v.public, ROUND_ID) == reference_agree(u.private, v.public, b"fedbroker/v1 share-key")
    assert share_key(u.private, v.public, ROUND_ID) != pair_mask_seed(u.private, v.public, ROUND_ID)


def test_rfc7748_known_answer() -> None:
    # RFC 7748 §6.1: Alice's private key, Bob's public key and their shared secret.
    alice = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    alice_public = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
    bob_public = bytes.fromhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
    shared = bytes.fromhex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
    assert public_from_private(alice) == alice_public
    expected = HKDF(algorithm=hashes.SHA256(), length=16, salt=ROUND_ID, info=b"fedbroker/v1 pair-mask").derive(shared)
    assert pair_mask_seed(alice, bob_public, ROUND_ID) == expected


LOW_ORDER_U = [
    0,
    1,
    325606250916557431795983626356110631294008115727848805560023387167927233504,
    39382357235489614581723060781553021112529911719440698176882885853963445705823,
    2**255 - 20,
    2**255 - 19,
    2**255 - 18,
]


@pytest.mark.parametrize("u", LOW_ORDER_U)
def test_low_order_public_keys_are_refused_as_pycryptodome_refuses_them(u: int) -> None:
    for encoded in (u.to_bytes(32, "little"), (u | 1 << 255).to_bytes(32, "little")):
        with pytest.raises(ValueError, match="small order"):
            check_public_key(encoded)
        with pytest.raises(ValueError):
            import_x25519_public_key(encoded)


def test_ordinary_public_keys_are_accepted_by_both_libraries() -> None:
    for public in [KeyPair.generate().public for _ in range(20)] + [b"\xff" * 32, (2**255 - 17).to_bytes(32, "little")]:
        check_public_key(public)
        import_x25519_public_key(public)
    with pytest.raises(ValueError, match="32 bytes, got 31"):
        check_public_key(bytes(31))


def gcm_pycryptodome(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    cipher = AES.new(key, AES.MODE_GCM, nonce=nonce)
    cipher.update(aad)
    ciphertext, tag = cipher.encrypt_and_digest(plaintext)
    return ciphertext + tag


def gcm_cryptography(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    return AESGCM(key).encrypt(nonce, plaintext, aad)


GCM: dict[str, Callable[[bytes, bytes, bytes, bytes], bytes]] = {
    "cryptography": gcm_cryptography,
    "pycryptodome": gcm_pycryptodome,
}


@pytest.mark.parametrize("library", sorted(GCM))
def test_share_encryption_is_aes_gcm_with_the_pinned_associated_data(library: str) -> None:
    encrypt = GCM[library]
    key = secrets.token_bytes(16)
    plaintext = secrets.token_bytes(48)
    share = encrypt_share(key, ROUND_ID, "telecom-a", "health-1", plaintext)
    assert len(share.nonce) == 12 and len(share.ciphertext) == 64
    aad = ROUND_ID + b"telecom-a" + b"health-1"
    assert encrypt(key, share.nonce, plaintext, aad) == share.ciphertext
    assert decrypt_share(key, ROUND_ID, share) == plaintext
    nonce = secrets.token_bytes(12)
    theirs = type(share)(
        "health-1", "telecom-a", nonce, encrypt(key, nonce, plaintext, ROUND_ID + b"health-1telecom-a")
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
