"""Faults over gRPC with real adapter processes: a carrier crashes or hangs at each stage of a round, and the
round either recovers exactly the sum of those whose masked input it holds, or aborts naming the stage.

Carriers are real adapter processes; a faulty one is started by the harness through the test-only entry point
of fedbroker/faults.py, which installs the fault as the node's stage hooks: the only fake here. The expected
sums come straight from the raw DuckDB tables.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import pytest

from broker.client import Answer, run_query
from fedbroker.harness import LocalFederation
from federation.catalog import new_query
from federation.errors import RoundAborted
from federation.registry import load_registry
from tests import oracle
from tests.federation_fixtures import oracle_sum, own_federation, roster_variant, with_extra_carriers

pytestmark = pytest.mark.slow
TELECOM = ("telecom-a", "telecom-b", "telecom-c")
NATIONAL = "nhc-national"


def population_under_fault(
    small_scenario: Path, run_dir: Path, faults: dict[str, str], *, stage_timeout_s: float = 30.0
) -> tuple[Answer, LocalFederation]:
    roster = roster_variant(
        small_scenario,
        run_dir / "federation.faults.yaml",
        min_contributors=2,
        mobility_k=1,
        stage_timeout_s=stage_timeout_s,
    )
    federation = own_federation(roster, run_dir, nodes=TELECOM, faults=faults)
    with federation:
        end = federation.config.data_end
        query = new_query("population", start=end - dt.timedelta(days=2), end=end, params={}, coordinator=NATIONAL)
        answer = asyncio.run(run_query(federation.config, NATIONAL, query))
        return answer, federation


def total_count(answer: Answer) -> int:
    at = answer.columns.index("count")
    return sum(int(row[at] or 0) for row in answer.rows)


def expected_total(federation: LocalFederation, carriers: Sequence[str]) -> int:
    config = federation.config
    codes = load_registry(config.domain.provinces).codes
    end = config.data_end
    start = end - dt.timedelta(days=2)
    return int(
        oracle_sum(config, "telecom", lambda con: oracle.oracle_presence(con, codes, start, end), only=carriers).sum()
    )


@pytest.mark.parametrize(
    ("fault", "in_sum"),
    [
        # Dies after its advert: it is in U1 but sends no shares, so it is simply not in the round.
        ("exit-after:open", ("telecom-a", "telecom-c")),
        # Dies after sending shares: in U2, not in U3; the others reveal its mask key so its pairwise masks
        # can be removed, and the sum is exactly the other two.
        ("exit-after:share-keys", ("telecom-a", "telecom-c")),
        # Dies after its masked input arrived: in U3, so its input is in the sum; its self mask is rebuilt
        # from the others' shares.
        ("exit-after:masked-input", TELECOM),
        # Dies after signing U3: the other two still unmask everything.
        ("exit-after:consistency", TELECOM),
    ],
)
def test_carrier_killed_mid_round(small_scenario: Path, tmp_path: Path, fault: str, in_sum: tuple[str, ...]) -> None:
    answer, federation = population_under_fault(small_scenario, tmp_path, {"telecom-b": fault})
    coverage = answer.contributors["presence"]
    assert coverage["contributed"] == sorted(in_sum)
    assert total_count(answer) == expected_total(federation, in_sum)
    if "telecom-b" not in in_sum:
        assert [m.split(":")[0] for m in coverage["missing"]] == ["telecom-b"]


@pytest.mark.parametrize("stage", ["share-keys", "consistency"])
def test_carrier_stalled_is_dropped_after_the_stage_deadline(small_scenario: Path, tmp_path: Path, stage: str) -> None:
    faults = {"telecom-c": f"stall-at:{stage}"}
    answer, federation = population_under_fault(small_scenario, tmp_path, faults, stage_timeout_s=2.0)
    in_sum = ("telecom-a", "telecom-b") if stage == "share-keys" else TELECOM
    assert answer.contributors["presence"]["contributed"] == sorted(in_sum)
    assert total_count(answer) == expected_total(federation, in_sum)


def test_two_carriers_lost_aborts_naming_stage_and_missing(small_scenario: Path, tmp_path: Path) -> None:
    with pytest.raises(RoundAborted) as caught:
        population_under_fault(
            small_scenario, tmp_path, {"telecom-b": "exit-after:open", "telecom-c": "exit-after:open"}
        )
    message = caught.value.message
    assert "share-keys" in message and "telecom-b" in message and "telecom-c" in message and "threshold 2" in message


def test_carrier_hung_by_sigstop_is_dropped_and_recovers_after_resume(small_scenario: Path, tmp_path: Path) -> None:
    """A whole host hanging (SIGSTOP: connections open, nothing answers) costs one stage deadline; once resumed
    the carrier contributes again."""
    roster = roster_variant(
        small_scenario,
        tmp_path / "federation.stall.yaml",
        min_contributors=2,
        mobility_k=1,
        stage_timeout_s=2.0,
    )
    with own_federation(roster, tmp_path, nodes=TELECOM) as federation:
        end = federation.config.data_end

        def ask() -> Answer:
            query = new_query("population", start=end, end=end, params={}, coordinator=NATIONAL)
            return asyncio.run(run_query(federation.config, NATIONAL, query))

        federation.stall("telecom-a")
        try:
            hung = ask()
        finally:
            federation.resume("telecom-a")
        assert hung.contributors["presence"]["contributed"] == ["telecom-b", "telecom-c"]
        assert hung.contributors["presence"]["missing"][0].startswith("telecom-a: open:")
        assert ask().contributors["presence"]["contributed"] == list(TELECOM)


def test_one_killed_after_share_keys_and_another_after_masked_input_in_one_round(
    small_scenario: Path, tmp_path: Path
) -> None:
    """Five carriers, t = 3: telecom-a dies after sending its shares (in U2, not U3: its mask key is rebuilt),
    telecom-b after its masked input arrived (in U3: its self mask is rebuilt); the round releases exactly the
    sum of telecom-b..e."""
    five = with_extra_carriers(
        small_scenario,
        tmp_path / "federation.five.yaml",
        {"telecom-d": "telecom-a", "telecom-e": "telecom-b"},
    )
    roster = roster_variant(five, tmp_path / "federation.five.k1.yaml", min_contributors=2, mobility_k=1)
    carriers = ("telecom-a", "telecom-b", "telecom-c", "telecom-d", "telecom-e")
    faults = {"telecom-a": "exit-after:share-keys", "telecom-b": "exit-after:masked-input"}
    with own_federation(roster, tmp_path / "run", nodes=carriers, faults=faults) as federation:
        end = federation.config.data_end
        query = new_query("population", start=end - dt.timedelta(days=2), end=end, params={}, coordinator=NATIONAL)
        answer = asyncio.run(run_query(federation.config, NATIONAL, query))
        survivors = ("telecom-b", "telecom-c", "telecom-d", "telecom-e")
        coverage = answer.contributors["presence"]
        assert coverage["contributed"] == list(survivors)
        assert [m.split(":")[0] for m in coverage["missing"]] == ["telecom-a"]
        assert total_count(answer) == expected_total(federation, survivors)
