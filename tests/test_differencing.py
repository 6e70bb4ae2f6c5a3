"""Round differencing by a claimed dropout, against real nodes (three carriers, t = 2).

A malicious broker runs the same presence round twice: once with every carrier, once claiming telecom-b dropped
after MaskedInput (it did send its masked input). Without a defence the difference of the two sums is
telecom-b's exact vector. An exact-sum agency (``noise: none``) therefore unmasks one survivor set per aggregate
spec; a noisy agency pays for each round in its budget, so the difference is noisy and charged twice.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import duckdb
import grpc
import numpy as np
import numpy.typing as npt
import pytest

from fedbroker.harness import LocalFederation
from federation.catalog import NATIONAL, kind, new_query
from federation.catalog.jurisdiction import scope_of
from federation.config import PrivacyPolicy
from federation.privacy.ledger import ledger_path
from tests import oracle
from tests.federation_fixtures import oracle_sum, private_copy
from tests.test_round_refusals import TELECOM, EvilBroker
from tests.test_security_perimeter import round_vector, vector_spec

pytestmark = pytest.mark.slow
DROPPED = "telecom-b"
RHO = 0.05


def presence_round(
    evil: EvilBroker, start: dt.date, end: dt.date, *, claim_dropped: str | None = None, rho: str = ""
) -> npt.NDArray[np.uint64]:
    """One presence round over [start, end] driven through the adapters (:meth:`EvilBroker.drive_round`)."""
    query, signed = evil.query(start=start, end=end)
    return evil.drive_round(signed, evil.spec(query, rho=rho), claim_dropped=claim_dropped)


def _federation(small_scenario: Path, directory: Path, privacy: PrivacyPolicy) -> LocalFederation:
    roster = private_copy(small_scenario, directory, privacy=privacy, rho_per_round=RHO, min_contributors=2)
    return LocalFederation(roster, run_dir=directory / "run", nodes=TELECOM)


@pytest.fixture(scope="module")
def exact_fed(small_scenario: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    # The default exact policy: one survivor set per aggregate spec.
    with _federation(small_scenario, tmp_path_factory.mktemp("exact"), PrivacyPolicy(noise="none")) as federation:
        yield federation


@pytest.fixture(scope="module")
def noisy_fed(small_scenario: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    policy = PrivacyPolicy(noise="discrete-gaussian", rho_per_day=1.0)
    with _federation(small_scenario, tmp_path_factory.mktemp("noisy"), policy) as federation:
        yield federation


def _presence_of(federation: LocalFederation, node_id: str, day: dt.date) -> npt.NDArray[np.uint64]:
    codes = EvilBroker(federation.config).registry.codes
    con = duckdb.connect(str(federation.config.node(node_id).store), read_only=True)
    try:
        return oracle.oracle_presence(con, codes, day, day)
    finally:
        con.close()


def test_an_exact_agency_refuses_a_second_survivor_set(exact_fed: LocalFederation) -> None:
    evil = EvilBroker(exact_fed.config)
    day = exact_fed.config.data_end
    full = presence_round(evil, day, day, claim_dropped=None)

    def presence(con: duckdb.DuckDBPyConnection) -> npt.NDArray[np.uint64]:
        return oracle.oracle_presence(con, evil.registry.codes, day, day)

    assert np.array_equal(full, oracle_sum(exact_fed.config, "telecom", presence))
    assert _presence_of(exact_fed, DROPPED, day).sum() > 0  # there is something to steal
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        presence_round(evil, day, day, claim_dropped=DROPPED)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    details = refused.value.details() or ""
    assert "already released telecom.presence" in details and "telecom-a, telecom-b, telecom-c" in details
    # The same survivors again are fine: the sum is the one already released.
    assert np.array_equal(presence_round(evil, day, day, claim_dropped=None), full)
    # Another day is another spec, with its own first survivor set.
    other = day - dt.timedelta(days=1)
    partial = presence_round(evil, other, other, claim_dropped=DROPPED)
    expected = _presence_of(exact_fed, "telecom-a", other) + _presence_of(exact_fed, "telecom-c", other)
    assert np.array_equal(partial, expected)


def test_a_noisy_agency_pays_for_the_second_round_and_the_difference_is_noisy(noisy_fed: LocalFederation) -> None:
    evil = EvilBroker(noisy_fed.config)
    day = noisy_fed.config.data_end
    full = presence_round(evil, day, day, claim_dropped=None, rho=repr(RHO))
    without = presence_round(evil, day, day, claim_dropped=DROPPED, rho=repr(RHO))
    stolen = (full.view(np.int64) - without.view(np.int64)).astype(np.int64)
    exact = _presence_of(noisy_fed, DROPPED, day).astype(np.int64)
    noise = stolen - exact
    # Presence: Δ₂² = 1, σ²/t = 1/(2·0.05·2) = 5 per agency; the difference carries three agencies' noise of the
    # first round and two of the second: variance 25, so nearly every cell is off.
    assert np.count_nonzero(noise) > 0.7 * noise.size
    for node_id in TELECOM:
        lines = ledger_path(noisy_fed.config.node(node_id)).read_text().splitlines()
        charges = [json.loads(line) for line in lines]
        assert [c["days"] for c in charges] == [[day.isoformat()], [day.isoformat()]], node_id


def test_a_provincial_round_shares_the_national_rounds_survivor_set(exact_fed: LocalFederation) -> None:
    """Across layouts: a province's presence minus the national presence of the same day with a carrier "dropped"
    would give that carrier's cells; a round limited to a province is the same aggregate spec for the survivor
    rule (docs/protocol.md, "Vector layouts"), so the second survivor set is refused."""
    config = exact_fed.config
    registry = EvilBroker(config).registry
    day = config.data_end - dt.timedelta(days=2)
    national_query = new_query("population", start=day, end=day, params={}, coordinator="nhc-national")
    (national,) = kind("population").rounds(national_query, registry, NATIONAL)
    round_vector(config, national_query, vector_spec(national, registry.hash))
    provincial = next(c for c in config.coordinators if c.role == "provincial")
    query = new_query("population", start=day, end=day, params={}, coordinator=provincial.id)
    (inside,) = kind("population").rounds(query, registry, scope_of(provincial))
    assert inside.layout == "inside"
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        round_vector(config, query, vector_spec(inside, registry.hash), claim_dropped=DROPPED)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "already released telecom.presence" in (refused.value.details() or "")
