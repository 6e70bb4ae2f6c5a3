"""One subscriber's cities, computed in the carrier's store: prefecture-level stays over the window.

The subscriber is found by number and only that subscriber's events are read (every input value is a bound
parameter). Stays are :mod:`adapters.aggregates.stays` at prefecture level (district code // 100) over the
subscriber's whole history, so a stay that began before the window keeps its true start. A city counts when one
of its stays lasts at least ``min_stay`` in total and overlaps the window ``[start 00:00, end + 1 day 00:00)``;
its *last visit* is the latest end of such a stay. Cities come most recent last visit first, ties by code.
The window ends on the store's last data day (the latest signalling day of any subscriber).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import duckdb

from adapters.aggregates.stays import PREFECTURE_AREA, stays_sql
from adapters.store import window_params

__all__ = ["CityVisit", "SubscriberItinerary", "itinerary_of"]

_SUBSCRIBER_EVENTS = "signalling.subscriber_id IN (SELECT subscriber_id FROM subscribers WHERE msisdn = $msisdn)"

_CITIES = f"""
WITH stays AS ({stays_sql(PREFECTURE_AREA, _SUBSCRIBER_EVENTS)})
SELECT area AS prefecture, max(stay_end) AS last_visit
FROM stays
WHERE stay_end > $start_ts AND stay_start < $end_excl_ts AND stay_end - stay_start >= $min_stay
GROUP BY area
ORDER BY last_visit DESC, prefecture
"""

_LATEST_EVENT = "SELECT max(ts) FROM signalling"


@dataclass(frozen=True)
class CityVisit:
    prefecture: int  # four-digit prefecture code (district code // 100)
    last_visit: dt.datetime  # end of the latest qualifying stay, store local time


@dataclass(frozen=True)
class SubscriberItinerary:
    start: dt.date  # inclusive window
    end: dt.date
    updated: dt.datetime | None  # the store's latest signalling time; None for an empty store
    cities: tuple[CityVisit, ...]


def itinerary_of(
    con: duckdb.DuckDBPyConnection, msisdn: str, *, window_days: int, min_stay: dt.timedelta
) -> SubscriberItinerary:
    """The cities of the subscriber with number ``msisdn`` (none for an unknown number: same shape, no error)."""
    row = con.execute(_LATEST_EVENT).fetchone()
    updated = row[0] if row is not None else None
    if updated is None:
        today = dt.date.today()
        return SubscriberItinerary(today - dt.timedelta(days=window_days - 1), today, None, ())
    assert isinstance(updated, dt.datetime)
    end = updated.date()
    start = end - dt.timedelta(days=window_days - 1)
    params = {"msisdn": msisdn, "min_stay": min_stay, **window_params(start, end)}
    cities = tuple(CityVisit(int(p), v) for p, v in con.execute(_CITIES, params).fetchall())
    return SubscriberItinerary(start, end, updated, cities)
