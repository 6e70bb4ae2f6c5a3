"""Telecom stays SQL against a plain-Python recomputation over the raw signalling rows."""

from __future__ import annotations

import datetime as dt
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import duckdb
import pytest

from adapters.aggregates.stays import DISTRICT_AREA, PREFECTURE_AREA, stays_sql
from adapters.store import create_tables, open_store

Stay = tuple[int, int, dt.datetime, dt.datetime]  # subscriber_id, area, start, end

T0 = dt.datetime(2024, 3, 1)
# Districts 420102, 420103 share prefecture 4201; 420502 is prefecture 4205. Cell 99 is never listed.
CELLS = [(1, 420102), (2, 420103), (3, 420502), (4, 420502)]


def oracle_stays(con: duckdb.DuckDBPyConnection, prefecture: bool) -> list[Stay]:
    """Stays recomputed from ``SELECT *`` rows: sort each subscriber's events, split into maximal runs."""
    cells: dict[int, int] = dict(con.execute("SELECT * FROM cells").fetchall())
    events: dict[int, list[tuple[dt.datetime, int]]] = defaultdict(list)
    for subscriber_id, ts, cell_id in con.execute("SELECT * FROM signalling").fetchall():
        events[subscriber_id].append((ts, cell_id))
    stays: list[Stay] = []
    for subscriber_id, rows in events.items():
        rows.sort()
        areas: list[int | None] = []
        for _, cell_id in rows:
            district = cells.get(cell_id)
            areas.append(None if district is None else (district // 100 if prefecture else district))
        i = 0
        while i < len(rows):
            j = i
            while j + 1 < len(rows) and areas[j + 1] == areas[i]:
                j += 1
            end = rows[j + 1][0] if j + 1 < len(rows) else rows[j][0]
            area = areas[i]
            if area is not None:
                stays.append((subscriber_id, area, rows[i][0], end))
            i = j + 1
    return sorted(stays)


def sql_stays(con: duckdb.DuckDBPyConnection, area: str, where: str = "TRUE", **params: Any) -> list[Stay]:
    rows: list[Stay] = con.execute(stays_sql(area, where), params).fetchall()
    return sorted(rows)


def store(path: Path, signalling: list[tuple[int, dt.datetime, int]]) -> duckdb.DuckDBPyConnection:
    con = open_store(path, read_only=False)
    create_tables(con, "telecom")
    con.executemany("INSERT INTO cells VALUES (?, ?)", [list(c) for c in CELLS])
    if signalling:
        con.executemany("INSERT INTO signalling VALUES (?, ?, ?)", [list(e) for e in signalling])
    return con


def h(hours: float) -> dt.datetime:
    return T0 + dt.timedelta(hours=hours)


def test_runs_ends_and_unknown_cells(tmp_path: Path) -> None:
    con = store(
        tmp_path / "t.duckdb",
        [
            # 1: 4201 (two districts) 0h..5h, then 4205 5h..6h; the last run ends at its own last event.
            (1, h(0), 1),
            (1, h(2), 2),
            (1, h(5), 3),
            (1, h(6), 4),
            # 2: an unknown cell ends the run before it and makes no stay of its own.
            (2, h(0), 1),
            (2, h(3), 99),
            (2, h(4), 1),
            # 3: a tie in ts: cell 3 sorts after cell 1, so 4201 lasts 0h..0h and 4205 from then on.
            (3, h(1), 3),
            (3, h(1), 1),
            # 4: exact duplicates are one run.
            (4, h(1), 2),
            (4, h(1), 2),
        ],
    )
    assert sql_stays(con, PREFECTURE_AREA) == [
        (1, 4201, h(0), h(5)),
        (1, 4205, h(5), h(6)),
        (2, 4201, h(0), h(3)),
        (2, 4201, h(4), h(4)),
        (3, 4201, h(1), h(1)),
        (3, 4205, h(1), h(1)),
        (4, 4201, h(1), h(1)),
    ]
    district = sql_stays(con, DISTRICT_AREA)
    assert (1, 420102, h(0), h(2)) in district and (1, 420103, h(2), h(5)) in district
    assert district == oracle_stays(con, prefecture=False)


def test_one_subscriber_filter(tmp_path: Path) -> None:
    con = store(tmp_path / "t.duckdb", [(1, h(0), 1), (1, h(1), 3), (2, h(0), 3)])
    rows = sql_stays(con, PREFECTURE_AREA, "signalling.subscriber_id = $subscriber_id", subscriber_id=2)
    assert rows == [(2, 4205, h(0), h(0))]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_store_matches_oracle(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    cell_ids = [1, 2, 3, 4, 99]
    events = [(rng.randrange(20), h(rng.randrange(0, 96 * 60) / 60), rng.choice(cell_ids)) for _ in range(600)]
    con = store(tmp_path / "t.duckdb", events)
    assert sql_stays(con, PREFECTURE_AREA) == oracle_stays(con, prefecture=True)
    assert sql_stays(con, DISTRICT_AREA) == oracle_stays(con, prefecture=False)
