"""``fedbroker query exposure --risk-from-warning high[,medium]``: find the risk districts with a warning query.

A client-side convenience, not a query parameter: the client first signs and runs a ``warning`` query for the
same ``--end`` (over the data since its first day), takes the districts whose tier on that day is one of those
asked for, and then signs the ``exposure`` query with exactly that list. So there are two signed queries, each
audited by the broker and every adapter on its own, and the adapters of the exposure round see the list they
compute over. A provincial coordinator's warning lists its own districts only, so its risk list is too.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import date

from broker.client import Answer, run_query
from federation.catalog import new_query
from federation.config import FederationConfig
from federation.epi.tiers import TIER_NAMES
from federation.errors import InvalidQuery
from federation.v1 import broker_pb2

__all__ = ["FLAG", "add_flag", "parse_tiers", "risk_districts_from_warning"]

FLAG = "--risk-from-warning"
#: Only elevated tiers can define a risk area: "low" would make every quiet district a risk district.
RISK_TIERS = ("high", "medium")
assert set(RISK_TIERS) < set(TIER_NAMES)


def parse_tiers(text: str) -> tuple[str, ...]:
    """``"high,medium"`` -> ("high", "medium"); argparse error naming the allowed tiers otherwise."""
    tiers = tuple(dict.fromkeys(part.strip() for part in text.split(",")))
    bad = [t for t in tiers if t not in RISK_TIERS]
    if not tiers or bad:
        raise argparse.ArgumentTypeError(f"{text!r}: give warning tiers from {', '.join(RISK_TIERS)}, e.g. high,medium")
    return tiers


def add_flag(parser: argparse._ActionsContainer) -> None:
    parser.add_argument(
        FLAG,
        dest="risk_from_warning",
        type=parse_tiers,
        metavar="TIER[,TIER]",
        help="run a warning query for --end first and use the districts of these tiers (high, medium) as "
        "--risk-districts: two signed queries, both audited",
    )


async def risk_districts_from_warning(
    federation: FederationConfig,
    coordinator: str,
    end: date,
    tiers: tuple[str, ...],
    *,
    broker_address: str | None = None,
    on_progress: Callable[[broker_pb2.Progress], None] | None = None,
) -> tuple[tuple[int, ...], Answer]:
    """Run the warning query and return (districts of ``tiers`` on ``end``, ascending; the warning answer).

    InvalidQuery when no district has one of the tiers: there would be nothing to compute exposure to.
    """
    warning = new_query(
        "warning", start=None, end=end, params={}, coordinator=coordinator, data_start=federation.data_start
    )
    answer = await run_query(federation, coordinator, warning, broker_address=broker_address, on_progress=on_progress)
    district_at, tier_at = answer.columns.index("district"), answer.columns.index("tier")
    found = tuple(sorted(int(row[district_at]) for row in answer.rows if row[tier_at] in tiers))
    if not found:
        raise InvalidQuery(
            f"the warning query for {end} found no district of tier {' or '.join(tiers)}; "
            "give --risk-districts yourself or choose other tiers"
        )
    return found, answer
