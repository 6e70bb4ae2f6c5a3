"""What a coordinator's attack on released answers needs: ask a query as a coordinator, read its flows, and the
binomial bound that holds a noisy federation's exact recoveries to a stated false-failure rate."""

from __future__ import annotations

import asyncio
import datetime as dt
import math

from broker.client import Answer, run_query
from federation.catalog import new_query
from federation.config import FederationConfig

NATIONAL = "nhc-national"
#: The false-failure rate each noisy bound of the attack tests is designed for.
FALSE_FAILURE = 1e-6


def ask(config: FederationConfig, kind: str, start: dt.date, end: dt.date, **params: str) -> Answer:
    """The released answer to one query of ``kind``, signed and asked as the national coordinator."""
    query = new_query(kind, start=start, end=end, params=params, coordinator=NATIONAL)
    return asyncio.run(run_query(config, NATIONAL, query))


def released_flows(answer: Answer) -> dict[tuple[int, int], int]:
    """A ``flows`` answer's rows as {(origin code, destination code): trips}."""
    origin, destination, trips = (answer.columns.index(c) for c in ("origin", "destination", "trips"))
    return {(int(row[origin]), int(row[destination])): int(row[trips]) for row in answer.rows}


def noisy(answer: Answer) -> bool:
    """Whether any round of the answer carried discrete Gaussian noise."""
    return any(p["noise"] == "discrete-gaussian" for p in answer.privacy)


def binomial_bound(trials: int, p: float) -> int:
    """The least c with P(Binomial(trials, p) > c) < :data:`FALSE_FAILURE`."""
    tail = 1.0
    for c in range(trials + 1):
        tail -= math.comb(trials, c) * p**c * (1 - p) ** (trials - c)
        if tail < FALSE_FAILURE:
            return c
    return trials
