"""Secure aggregation (docs/protocol.md, "Secure aggregation"): the pure library of both roles, with no gRPC import.

:class:`AdapterRound` is one agency's side of a round, :class:`BrokerRound` the broker's. Signatures are made
and checked by callables the caller provides (:data:`Signer`, :data:`Verifier`); X25519, HKDF-SHA256, AES-128-GCM
and the AES-128-CTR mask PRG are OpenSSL's (through ``cryptography``), Shamir over GF(2^128) is pycryptodome's.
"""

from federation.secagg.adapter import AdapterRound
from federation.secagg.broker import BrokerRound
from federation.secagg.messages import (
    Advert,
    EncryptedShare,
    RevealedShare,
    SecretKind,
    Signer,
    Verifier,
    advert_message,
    sorted_ids,
    survivors_message,
)
from federation.secagg.prg import apply_masks, prg

__all__ = [
    "AdapterRound",
    "Advert",
    "BrokerRound",
    "EncryptedShare",
    "RevealedShare",
    "SecretKind",
    "Signer",
    "Verifier",
    "advert_message",
    "apply_masks",
    "prg",
    "sorted_ids",
    "survivors_message",
]
