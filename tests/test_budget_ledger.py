"""The budget ledger in process: reservations count against the cap, become charges or are released, and are
never written, so a ledger written before reservations existed reads back the same and a restart drops them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from federation.errors import BudgetExhausted
from federation.privacy.ledger import BudgetLedger

DAY = "2020-01-20"
ROUND_A, ROUND_B, ROUND_C = (bytes([i]) * 16 for i in (1, 2, 3))


def test_reservations_count_against_the_cap_and_become_charges(tmp_path: Path) -> None:
    path = tmp_path / "node.budget.jsonl"
    # A ledger as written before reservations existed: one charge per line, nothing else.
    path.write_text(
        json.dumps({"round": "ff" * 16, "aggregate": "telecom.presence", "days": [DAY], "rho": 0.04}) + "\n"
    )
    ledger = BudgetLedger(path, owner="telecom-a", rho_per_day=0.14)
    assert ledger.spent() == {DAY: 0.04}
    ledger.reserve(ROUND_A, [DAY], 0.05)
    ledger.reserve(ROUND_B, [DAY], 0.05)
    assert ledger.spent() == {DAY: 0.04} and ledger.reserved() == {DAY: pytest.approx(0.10)}
    with pytest.raises(BudgetExhausted) as refused:
        ledger.reserve(ROUND_C, [DAY], 0.05)
    assert "reserved by rounds in progress" in refused.value.message and DAY in refused.value.message
    ledger.charge(ROUND_A, "telecom.presence", [DAY], 0.05)  # A's masked input leaves
    ledger.release(ROUND_A)  # A closes or is aborted afterwards: still charged
    ledger.release(ROUND_B)  # B dies before its masked input
    assert ledger.spent() == {DAY: pytest.approx(0.09)} and ledger.reserved() == {}
    ledger.reserve(ROUND_C, [DAY], 0.05)
    assert len(path.read_text().splitlines()) == 2  # only charges are written
    # A restart: the charges come back, the reservation of C does not.
    again = BudgetLedger(path, owner="telecom-a", rho_per_day=0.14)
    assert again.spent() == {DAY: pytest.approx(0.09)} and again.reserved() == {}
    again.charge(ROUND_A, "telecom.presence", [DAY], 0.05)  # a round id is charged once, also after a restart
    assert again.spent() == {DAY: pytest.approx(0.09)}


def test_a_charge_whose_reservation_was_released_is_checked_afresh(tmp_path: Path) -> None:
    ledger = BudgetLedger(tmp_path / "node.budget.jsonl", owner="telecom-a", rho_per_day=0.1)
    ledger.reserve(ROUND_A, [DAY], 0.06)
    ledger.release(ROUND_A)  # e.g. the round expired while its masked input was being computed
    ledger.charge(ROUND_B, "telecom.presence", [DAY], 0.06)
    with pytest.raises(BudgetExhausted):
        ledger.charge(ROUND_A, "telecom.presence", [DAY], 0.06)
    assert ledger.spent() == {DAY: pytest.approx(0.06)}
    # The broker's mirror records what an agency charged itself, whatever its copy thought.
    ledger.charge(ROUND_A, "telecom.presence", [DAY], 0.06, enforce=False)
    assert ledger.spent() == {DAY: pytest.approx(0.12)}
