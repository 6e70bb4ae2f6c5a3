"""The broker's side of the privacy budget: the mirror of every agency's ledger, σ and ρ of each round.

The broker charges each noisy agency's mirror for every round it invites the agency to, so it refuses a query
early when fewer than t agencies could still afford a round; each agency still enforces its own ledger.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from federation.config import FederationConfig
from federation.errors import BudgetExhausted
from federation.privacy.accounting import sum_sigma
from federation.privacy.ledger import BudgetLedger
from federation.privacy.release import ReleaseCost, release_cost

__all__ = ["BudgetMirror", "RoundBudget"]


@dataclass(frozen=True)
class RoundBudget:
    """What the broker expects a round to cost: the ρ string it sends, each participant's cost."""

    aggregate: str
    rho_text: str  # sent in VectorSpec.rho; empty when no participant adds noise
    costs: dict[str, ReleaseCost]


class BudgetMirror:
    """One ledger per agency, in ``<broker audit directory>/budget/<agency>.jsonl``."""

    def __init__(self, federation: FederationConfig, directory: Path | None = None) -> None:
        self._federation = federation
        base = directory or federation.broker.audit_log.parent / "budget"
        self._ledgers = {
            node.id: BudgetLedger(
                base / f"{node.id}.jsonl",
                owner=f"{node.id} (broker's ledger)",
                rho_per_day=node.policy.privacy.rho_per_day,
            )
            for node in federation.nodes
        }

    def plan(
        self,
        participants: Sequence[str],
        aggregate: str,
        start: dt.date | None,
        end: dt.date | None,
        threshold: int,
        cells: int,
    ) -> RoundBudget:
        noisy = any(self._federation.node(n).policy.privacy.noisy for n in participants)
        rho_text = repr(self._federation.broker.rho_per_round) if noisy else ""
        costs = {
            n: release_cost(
                n, self._federation.node(n).policy.privacy, aggregate, start, end, rho_text, threshold, cells
            )
            for n in participants
        }
        return RoundBudget(aggregate, rho_text, costs)

    def charge(self, round_name: str, round_id: bytes, aggregate: str, budget: RoundBudget, threshold: int) -> None:
        """Charge every participant that can afford the round; :class:`BudgetExhausted` (naming the agencies,
        days and what is left) if fewer than t can."""
        short: list[str] = []
        for node_id, cost in budget.costs.items():
            if not cost.noisy:
                continue
            try:
                self._ledgers[node_id].check(cost.days, cost.rho)
            except BudgetExhausted as exhausted:
                short.append(exhausted.message)
        affordable = len(budget.costs) - len(short)
        if short and affordable < threshold:
            raise BudgetExhausted(
                f"the {round_name} round needs {threshold} agencies with budget left, {affordable} have: "
                + "; ".join(short)
            )
        for node_id, cost in budget.costs.items():
            if cost.noisy and not any(m.startswith(f"{node_id} ") for m in short):
                self._ledgers[node_id].charge(round_id, aggregate, cost.days, cost.rho)

    def sigma(self, budget: RoundBudget, contributors: Sequence[str]) -> float:
        """Upper bound on the standard deviation of each cell of the sum over ``contributors``."""
        return sum_sigma([budget.costs[n].party_sigma2 for n in contributors])

    def rho_left(self, budget: RoundBudget, contributors: Sequence[str]) -> float:
        """The least ρ left on any day of the round at any noisy contributor (the broker's ledger)."""
        lefts = [
            value
            for n in contributors
            if budget.costs[n].noisy
            for value in self._ledgers[n].left(budget.costs[n].days).values()
        ]
        return min(lefts, default=0.0)
