"""A synthetic telecom store of a chosen size for the aggregation benchmark: numpy → DuckDB, national domain.

``subscribers`` persons with a home district (lognormal district weights) each get ``events / subscribers``
signalling events on average, at distinct, uniformly drawn instants of a 14-day window. Between consecutive
events a person stays put (90 %), goes home (5 %) or moves to another district drawn from the same weights
(5 %), so about one event in fifteen ends a trip. Each event is at a random one of its district's
``CELLS_PER_DISTRICT`` cells. Events are written in time order, as an export would be. Seeded: the same
arguments give the same tables.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import numpy as np
import numpy.typing as npt

from adapters.store import create_tables
from federation.registry import load_registry

CELLS_PER_DISTRICT = 4
EVENTS_PER_SUBSCRIBER = 40
WINDOW_START = dt.date(2020, 1, 15)
WINDOW_DAYS = 14
STAY, GO_HOME = 0.90, 0.05
_CELL_ID_BASE = 100_000_000


def _insert(
    con: duckdb.DuckDBPyConnection, table: str, select: str, columns: dict[str, npt.NDArray[np.generic]]
) -> None:
    con.register("source", columns)
    try:
        con.execute(f"INSERT INTO {table} SELECT {select} FROM source")
    finally:
        con.unregister("source")


def write_store(path: Path, events: int, seed: int = 6) -> None:
    """Write ``cells``, ``subscribers`` and ``signalling`` (``events`` rows) into a new DuckDB file."""
    rng = np.random.default_rng(seed)
    codes = load_registry(None).codes.astype(np.int32)
    districts = codes.shape[0]
    weights = np.asarray(rng.lognormal(0.0, 0.8, districts), dtype=np.float64)
    weights /= weights.sum()
    subscribers = max(1, events // EVENTS_PER_SUBSCRIBER)
    home = rng.choice(districts, size=subscribers, p=weights).astype(np.int32)

    # Events per subscriber: a multinomial split of the total, so the table has exactly `events` rows.
    per_subscriber = rng.multinomial(events, np.full(subscribers, 1.0 / subscribers))
    owner = np.repeat(np.arange(subscribers, dtype=np.int64), per_subscriber)
    window_us = WINDOW_DAYS * 86_400 * 1_000_000
    offset_us = rng.integers(0, window_us - 1_000_000, size=events, dtype=np.int64)
    order = np.lexsort((offset_us, owner))
    owner, offset_us = owner[order], offset_us[order]
    first = np.r_[True, owner[1:] != owner[:-1]]
    # Distinct instants per subscriber: add each event's rank within its subscriber (µs) to the sorted draws.
    starts = np.flatnonzero(first)
    rank = np.arange(events, dtype=np.int64) - np.repeat(starts, per_subscriber[per_subscriber > 0])
    offset_us += rank

    # District of each event: a Markov walk per subscriber (segments start at a first event or a move).
    draw = rng.random(events)
    move = (draw >= STAY) | first
    go_home = (draw >= STAY) & (draw < STAY + GO_HOME)
    target = rng.choice(districts, size=events, p=weights).astype(np.int32)
    target[go_home | first] = home[owner[go_home | first]]
    segment = np.cumsum(move) - 1
    district_index = target[np.flatnonzero(move)][segment]
    cell_index = district_index.astype(np.int64) * CELLS_PER_DISTRICT + rng.integers(0, CELLS_PER_DISTRICT, size=events)

    start_us = int(dt.datetime.combine(WINDOW_START, dt.time()).replace(tzinfo=dt.UTC).timestamp()) * 1_000_000
    timestamps = (offset_us + start_us).astype("datetime64[us]")
    by_time = np.argsort(timestamps, kind="stable")
    cell_ids = _CELL_ID_BASE + np.arange(districts * CELLS_PER_DISTRICT, dtype=np.int64)

    path.unlink(missing_ok=True)
    con = duckdb.connect(str(path))
    try:
        create_tables(con, "telecom")
        _insert(
            con, "cells", "cell_id, district", {"cell_id": cell_ids, "district": np.repeat(codes, CELLS_PER_DISTRICT)}
        )
        _insert(
            con,
            "subscribers",
            "subscriber_id, home_district, NULL::VARCHAR AS msisdn",  # no phone numbers: not an itinerary bench
            {"subscriber_id": np.arange(1, subscribers + 1, dtype=np.int64), "home_district": codes[home]},
        )
        _insert(
            con,
            "signalling",
            "subscriber_id, ts::TIMESTAMP, cell_id",
            {
                "subscriber_id": owner[by_time] + 1,
                "ts": timestamps[by_time],
                "cell_id": cell_ids[cell_index[by_time]],
            },
        )
        con.execute("CHECKPOINT")
    finally:
        con.close()
