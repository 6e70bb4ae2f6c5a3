"""One agency's side of one secure-aggregation round (docs/protocol.md, "Secure aggregation", Bonawitz et al. CCS 2017).

The adapter never lets its vector x_u leave unmasked: it releases only
``y_u = x_u + PRG(b_u) + Σ_{v∈U2, v>u} PRG(s_uv) − Σ_{v∈U2, v<u} PRG(s_uv)`` (mod 2^64), and in Unmask
reveals, once, either b-shares (for members of U3) or mask-key shares (for U2 \\ U3) of each party, never
both, and only after at least t members of U3 signed the same U3 it signed.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from federation.errors import AuthenticationFailed, RoundError, RoundReplayed, VectorMismatch
from federation.secagg import keys
from federation.secagg._checks import (
    StageTracker,
    check_members,
    check_round_parameters,
    require_threshold,
)
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
from federation.secagg.prg import SEED_BYTES, apply_masks

__all__ = ["AdapterRound"]

_STAGES = ("created", "Open", "ShareKeys", "MaskedInput", "Consistency", "Unmask")


class AdapterRound:
    """One agency's side of one round. Stages must be called in order; each refuses out of order.

    Retries are safe: ``advertise``, ``share_keys`` (same adverts), ``masked_input`` (same U2 and shares) and
    ``sign_survivors`` (same U3) return the same answer when repeated; repeating with different inputs
    raises :class:`RoundReplayed`, and ``unmask`` answers once.
    """

    def __init__(
        self,
        *,
        node_id: str,
        round_id: bytes,
        query_hash: bytes,
        participants: Sequence[str],
        threshold: int,
        vector: npt.NDArray[np.uint64],
        signer: Signer,
        verifier: Verifier,
    ) -> None:
        """``vector`` is x_u: 1-D uint64 (native byte order). The round keeps a reference, not a copy:
        the caller must not change it before the round ends. ``query_hash`` is the sha256 of the signed query.
        """
        self._participants = check_round_parameters(round_id, query_hash, participants, threshold)
        if node_id not in self._participants:
            raise RoundError(f"{node_id} is not among the round's participants {self._participants}")
        if vector.dtype != np.uint64 or vector.ndim != 1:
            raise VectorMismatch(f"x_u must be a 1-D uint64 vector, got dtype {vector.dtype} {vector.shape}")
        self._node_id = node_id
        self._round_id = bytes(round_id)
        self._query_hash = bytes(query_hash)
        self._threshold = threshold
        self._vector = vector
        self._signer = signer
        self._verifier = verifier
        self._stage = StageTracker(f"adapter {node_id}", self._round_id, _STAGES)
        self._c_key = keys.KeyPair.generate()
        self._s_key = keys.KeyPair.generate()
        self._advert: Advert | None = None
        # Set by share_keys:
        self._u1: list[str] = []
        self._adverts: dict[str, Advert] = {}
        self._own_plaintext = b""
        self._self_mask_seed = b""
        self._outgoing: list[EncryptedShare] = []
        self._share_keys: dict[str, bytes] = {}  # peer -> k_uv
        self._pair_seeds: dict[str, bytes] = {}  # peer in U2 -> s_uv
        # Set by masked_input:
        self._u2: list[str] = []
        self._incoming_shares: frozenset[EncryptedShare] = frozenset()
        self._held: dict[str, bytes] = {}  # owner -> 48-byte share plaintext at my index
        # Set by sign_survivors:
        self._u3: list[str] = []
        self._survivors_signature = b""

    @property
    def stage(self) -> str:
        """The last completed stage: created, Open, ShareKeys, MaskedInput, Consistency or Unmask."""
        return self._stage.current

    @property
    def node_id(self) -> str:
        return self._node_id

    @property
    def round_id(self) -> bytes:
        return self._round_id

    def _index(self, node_id: str) -> int:
        """Share index: 1-based position in U1 sorted by UTF-8 bytes."""
        return self._u1.index(node_id) + 1

    # -- stage 1 ----------------------------------------------------------------------------------------

    def advertise(self) -> Advert:
        """Stage 1 (Open): the two fresh public keys, signed. Repeating returns the same advert."""
        self._stage.require("advertise", "created", "Open")
        if self._advert is None:
            message = advert_message(
                self._round_id, self._query_hash, self._node_id, self._c_key.public, self._s_key.public
            )
            self._advert = Advert(self._node_id, self._c_key.public, self._s_key.public, self._signer(message))
            self._stage.advance("Open")
        return self._advert

    # -- stage 2 ----------------------------------------------------------------------------------------

    def _verify_adverts(self, adverts: Sequence[Advert]) -> dict[str, Advert]:
        ids = check_members([a.node_id for a in adverts], self._participants, "advert list", "the round's U")
        by_id = {a.node_id: a for a in adverts}
        if by_id.get(self._node_id) != self._advert:
            raise RoundError(
                f"{self._node_id}'s own advert is missing or altered in the advert list; refusing to share keys"
            )
        for node_id in ids:
            advert = by_id[node_id]
            if node_id == self._node_id:
                continue  # equal to the advert this node signed (checked above): nothing to verify
            message = advert_message(self._round_id, self._query_hash, node_id, advert.c_public, advert.s_public)
            if not self._verifier(node_id, message, advert.signature):
                raise AuthenticationFailed(
                    f"advert of {node_id} has a bad signature (not made by {node_id}'s identity key for "
                    "this round and query)"
                )
            try:
                keys.check_public_key(advert.c_public)
                keys.check_public_key(advert.s_public)
            except ValueError as exc:
                raise RoundError(f"advert of {node_id} carries an unusable X25519 key: {exc}") from None
        require_threshold(self._round_id, "Open", ids, self._participants, self._threshold, "sent adverts")
        return by_id

    def share_keys(self, adverts: Sequence[Advert]) -> list[EncryptedShare]:
        """Stage 2 (ShareKeys): U1 = the adverts' ids. Returns one encrypted share per other member of U1.

        Checks every signature (:class:`AuthenticationFailed` naming the node), distinct ids in U, this
        node's own advert unchanged, |U1| ≥ t (:class:`RoundAborted`).
        """
        if self._stage.current == "ShareKeys":
            if {a.node_id: a for a in adverts} != self._adverts or len(adverts) != len(self._adverts):
                raise RoundReplayed(
                    f"{self._node_id} already shared keys for round {self._round_id.hex()} with another advert set"
                )
            return list(self._outgoing)
        self._stage.require("share_keys", "Open")
        by_id = self._verify_adverts(adverts)
        u1 = sorted_ids(by_id)
        self._u1 = u1
        self_mask_seed = secrets.token_bytes(SEED_BYTES)
        plaintexts = keys.split_secrets(self_mask_seed, self._s_key.private, self._threshold, len(u1))
        outgoing = []
        for position, recipient in enumerate(u1):
            if recipient == self._node_id:
                self._own_plaintext = plaintexts[position]
                continue
            key = keys.share_key(self._c_key.key, by_id[recipient].c_public, self._round_id)
            self._share_keys[recipient] = key
            outgoing.append(keys.encrypt_share(key, self._round_id, self._node_id, recipient, plaintexts[position]))
        self._self_mask_seed = self_mask_seed
        self._adverts = by_id
        self._outgoing = outgoing
        self._stage.advance("ShareKeys")
        return list(outgoing)

    # -- stage 3 ----------------------------------------------------------------------------------------

    def _accept_shares(self, u2: list[str], shares: Sequence[EncryptedShare]) -> dict[str, bytes]:
        senders = [s.sender for s in shares]
        check_members(senders, set(u2) - {self._node_id}, "shares received", "U2 minus this node")
        for share in shares:
            if share.recipient != self._node_id:
                raise RoundError(f"share from {share.sender} is addressed to {share.recipient}, not {self._node_id}")
        missing = sorted_ids(set(u2) - set(senders) - {self._node_id})
        if missing:
            raise RoundError(f"no share received from {', '.join(missing)}, who are in U2")
        held = {self._node_id: self._own_plaintext}
        for share in shares:
            held[share.sender] = keys.decrypt_share(self._share_keys[share.sender], self._round_id, share)
        return held

    def masked_input(
        self,
        survivors: Sequence[str],
        shares: Sequence[EncryptedShare],
        *,
        out: npt.NDArray[np.uint64] | None = None,
    ) -> npt.NDArray[np.uint64]:
        """Stage 3 (MaskedInput): U2 = ``survivors``; returns y_u (1-D uint64, mod 2^64, native order).

        ``shares`` are the shares addressed to this node, exactly one from each other member of U2. Repeating
        with the same U2 and shares returns the same y (it is recomputed, not stored); a different U2 or
        different shares raise :class:`RoundReplayed`. ``out``, if given, is a preallocated 1-D uint64
        array of the vector's length that receives y (saves the page faults of a fresh 8·m-byte array).
        """
        if self._stage.current != "MaskedInput":
            self._stage.require("masked_input", "ShareKeys")
        if out is not None and (
            out.shape != self._vector.shape or out.dtype != np.uint64 or np.may_share_memory(out, self._vector)
        ):
            raise VectorMismatch(
                f"output buffer {out.dtype} {out.shape} must be a separate uint64 array shaped like x_u "
                f"{self._vector.shape}"
            )
        u2 = check_members(list(survivors), self._u1, "U2", "U1")
        if self._stage.current == "MaskedInput":
            if u2 != self._u2:
                raise RoundReplayed(
                    f"{self._node_id} already sent its masked input for round {self._round_id.hex()} with "
                    f"U2 = {self._u2}; refusing U2 = {u2} (two masked inputs would reveal pairwise masks)"
                )
            if frozenset(shares) != self._incoming_shares:
                raise RoundReplayed(
                    f"{self._node_id} already sent its masked input for round {self._round_id.hex()}; "
                    "refusing to repeat it against a different set of shares"
                )
        else:
            if self._node_id not in u2:
                raise RoundError(f"U2 {u2} leaves out {self._node_id} itself")
            require_threshold(self._round_id, "ShareKeys", u2, self._u1, self._threshold, "sent shares")
            self._held = self._accept_shares(u2, shares)
            self._u2 = u2
            self._incoming_shares = frozenset(shares)
            self._pair_seeds = {
                other: keys.pair_mask_seed(self._s_key.key, self._adverts[other].s_public, self._round_id)
                for other in u2
                if other != self._node_id
            }
            self._stage.advance("MaskedInput")
        return self._compute_masked(out)

    def _compute_masked(self, out: npt.NDArray[np.uint64] | None) -> npt.NDArray[np.uint64]:
        masked = np.empty(self._vector.shape, dtype=np.uint64) if out is None else out
        me = self._node_id.encode("utf-8")
        masks: list[tuple[bytes, int]] = [(self._self_mask_seed, 1)]
        # y_u adds PRG(s_uv) for v > u and subtracts it for v < u, so the pairs cancel in the sum.
        for other, seed in self._pair_seeds.items():
            masks.append((seed, 1 if other.encode("utf-8") > me else -1))
        apply_masks(masked, masks, base=self._vector)
        return masked

    # -- stage 4 ----------------------------------------------------------------------------------------

    def sign_survivors(self, survivors: Sequence[str]) -> bytes:
        """Stage 4 (Consistency): sign U3. Needs U3 ⊆ U2, |U3| ≥ t and this node in U3.

        Repeating with the same U3 returns the same signature; another U3 raises :class:`RoundReplayed`
        (signing two sets would let the broker show different parties different sets).
        """
        if self._stage.current != "Consistency":
            self._stage.require("sign_survivors", "MaskedInput")
        u3 = check_members(list(survivors), self._u2, "U3", "U2")
        if self._stage.current == "Consistency":
            if u3 != self._u3:
                raise RoundReplayed(
                    f"{self._node_id} already signed U3 = {self._u3} for round {self._round_id.hex()}; "
                    f"refusing to sign U3 = {u3}"
                )
            return self._survivors_signature
        if self._node_id not in u3:
            raise RoundError(f"U3 {u3} leaves out {self._node_id}, whose masked input was sent")
        require_threshold(self._round_id, "MaskedInput", u3, self._u2, self._threshold, "sent masked input")
        self._survivors_signature = self._signer(survivors_message(self._round_id, u3))
        self._u3 = u3
        self._stage.advance("Consistency")
        return self._survivors_signature

    # -- stage 5 ----------------------------------------------------------------------------------------

    def unmask(self, survivors: Sequence[str], signatures: Mapping[str, bytes]) -> list[RevealedShare]:
        """Stage 5 (Unmask), once per round: b-shares for members of U3 and mask-key shares for U2 \\ U3.

        ``survivors`` must be the U3 this node signed; ``signatures`` must hold at least t valid signatures
        over it from members of U3 (a bad one: :class:`AuthenticationFailed` naming its node).
        """
        if self._stage.current == "Unmask":
            raise RoundReplayed(f"{self._node_id} already answered Unmask for round {self._round_id.hex()}")
        self._stage.require("unmask", "Consistency")
        u3 = check_members(list(survivors), self._u2, "U3", "U2")
        if u3 != self._u3:
            raise RoundError(f"Unmask names U3 = {u3}, but {self._node_id} signed U3 = {self._u3}")
        signers = check_members(list(signatures), u3, "consistency signatures", "U3")
        message = survivors_message(self._round_id, u3)
        for signer in signers:
            # This node's own signature is the one it made; any other bytes under its name are refused.
            if signer == self._node_id:
                valid = signatures[signer] == self._survivors_signature
            else:
                valid = self._verifier(signer, message, signatures[signer])
            if not valid:
                raise AuthenticationFailed(f"consistency signature of {signer} over U3 does not verify")
        require_threshold(self._round_id, "Consistency", signers, u3, self._threshold, "signed U3")
        my_index = self._index(self._node_id)
        chunk = keys.CHUNK_BYTES
        revealed = [
            RevealedShare(owner, SecretKind.SELF_MASK_SEED, my_index, self._held[owner][:chunk]) for owner in u3
        ]
        revealed += [
            RevealedShare(owner, SecretKind.MASK_KEY, my_index, self._held[owner][chunk:])
            for owner in self._u2
            if owner not in u3
        ]
        self._stage.advance("Unmask")
        return revealed
