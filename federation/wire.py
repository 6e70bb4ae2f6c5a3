"""Conversions between the wire messages (federation.v1) and the pure types (secure aggregation, catalog)."""

from __future__ import annotations

from collections.abc import Iterable

from federation.catalog.base import QueryKind
from federation.secagg import Advert, EncryptedShare, RevealedShare, SecretKind
from federation.v1 import adapter_pb2, broker_pb2

_SECRET_TO_PB = {
    SecretKind.SELF_MASK_SEED: adapter_pb2.RevealedShare.SELF_MASK_SEED,
    SecretKind.MASK_KEY: adapter_pb2.RevealedShare.MASK_KEY,
}
_SECRET_FROM_PB = {v: k for k, v in _SECRET_TO_PB.items()}


def advert_to_pb(advert: Advert) -> adapter_pb2.KeyAdvert:
    return adapter_pb2.KeyAdvert(
        node_id=advert.node_id,
        c_public=advert.c_public,
        s_public=advert.s_public,
        signature=advert.signature,
    )


def advert_from_pb(message: adapter_pb2.KeyAdvert) -> Advert:
    return Advert(
        node_id=message.node_id,
        c_public=message.c_public,
        s_public=message.s_public,
        signature=message.signature,
    )


def shares_to_pb(shares: Iterable[EncryptedShare]) -> list[adapter_pb2.EncryptedShare]:
    return [
        adapter_pb2.EncryptedShare(sender=s.sender, recipient=s.recipient, nonce=s.nonce, ciphertext=s.ciphertext)
        for s in shares
    ]


def shares_from_pb(messages: Iterable[adapter_pb2.EncryptedShare]) -> list[EncryptedShare]:
    return [
        EncryptedShare(sender=m.sender, recipient=m.recipient, nonce=m.nonce, ciphertext=m.ciphertext) for m in messages
    ]


def revealed_to_pb(shares: Iterable[RevealedShare]) -> list[adapter_pb2.RevealedShare]:
    return [
        adapter_pb2.RevealedShare(owner=s.owner, secret=_SECRET_TO_PB[s.secret], index=s.index, share=s.share)
        for s in shares
    ]


def revealed_from_pb(messages: Iterable[adapter_pb2.RevealedShare]) -> list[RevealedShare]:
    out: list[RevealedShare] = []
    for m in messages:
        secret = _SECRET_FROM_PB.get(m.secret)
        if secret is None:
            continue  # an unspecified secret kind carries nothing usable; the round's threshold decides
        out.append(RevealedShare(owner=m.owner, secret=secret, index=m.index, share=m.share))
    return out


def kinds_to_pb(kinds: Iterable[QueryKind]) -> list[broker_pb2.QueryKindSchema]:
    """The catalog's kinds with their parameter schema, as ``DescribeFederation`` returns them."""
    return [
        broker_pb2.QueryKindSchema(
            name=entry.name,
            summary=entry.summary,
            disclosure=entry.disclosure,
            aggregates=list(entry.aggregates),
            trailing_window=entry.trailing_window or "",
            params=[
                broker_pb2.ParamSchema(
                    name=p.name,
                    flag=p.flag,
                    type=p.type,
                    help=p.help,
                    default=p.default or "",
                    has_default=p.default is not None,
                    choices=list(p.choices),
                    minimum=p.minimum,
                    maximum=p.maximum,
                    minimum_exclusive=p.above,
                    required=p.required,
                )
                for p in entry.params
            ],
        )
        for entry in kinds
    ]
