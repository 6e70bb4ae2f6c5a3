"""Whole rounds with parties dropping out at every stage: the exact survivors' sum, or a clean abort."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from federation.errors import RoundAborted
from tests.test_secagg_harness import Drops, Identities, expected_sum, make_rounds, random_vectors, run_round, stream

PARTIES = ["health-1", "health-2", "telecom-a", "telecom-b", "telecom-c", "transport-rail"]
THRESHOLD = 3
# Where a party can leave, in protocol order; "stays" means it answers everything.
PLACES = ["silent_at_open", "after_open", "after_share_keys", "after_masked_input", "during_unmask", "stays"]


def released_members(drops: Drops) -> list[str]:
    """U3: who sent masked input that arrived whole."""
    gone = {*drops.silent_at_open, *drops.after_open, *drops.after_share_keys, *drops.broken_stream}
    return [p for p in PARTIES if p not in gone]


def drops_from(places: dict[str, str]) -> Drops:
    return Drops(**{place: [p for p, where in places.items() if where == place] for place in PLACES[:-1]})


def enough_at_every_stage(places: dict[str, str]) -> bool:
    """|U1|, |U2|, |U3|, signers and Unmask responders all ≥ t."""
    return all(
        sum(1 for where in places.values() if PLACES.index(where) > stage) >= THRESHOLD
        for stage in range(len(PLACES) - 1)
    )


@pytest.fixture(scope="module")
def identities() -> Identities:
    return Identities(PARTIES)


@pytest.fixture(scope="module")
def vectors() -> dict[str, np.ndarray]:
    return random_vectors(PARTIES, 301, np.random.default_rng(20200123))


NAMED_CASES = {
    "nobody drops": Drops(),
    "one silent at Open": Drops(silent_at_open=["telecom-a"]),
    "one after Open": Drops(after_open=["health-2"]),
    "one after ShareKeys": Drops(after_share_keys=["telecom-c"]),
    "one after MaskedInput": Drops(after_masked_input=["transport-rail"]),
    "one during Unmask": Drops(during_unmask=["health-1"]),
    "one at each stage": Drops(silent_at_open=["health-1"], after_open=["health-2"], after_share_keys=["telecom-a"]),
    "late drops leave exactly t": Drops(after_masked_input=["health-1", "health-2"], during_unmask=["telecom-a"]),
    "three after ShareKeys": Drops(after_share_keys=["health-1", "telecom-b", "transport-rail"]),
    "stream broken mid-way": Drops(broken_stream=["telecom-b"]),
    "broken stream and dropouts": Drops(
        silent_at_open=["health-2"], broken_stream=["telecom-a"], during_unmask=["telecom-c"]
    ),
}


@pytest.mark.parametrize("name", list(NAMED_CASES))
def test_survivors_sum_is_exact(name: str, vectors: dict[str, np.ndarray], identities: Identities) -> None:
    drops = NAMED_CASES[name]
    released, view = run_round(vectors, THRESHOLD, drops, identities=identities, chunk_cells=64)
    assert view.u3 == released_members(drops)
    np.testing.assert_array_equal(released, expected_sum(vectors, view.u3))


def test_random_dropout_patterns(vectors: dict[str, np.ndarray], identities: Identities) -> None:
    """A seeded sample of every way six parties can leave that keeps at least t at each stage."""
    patterns = [
        dict(zip(PARTIES, where, strict=True))
        for where in itertools.product(PLACES, repeat=len(PARTIES))
        if enough_at_every_stage(dict(zip(PARTIES, where, strict=True)))
    ]
    for places in random.Random(7).sample(patterns, 25):
        drops = drops_from(places)
        released, view = run_round(vectors, THRESHOLD, drops, identities=identities)
        assert view.u3 == released_members(drops)
        np.testing.assert_array_equal(released, expected_sum(vectors, released_members(drops)), err_msg=str(places))


ABORTS = [
    ("Open", Drops(silent_at_open=["health-1", "telecom-a", "telecom-b", "telecom-c"]), ["health-1", "telecom-c"]),
    (
        "ShareKeys",
        Drops(silent_at_open=["health-1"], after_open=["telecom-a", "telecom-b", "telecom-c"]),
        ["telecom-b"],
    ),
    (
        "MaskedInput",
        Drops(after_share_keys=["health-2", "telecom-b"], broken_stream=["telecom-c", "health-1"]),
        ["health-1"],
    ),
    (
        "Consistency",
        Drops(after_share_keys=["health-2"], after_masked_input=["telecom-c", "health-1", "telecom-b"]),
        ["telecom-b"],
    ),
    (
        "Unmask",
        Drops(after_masked_input=["health-1", "health-2"], during_unmask=["telecom-a", "telecom-b"]),
        ["telecom-a"],
    ),
]


@pytest.mark.parametrize(("stage", "drops", "missing"), ABORTS, ids=[stage for stage, _, _ in ABORTS])
def test_fewer_than_t_aborts_naming_the_stage_and_the_missing(
    stage: str, drops: Drops, missing: list[str], vectors: dict[str, np.ndarray], identities: Identities
) -> None:
    with pytest.raises(RoundAborted, match=f"aborted at {stage}: 2 ") as caught:
        run_round(vectors, THRESHOLD, drops, identities=identities)
    assert "threshold is 3" in caught.value.message
    for node_id in missing:
        assert node_id in caught.value.message.split("missing: ")[1]
    assert caught.value.status == "ABORTED"


def test_refetch_after_a_broken_stream_gives_the_same_masked_input(identities: Identities) -> None:
    vectors = random_vectors(PARTIES[:4], 500, np.random.default_rng(3))
    broker, adapters = make_rounds(vectors, 3, identities)
    u1 = broker.receive_adverts([a.advertise() for a in adapters.values()])
    routed = broker.route_shares({n: adapters[n].share_keys(broker.adverts) for n in u1})
    first = {n: adapters[n].masked_input(broker.u2, routed[n]) for n in broker.u2}
    stream(broker, "health-1", first["health-1"], 128)
    stream(broker, "health-2", first["health-2"], 128, stop_after=2)
    broker.discard_masked()
    assert broker.survivors == []
    again = {n: adapters[n].masked_input(broker.u2, routed[n]) for n in broker.u2}
    for node_id in broker.u2:
        np.testing.assert_array_equal(first[node_id], again[node_id])
    preallocated = np.empty(500, dtype=np.uint64)
    result = adapters["telecom-a"].masked_input(broker.u2, routed["telecom-a"], out=preallocated)
    assert result is preallocated
    np.testing.assert_array_equal(preallocated, first["telecom-a"])
