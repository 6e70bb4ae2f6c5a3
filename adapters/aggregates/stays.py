"""Telecom stays: maximal runs of a subscriber's events in one area, as one reusable SQL relation.

A subscriber's events are ordered by ``(ts, cell_id)``. A *stay* in an area (a district, or a prefecture = the
district code // 100) is a maximal run of consecutive events whose cells lie in that area; it lasts from its first
event to the first event after the run, or to its own last event when nothing follows (docs/architecture.md,
"Telecom stays"). An event whose cell is missing from ``cells`` has no area: it ends the run before it and belongs
to no stay.

Shared by the per-subscriber itinerary (prefecture level, ``adapters.itinerary``) and any cohort built from stays
(the ``exposure`` kind, district level): pick the area with :data:`DISTRICT_AREA` / :data:`PREFECTURE_AREA` (or
another trusted SQL expression over ``cells.district``) and restrict the events with a trusted ``WHERE`` fragment
that uses named parameters for every input value — never interpolate a caller's value into either.

The SQL is standard (window functions, ``IS DISTINCT FROM``, ``CAST``/``floor``; no ``QUALIFY``, no ``//``), so
other store backends can run it; only the ``$name`` parameter markers are DuckDB's.

The relation's columns: ``subscriber_id BIGINT, area INTEGER, stay_start TIMESTAMP, stay_end TIMESTAMP``, one
row per stay; ``stay_end >= stay_start``.
"""

from __future__ import annotations

__all__ = ["DISTRICT_AREA", "PREFECTURE_AREA", "stays_sql"]

# Area expressions over the ``cells`` row joined to each event. The prefecture is the district code // 100,
# written with floor() over a real division because ``//`` is DuckDB-only and ``/`` on integers is integer
# division in PostgreSQL but real division in DuckDB.
DISTRICT_AREA = "cells.district"
PREFECTURE_AREA = "CAST(floor(cells.district / 100.0) AS INTEGER)"

# Tag each event with its area and whether it starts a run (the first event, or an area differing from the
# previous event's, NULL counting as an area of its own); keep the run starts. The first event after a run is the
# next run's start, so lead() over the run starts is each stay's end; the last run ends at the subscriber's last
# event. Exact duplicate events sort next to each other in one area, so at most one of them starts a run and the
# order of run starts is total. The area filter comes last: a run of unknown cells still ends the run before it.
_STAYS = """
SELECT subscriber_id, area, stay_start, stay_end
FROM (
    SELECT subscriber_id, area, ts AS stay_start,
           coalesce(lead(ts) OVER (PARTITION BY subscriber_id ORDER BY ts, cell_id), last_ts) AS stay_end
    FROM (
        SELECT signalling.subscriber_id, signalling.ts, signalling.cell_id, {area} AS area,
               CASE WHEN row_number() OVER run_order = 1
                         OR ({area}) IS DISTINCT FROM lag({area}) OVER run_order
                    THEN 1 ELSE 0 END AS run_starts,
               max(signalling.ts) OVER (PARTITION BY signalling.subscriber_id) AS last_ts
        FROM signalling LEFT JOIN cells ON cells.cell_id = signalling.cell_id
        WHERE {events_where}
        WINDOW run_order AS (PARTITION BY signalling.subscriber_id ORDER BY signalling.ts, signalling.cell_id)
    ) AS tagged
    WHERE run_starts = 1
) AS runs
WHERE area IS NOT NULL
"""


def stays_sql(area: str, events_where: str = "TRUE") -> str:
    """The stays relation as one SELECT statement (use it as a CTE: ``WITH stays AS (...)``).

    ``area`` is a trusted SQL expression over ``cells.district`` (:data:`DISTRICT_AREA`, :data:`PREFECTURE_AREA`);
    ``events_where`` a trusted condition on ``signalling`` that selects the events considered, with ``$name``
    parameters for input (e.g. ``"signalling.subscriber_id = $subscriber_id"``). Leaving events out of a
    subscriber's history changes the runs: a filter on time shortens a stay that crosses its edge, so a caller
    that needs true stays near a window's edge must keep the events around it.
    """
    return _STAYS.format(area=area, events_where=events_where)
