"""The broker's side of the privacy budget: the mirror of every agency's ledger, σ and ρ of each round.

The broker mirrors each noisy agency's ledger the way the agency keeps it (docs/protocol.md, "Noise, the budget
and audit heads"): it reserves a round's cost on every agency it invites, refusing a query early when fewer than
t agencies could still afford it, and charges an agency once that agency's masked input has arrived (the agency
charged itself just before sending it); the reservations of the others are released when the round ends. Each
agency still enforces its own ledger: an agency whose masked input left but never arrived is charged there and
not here, so the mirror may under-count, and the agency's refusal then corrects the broker.

ρ of a round: ``broker.privacy.rho_per_round``, lowered for an aggregate whose noise would otherwise be finer
than σ²/t = :data:`MIN_PARTY_VARIANCE` per agency. Below that the sum of t discrete Gaussians is charged far more
than ρ (the Kairouz–Liu–Steinke τ term: at σ²/t = 1/2 a 10⁴-cell release costs 8 to 130 ρ, at 1 at most 1.2 ρ),
so finer noise would buy little accuracy for much budget.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from federation.config import FederationConfig
from federation.errors import BudgetExhausted
from federation.privacy.accounting import sensitivity_squared, sum_sigma
from federation.privacy.ledger import BudgetLedger
from federation.privacy.release import ReleaseCost, release_cost

__all__ = ["MIN_PARTY_VARIANCE", "BudgetMirror", "RoundBudget", "round_rho"]

#: The finest per-agency noise variance σ²/t a round asks for (module docstring).
MIN_PARTY_VARIANCE = Fraction(1)


def round_rho(rho_per_round: float, sensitivity2: int, threshold: int) -> float:
    """ρ a round of an aggregate with squared sensitivity Δ₂² spends: ``rho_per_round``, or less where that would
    make each of the t agencies' noise variance Δ₂²/(2ρt) finer than :data:`MIN_PARTY_VARIANCE`. The lowered
    value is rounded down to three significant digits, so that it travels as a short decimal and σ²/t stays a
    fraction of small integers (the exact sampler works on its numerator and denominator)."""
    ceiling = Fraction(sensitivity2) / (2 * threshold * MIN_PARTY_VARIANCE)
    if rho_per_round <= ceiling:
        return rho_per_round
    digits = 2 - math.floor(math.log10(ceiling))  # three significant digits
    scale = Fraction(10) ** digits
    return float(math.floor(ceiling * scale) / scale)


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
        query_end: dt.date | None = None,
    ) -> RoundBudget:
        policies = [self._federation.node(n).policy.privacy for n in participants]
        noisy = any(p.noisy for p in policies)
        # The smallest Δ₂² among the participants (each scales its own noise by its own trip bound).
        sensitivity2 = min(sensitivity_squared(aggregate, p.max_trips_per_day) for p in policies)
        rho = round_rho(self._federation.broker.rho_per_round, sensitivity2, threshold)
        rho_text = repr(rho) if noisy else ""
        costs = {
            n: release_cost(
                n,
                self._federation.node(n).policy.privacy,
                aggregate,
                start,
                end,
                rho_text,
                threshold,
                cells,
                query_end=query_end,
            )
            for n in participants
        }
        return RoundBudget(aggregate, rho_text, costs)

    def reserve(self, round_name: str, round_id: bytes, budget: RoundBudget, threshold: int) -> None:
        """Reserve the round's cost on every participant that can afford it (``round_id`` is the mirror's own
        handle for the round); :class:`BudgetExhausted` (naming the agencies, days and what is left) if fewer than
        t can, with nothing reserved."""
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
                self._ledgers[node_id].reserve(round_id, cost.days, cost.rho)

    def settle(self, round_id: bytes, budget: RoundBudget, sent: Collection[str]) -> None:
        """The round ended: charge the agencies whose masked input arrived (``sent``), release the others."""
        for node_id, cost in budget.costs.items():
            if not cost.noisy:
                continue
            ledger = self._ledgers[node_id]
            if node_id in sent:
                # Recorded as the agency recorded it, even where this copy thought the agency could not afford it.
                ledger.charge(round_id, budget.aggregate, cost.days, cost.rho, enforce=False)
            else:
                ledger.release(round_id)

    def sigma(self, budget: RoundBudget, contributors: Sequence[str]) -> float:
        """Upper bound on the standard deviation of each cell of the sum over ``contributors``."""
        return sum_sigma([budget.costs[n].party_sigma2 for n in contributors])

    def left_on(self, contributors: Sequence[str], days: Sequence[str]) -> float:
        """The least ρ left on ``days`` at any noisy agency among ``contributors`` (the broker's ledgers)."""
        lefts = [
            value
            for n in contributors
            if self._federation.node(n).policy.privacy.noisy
            for value in self._ledgers[n].left(days).values()
        ]
        return min(lefts, default=0.0)

    def rho_left(self, budget: RoundBudget, contributors: Sequence[str]) -> float:
        """The least ρ left on any day of the round at any noisy contributor (the broker's ledger)."""
        lefts = [
            value
            for n in contributors
            if budget.costs[n].noisy
            for value in self._ledgers[n].left(budget.costs[n].days).values()
        ]
        return min(lefts, default=0.0)
