"""The split-view attack against real adapters: six carriers, t = 3, a broker holding the broker's real certificate.

With 2t <= |U| the broker can show one half of the participants U3 = that half and the other half U3 = the other
half. Each half signs its own set (t signatures each), so Consistency passes; the first half then reveals
b-shares for itself and mask-key shares for the second half, and the second half the reverse. With t shares of
every b_u and of every mask key the broker strips every mask off every single y_u. Every adapter must refuse such
a round at Open (PERMISSION_DENIED naming t and |U|). The test plays the whole attack: if an adapter accepted
the round, the attack would go on, recover one carrier's vector, and the test fails.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path

import grpc
import numpy as np
import numpy.typing as npt
import pytest

from fedbroker.harness import LocalFederation
from federation.secagg import keys, prg, sorted_ids
from federation.v1 import adapter_pb2
from tests import oracle
from tests.federation_fixtures import oracle_sum, own_federation, roster_variant, with_extra_carriers
from tests.test_round_refusals import EvilBroker

pytestmark = pytest.mark.slow
SIX = ("telecom-a", "telecom-b", "telecom-c", "telecom-d", "telecom-e", "telecom-f")


@pytest.fixture(scope="module")
def six(small_scenario: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    run_dir = tmp_path_factory.mktemp("run-six")
    extra = with_extra_carriers(
        small_scenario,
        run_dir / "federation.six.yaml",
        {"telecom-d": "telecom-a", "telecom-e": "telecom-b", "telecom-f": "telecom-c"},
    )
    roster = roster_variant(extra, run_dir / "federation.six.t2.yaml", min_contributors=2)
    with own_federation(roster, run_dir, nodes=SIX) as federation:
        yield federation


def _split_view(evil: EvilBroker, round_id: bytes, threshold: int) -> tuple[str, npt.NDArray[np.uint64]]:
    """Run the split-view attack through Unmask; return (victim, the victim's recovered x_u)."""
    query, signed = evil.query()
    spec = evil.spec(query)
    adverts = asyncio.run(evil.open_all(round_id, signed, spec, participants=SIX, threshold=threshold))
    share_request = adapter_pb2.ShareKeysRequest(round_id=round_id, adverts=list(adverts.values()))

    async def share_all() -> list[adapter_pb2.ShareKeysResponse]:
        return list(await asyncio.gather(*(evil.call(n, "ShareKeys", share_request) for n in SIX)))

    inbox: dict[str, list[adapter_pb2.EncryptedShare]] = {n: [] for n in SIX}
    for answer in asyncio.run(share_all()):
        for share in answer.shares:
            inbox[share.recipient].append(share)
    masked: dict[str, npt.NDArray[np.uint64]] = {}
    for node in SIX:
        request = adapter_pb2.MaskedInputRequest(round_id=round_id, survivors=list(SIX), shares=inbox[node])
        chunks = asyncio.run(evil.call(node, "MaskedInput", request))
        masked[node] = np.frombuffer(b"".join(c.data for c in chunks[1:]), dtype="<u8").astype(np.uint64)
    halves: Sequence[list[str]] = (list(SIX[:3]), list(SIX[3:]))
    revealed: list[adapter_pb2.RevealedShare] = []
    for half in halves:
        signatures = asyncio.run(evil.signatures(round_id, half))
        unmask = adapter_pb2.UnmaskRequest(round_id=round_id, survivors=half, signatures=signatures)
        for node in half:
            revealed.extend(asyncio.run(evil.call(node, "Unmask", unmask)).shares)
    victim = SIX[0]
    seed_shares = [(s.index, s.share) for s in revealed if s.owner == victim and s.secret == s.SELF_MASK_SEED]
    key_shares = [(s.index, s.share) for s in revealed if s.owner == victim and s.secret == s.MASK_KEY]
    self_mask_seed = keys.combine_secret(sorted(seed_shares), threshold)
    mask_key = keys.combine_secret(sorted(key_shares), threshold)
    x = masked[victim] - prg(self_mask_seed, masked[victim].size)
    for other in sorted_ids(SIX):
        if other == victim:
            continue
        seed = keys.pair_mask_seed(mask_key, adverts[other].s_public, round_id)
        pad = prg(seed, x.size)
        x = x - pad if other.encode() > victim.encode() else x + pad
    return victim, x


def test_split_view_refused_at_open(six: LocalFederation) -> None:
    evil = EvilBroker(six.config)
    round_id = secrets.token_bytes(16)
    try:
        victim, recovered = _split_view(evil, round_id, threshold=3)
    except grpc.aio.AioRpcError as refusal:
        assert refusal.code() == grpc.StatusCode.PERMISSION_DENIED, refusal.details()
        message = refusal.details() or ""
        assert "t = 3" in message and "|U| = 6" in message, message
        return
    query, _ = evil.query()
    codes = evil.registry.codes
    alone = oracle_sum(
        six.config, "telecom", lambda con: oracle.oracle_presence(con, codes, query.start, query.end), only=[victim]
    )
    assert not np.array_equal(recovered, alone), f"split view unmasked {victim}'s vector alone"
    pytest.fail("every adapter accepted t = 3 of |U| = 6")


def test_every_adapter_refuses_a_minority_threshold(six: LocalFederation) -> None:
    evil = EvilBroker(six.config)
    query, signed = evil.query()
    request = adapter_pb2.OpenRequest(
        round_id=secrets.token_bytes(16), query=signed, spec=evil.spec(query), participants=list(SIX), threshold=3
    )
    for node in SIX:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            asyncio.run(evil.call(node, "Open", request))
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert node in (caught.value.details() or "")


def test_a_majority_threshold_is_accepted(six: LocalFederation) -> None:
    evil = EvilBroker(six.config)
    query, signed = evil.query()
    adverts = asyncio.run(
        evil.open_all(secrets.token_bytes(16), signed, evil.spec(query), participants=SIX, threshold=4)
    )
    assert sorted(adverts) == list(SIX)
