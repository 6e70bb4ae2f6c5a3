"""The broker's side of one secure-aggregation round: it relays, sums and unmasks, and never sees an
unmasked individual vector.

Memory: one running sum of m uint64 cells; masked inputs are added chunk by chunk as they stream in. A sender's
stream is closed by its length: it is complete when exactly m cells arrived in order (the transport, mutual TLS,
authenticates every byte, so no payload digest is kept).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from federation.errors import (
    AuthenticationFailed,
    IntegrityFault,
    RoundAborted,
    RoundError,
    RoundReplayed,
    VectorMismatch,
)
from federation.secagg import keys
from federation.secagg._checks import (
    StageTracker,
    check_members,
    check_round_parameters,
    require_threshold,
    round_label,
)
from federation.secagg.messages import (
    Advert,
    EncryptedShare,
    RevealedShare,
    SecretKind,
    Verifier,
    advert_message,
    sorted_ids,
    survivors_message,
)
from federation.secagg.prg import apply_masks

__all__ = ["BrokerRound"]

_STAGES = ("created", "Open", "ShareKeys", "MaskedInput", "Consistency", "Unmask")
_CELL_BYTES = 8
_WIRE_DTYPE = np.dtype("<u8")


class BrokerRound:
    """The broker's side: never sees an unmasked individual vector.

    Every call validates fully before changing state, so after a refusal the driver may retry with the
    offending party left out (e.g. an advert with a bad signature).
    """

    def __init__(
        self,
        *,
        round_id: bytes,
        query_hash: bytes,
        participants: Sequence[str],
        threshold: int,
        length: int,
        verifier: Verifier,
    ) -> None:
        """``length`` is m, the vector length in uint64 cells; ``query_hash`` the sha256 of the signed query."""
        self._participants = check_round_parameters(round_id, query_hash, participants, threshold)
        if length < 1:
            raise VectorMismatch(f"vector length must be at least 1 cell, got {length}")
        self._round_id = bytes(round_id)
        self._query_hash = bytes(query_hash)
        self._threshold = threshold
        self._length = length
        self._verifier = verifier
        self._stage = StageTracker("broker", self._round_id, _STAGES)
        self._adverts: dict[str, Advert] = {}
        self._u1: list[str] = []
        self._u2: list[str] = []
        self._u3: list[str] = []
        self._signatures: dict[str, bytes] = {}
        self._reset_masked()

    def _reset_masked(self) -> None:
        self._sum: npt.NDArray[np.uint64] | None = None
        self._cells_received: dict[str, int] = {}
        self._finished: set[str] = set()
        self._failed: set[str] = set()

    @property
    def stage(self) -> str:
        """The last completed stage: created, Open, ShareKeys, MaskedInput, Consistency or Unmask."""
        return self._stage.current

    @property
    def round_id(self) -> bytes:
        return self._round_id

    @property
    def u1(self) -> list[str]:
        """Who answered Open with a valid advert, sorted by UTF-8 bytes."""
        return list(self._u1)

    @property
    def u2(self) -> list[str]:
        """Who sent shares, sorted by UTF-8 bytes."""
        return list(self._u2)

    @property
    def survivors(self) -> list[str]:
        """U3 so far: senders whose masked input arrived whole and checked, sorted by UTF-8 bytes."""
        return sorted_ids(self._finished)

    @property
    def adverts(self) -> list[Advert]:
        """The verified adverts of U1, in U1 order: what the driver forwards to every adapter in ShareKeys."""
        return [self._adverts[node_id] for node_id in self._u1]

    # -- Open / ShareKeys -------------------------------------------------------------------------------

    def receive_adverts(self, adverts: Sequence[Advert]) -> list[str]:
        """Verify the adverts of Open; return U1 sorted. A bad signature raises :class:`AuthenticationFailed`
        naming the node; fewer than t raises :class:`RoundAborted` naming Open and who is missing."""
        self._stage.require("receive_adverts", "created")
        ids = check_members([a.node_id for a in adverts], self._participants, "advert list", "the round's U")
        for advert in adverts:
            message = advert_message(self._round_id, self._query_hash, advert.node_id, advert.c_public, advert.s_public)
            if not self._verifier(advert.node_id, message, advert.signature):
                raise AuthenticationFailed(
                    f"advert of {advert.node_id} has a bad signature (not made by its identity key for "
                    "this round and query)"
                )
            try:
                keys.check_public_key(advert.c_public)
                keys.check_public_key(advert.s_public)
            except ValueError as exc:
                raise RoundError(f"advert of {advert.node_id} carries an unusable X25519 key: {exc}") from None
        require_threshold(self._round_id, "Open", ids, self._participants, self._threshold, "sent adverts")
        self._adverts = {a.node_id: a for a in adverts}
        self._u1 = ids
        self._stage.advance("Open")
        return list(ids)

    def route_shares(self, shares_by_sender: Mapping[str, Sequence[EncryptedShare]]) -> dict[str, list[EncryptedShare]]:
        """U2 = the senders (⊆ U1), each of which must send exactly one share to every other member of U1.
        Returns recipient -> the shares addressed to it, for recipients in U2; fewer than t senders raises
        :class:`RoundAborted` naming ShareKeys."""
        self._stage.require("route_shares", "Open")
        senders = check_members(list(shares_by_sender), self._u1, "share senders", "U1")
        for sender in senders:
            shares = shares_by_sender[sender]
            for share in shares:
                if share.sender != sender:
                    raise RoundError(f"{sender} relayed a share that claims to come from {share.sender}")
                if len(share.nonce) != keys.NONCE_BYTES or len(share.ciphertext) != keys.SHARE_CIPHERTEXT_BYTES:
                    raise RoundError(f"{sender} sent a malformed share for {share.recipient}")
            others = set(self._u1) - {sender}
            recipients = check_members([s.recipient for s in shares], others, f"shares of {sender}", "U1")
            missing = sorted_ids(others - set(recipients))
            if missing:
                raise RoundError(f"{sender} sent no share for {', '.join(missing)}")
        require_threshold(self._round_id, "ShareKeys", senders, self._u1, self._threshold, "sent shares")
        routed: dict[str, list[EncryptedShare]] = {recipient: [] for recipient in senders}
        for sender in senders:
            for share in shares_by_sender[sender]:
                if share.recipient in routed:
                    routed[share.recipient].append(share)
        self._u2 = senders
        self._stage.advance("ShareKeys")
        return routed

    # -- MaskedInput ------------------------------------------------------------------------------------

    def _check_streaming(self, call: str, sender: str) -> None:
        self._stage.require(call, "ShareKeys", "MaskedInput")
        if sender not in self._u2:
            raise RoundError(f"masked input from {sender}, who is not in U2 {self._u2}")
        if sender in self._finished:
            raise RoundError(f"masked input from {sender} is already complete")
        if sender in self._failed:
            raise RoundError(
                f"masked input from {sender} failed its checks and is part of the running sum; "
                "call discard_masked() and fetch the survivors again"
            )

    def add_masked_chunk(self, sender: str, offset: int, data: bytes | memoryview) -> None:
        """Add one chunk of ``sender``'s y (little-endian uint64 bytes) at ``offset`` cells into the running
        sum. Chunks of one sender must arrive in order, without gaps or overlap."""
        self._check_streaming("add_masked_chunk", sender)
        expected = self._cells_received.get(sender, 0)
        if offset != expected:
            raise VectorMismatch(f"chunk from {sender} starts at cell {offset}, expected cell {expected}")
        if len(data) % _CELL_BYTES:
            raise VectorMismatch(f"chunk from {sender} is {len(data)} bytes, not a whole number of uint64 cells")
        cells = len(data) // _CELL_BYTES
        if offset + cells > self._length:
            raise VectorMismatch(
                f"chunk from {sender} ends at cell {offset + cells}, past the vector length {self._length}"
            )
        if self._sum is None:
            self._sum = np.zeros(self._length, dtype=np.uint64)
        target = self._sum[offset : offset + cells]
        np.add(target, np.frombuffer(data, dtype=_WIRE_DTYPE), out=target)
        self._cells_received[sender] = offset + cells
        self._stage.advance("MaskedInput")

    def finish_masked(self, sender: str, length: int) -> None:
        """End ``sender``'s stream, whose header announced ``length`` cells: that must be m, and exactly m cells
        must have arrived; otherwise :class:`VectorMismatch` (the partial sum then needs :meth:`discard_masked`)."""
        self._check_streaming("finish_masked", sender)
        received = self._cells_received.get(sender, 0)
        problem = None
        if length != self._length:
            problem = f"announces {length} cells, the round's vector has {self._length}"
        elif received != length:
            problem = f"sent {received} cells of the {length} announced"
        if problem is not None:
            if received:
                self._failed.add(sender)
            raise VectorMismatch(f"masked input from {sender} {problem}")
        self._finished.add(sender)
        self._stage.advance("MaskedInput")

    def discard_masked(self) -> None:
        """Zero the running sum and forget every partial or complete sender (after a stream broke mid-way:
        the driver fetches the others again, whose y is the same for the same U2)."""
        self._stage.require("discard_masked", "ShareKeys", "MaskedInput")
        self._reset_masked()
        self._stage.advance("ShareKeys")

    # -- Consistency / Unmask ---------------------------------------------------------------------------

    def receive_consistency(self, signatures: Mapping[str, bytes]) -> dict[str, bytes]:
        """Verify each signature over U3 (the finished senders); needs at least t. Returns the signatures to
        hand every adapter in Unmask: exactly t of them (the first t signers by id), since each adapter needs t
        and checks every one it is given. A bad one raises :class:`AuthenticationFailed` naming its node."""
        self._stage.require("receive_consistency", "MaskedInput", "Consistency")
        if self._stage.current == "MaskedInput":
            partial = sorted_ids(set(self._cells_received) - self._finished)
            if partial:
                raise RoundError(
                    f"the running sum holds unfinished masked input from {', '.join(partial)}; "
                    "call discard_masked() and fetch the survivors again"
                )
            u3 = self.survivors
            require_threshold(self._round_id, "MaskedInput", u3, self._u2, self._threshold, "sent masked input")
        else:
            u3 = self._u3
        signers = check_members(list(signatures), u3, "consistency signatures", "U3")
        message = survivors_message(self._round_id, u3)
        for signer in signers:
            if not self._verifier(signer, message, signatures[signer]):
                raise AuthenticationFailed(f"consistency signature of {signer} over U3 does not verify")
        require_threshold(self._round_id, "Consistency", signers, u3, self._threshold, "signed U3")
        self._u3 = u3
        self._signatures = {signer: bytes(signatures[signer]) for signer in signers[: self._threshold]}
        self._stage.advance("Consistency")
        return dict(self._signatures)

    def _collect(
        self, revealed: Mapping[str, Sequence[RevealedShare]], dropped: set[str]
    ) -> dict[tuple[str, SecretKind], list[tuple[int, bytes]]]:
        collected: dict[tuple[str, SecretKind], list[tuple[int, bytes]]] = {}
        for responder in sorted_ids(revealed):
            index = self._u1.index(responder) + 1
            owners: set[str] = set()
            for share in revealed[responder]:
                if share.index != index:
                    raise RoundError(f"{responder} revealed a share with index {share.index}, its index is {index}")
                if share.owner in owners:
                    raise RoundError(f"{responder} revealed two shares of {share.owner}")
                owners.add(share.owner)
                if share.secret is SecretKind.SELF_MASK_SEED:
                    ok = share.owner in self._u3 and len(share.share) == keys.CHUNK_BYTES
                else:
                    ok = share.owner in dropped and len(share.share) == keys.KEY_BYTES
                if not ok:
                    raise RoundError(
                        f"{responder} revealed a {share.secret.name} share of {share.owner} "
                        f"({len(share.share)} bytes), which U3 = {self._u3} does not call for"
                    )
                collected.setdefault((share.owner, share.secret), []).append((index, bytes(share.share)))
        return collected

    def unmask(self, revealed: Mapping[str, Sequence[RevealedShare]]) -> npt.NDArray[np.uint64]:
        """Rebuild b_u for U3 and the mask keys of U2 \\ U3 (t shares each), remove every mask, and return
        Σ_{u∈U3} x_u mod 2^64 (1-D uint64, native order). Needs at least t responders from U3; once only."""
        if self._stage.current == "Unmask":
            raise RoundReplayed(f"round {round_label(self._round_id)} is already unmasked")
        self._stage.require("unmask", "Consistency")
        responders = check_members(list(revealed), self._u3, "Unmask responders", "U3")
        require_threshold(self._round_id, "Unmask", responders, self._u3, self._threshold, "answered Unmask")
        dropped = set(self._u2) - set(self._u3)
        collected = self._collect(revealed, dropped)
        wanted = [(owner, SecretKind.SELF_MASK_SEED) for owner in self._u3]
        wanted += [(owner, SecretKind.MASK_KEY) for owner in sorted_ids(dropped)]
        for owner, kind in wanted:
            count = len(collected.get((owner, kind), []))
            if count < self._threshold:
                raise RoundAborted(
                    f"round {round_label(self._round_id)} aborted at Unmask: {count} shares of "
                    f"{owner}'s {kind.name}, threshold is {self._threshold}"
                )
        # Honest responders reveal a share of every wanted secret, so sorted shares put the same t indices
        # first for all of them: one set of Lagrange coefficients serves the whole Unmask.
        secrets = keys.combine_secrets({w: sorted(collected[w]) for w in wanted}, self._threshold)
        masks: list[tuple[bytes, int]] = [(secrets[u, SecretKind.SELF_MASK_SEED], -1) for u in self._u3]
        for v in sorted_ids(dropped):
            key = secrets[v, SecretKind.MASK_KEY]
            if keys.public_from_private(key) != self._adverts[v].s_public:
                raise IntegrityFault(f"the rebuilt mask key of {v} does not match its advert: a share was corrupted")
            for u in self._u3:
                seed = keys.pair_mask_seed(key, self._adverts[u].s_public, self._round_id)
                # y_u added PRG(s_uv) when v > u and subtracted it when v < u: undo that.
                masks.append((seed, -1 if v.encode("utf-8") > u.encode("utf-8") else 1))
        total = self._sum
        if total is None:
            raise RoundError("no masked input was summed")
        apply_masks(total, masks)
        self._sum = None
        self._stage.advance("Unmask")
        return total
