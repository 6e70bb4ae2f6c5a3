"""Plain-Python recomputation of the mobility cohort aggregates (arrivals, exposure) from raw rows.

The same spirit as ``tests/oracle.py``: whole tables read with ``SELECT *``, the definitions of
``adapters.aggregates.mobility`` recomputed with dicts, sorted lists and the subscriber's *whole* history (the
SQL path reads only the window and the last event before it), sharing no code with the SQL. Returns the same
``uint64`` layouts. Slow on purpose: for small test stores only.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from tests.oracle import Source, rows_of

__all__ = ["oracle_arrivals", "oracle_exposure"]

FOUR_HOURS = dt.timedelta(hours=4)


def _positions(domain: Iterable[int]) -> dict[int, int]:
    return {int(code): i for i, code in enumerate(domain)}


def _histories(con: Source) -> dict[int, list[tuple[dt.datetime, int]]]:
    """subscriber -> every (ts, cell_id), sorted: the event order of the stays and last-event definitions."""
    history: dict[int, list[tuple[dt.datetime, int]]] = defaultdict(list)
    for subscriber_id, ts, cell_id in rows_of(con, "signalling"):
        history[subscriber_id].append((ts, cell_id))
    for events in history.values():
        events.sort()
    return history


def _last_district_of_days(events: list[tuple[dt.datetime, int]], cells: dict[int, int]) -> dict[dt.date, int | None]:
    """day -> district of the day's last event (None when its cell is unknown)."""
    last: dict[dt.date, int | None] = {}
    for ts, cell_id in events:  # sorted, so the last write of a day wins
        last[ts.date()] = cells.get(cell_id)
    return last


def oracle_arrivals(
    con: Source,
    domain: Sequence[int] | npt.NDArray[np.int32],
    start: dt.date,
    end: dt.date,
    home_prefix: str,
) -> npt.NDArray[np.uint64]:
    """Per district: home-region subscribers present in d on a window day t and not present in d on t − 1."""
    position = _positions(domain)
    cells = dict(rows_of(con, "cells"))
    region = {
        s for s, home, *_ in rows_of(con, "subscribers") if home is not None and str(home).startswith(home_prefix)
    }
    arrived: dict[int, set[int]] = defaultdict(set)
    for subscriber_id, events in _histories(con).items():
        if subscriber_id not in region:
            continue
        where = _last_district_of_days(events, cells)
        day = start
        while day <= end:
            district = where.get(day)
            if district in position and where.get(day - dt.timedelta(days=1)) != district:
                arrived[position[district]].add(subscriber_id)
            day += dt.timedelta(days=1)
    values = [0] * len(position)
    for pos, ids in arrived.items():
        values[pos] = len(ids)
    return np.array(values, dtype=np.uint64)


def _window_stays(
    events: list[tuple[dt.datetime, int]], cells: dict[int, int], first: dt.datetime, after: dt.datetime
) -> list[tuple[int, dt.timedelta]]:
    """(district, time inside [first, after)) of every stay of the whole history that the window sees.

    Runs are maximal runs of one area over the whole sorted history (an unknown cell is an area of its own).
    Inside the window a run lasts from max(its first event, ``first``) to the first event after it if that
    falls before ``after``, otherwise to its own last event before ``after``.
    """
    stays: list[tuple[int, dt.timedelta]] = []
    i = 0
    while i < len(events):
        area = cells.get(events[i][1])
        j = i
        while j + 1 < len(events) and cells.get(events[j + 1][1]) == area:
            j += 1
        run = events[i : j + 1]
        seen = [ts for ts, _ in run if ts < after]
        if area is not None and seen:
            following = events[j + 1][0] if j + 1 < len(events) else None
            until = following if following is not None and following < after else seen[-1]
            stays.append((area, until - max(run[0][0], first)))
        i = j + 1
    return stays


def oracle_exposure(
    con: Source,
    domain: Sequence[int] | npt.NDArray[np.int32],
    start: dt.date,
    end: dt.date,
    risk_districts: Iterable[int],
) -> npt.NDArray[np.uint64]:
    """Per district d (index d * 2 + j): j = 0 present on ``end`` and exposed, j = 1 present on ``end``."""
    position = _positions(domain)
    cells = dict(rows_of(con, "cells"))
    risk = set(risk_districts)
    first = dt.datetime.combine(start, dt.time())
    after = dt.datetime.combine(end + dt.timedelta(days=1), dt.time())
    counts = [0] * (2 * len(position))
    for events in _histories(con).values():
        district = _last_district_of_days(events, cells).get(end)
        if district not in position:
            continue
        pos = position[district]
        counts[2 * pos + 1] += 1
        # The stay under way at the window's start is seen only from an event of the day before.
        seen = [e for e in events if e[0] >= first - dt.timedelta(days=1)]
        if any(area in risk and inside >= FOUR_HOURS for area, inside in _window_stays(seen, cells, first, after)):
            counts[2 * pos] += 1
    return np.array(counts, dtype=np.uint64)
