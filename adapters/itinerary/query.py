"""One subscriber's cities, computed in the carrier's store: prefecture-level stays over the window.

The subscriber is found by number and only that subscriber's events are read. Stays are
:mod:`adapters.aggregates.stays` at prefecture level (district code // 100) over the subscriber's whole history,
so a stay that began before the window keeps its true start. A city counts when one of its stays lasts at least
``min_stay`` in total and overlaps the window ``[start 00:00, end + 1 day 00:00)``; its *last visit* is the
latest end of such a stay. Cities come most recent last visit first, ties by code. The window ends on the
store's last data day (the latest signalling day of any subscriber).

One statement, run inside the store on every engine (DuckDB, PostgreSQL, Spark: :class:`adapters.backends.Store`);
the number is always a bound parameter (``$msisdn``, ``%(msisdn)s``, Spark's ``:msisdn``), the window bounds are
bound (DuckDB, PostgreSQL) or rendered as timestamp literals (Spark, whose parameter binding would read a naive
time in the Python process's zone), and the minimum stay is the carrier's own configured whole seconds.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from adapters.aggregates.spark import literal
from adapters.aggregates.stays import PREFECTURE_AREA, stays_sql
from adapters.backends import Store
from federation.errors import ConfigError

__all__ = ["CityVisit", "SubscriberItinerary", "is_subscriber", "itinerary_of"]

# Each engine's spelling of a bound parameter.
_MARKERS: Mapping[str, str] = {"duckdb": "${}", "postgresql": "%({})s", "spark": ":{}"}

_SUBSCRIBER = "SELECT subscriber_id FROM subscribers WHERE msisdn = {msisdn}"

_CITIES = """
WITH stays AS ({stays})
SELECT area AS prefecture, max(stay_end) AS last_visit
FROM stays
WHERE stay_end > {start_ts} AND stay_start < {end_excl_ts}
  AND stay_end - stay_start >= INTERVAL '{min_stay_s}' SECOND
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


def _marker(store: Store, name: str) -> str:
    try:
        return _MARKERS[store.dialect].format(name)
    except KeyError:
        raise ConfigError(f"no itinerary SQL for a {store.dialect} store") from None


def is_subscriber(store: Store, msisdn: str) -> bool:
    """Whether ``msisdn`` (a checked E.164 number) is one of this carrier's subscribers."""
    sql = f"SELECT count(*) FROM ({_SUBSCRIBER.format(msisdn=_marker(store, 'msisdn'))}) AS holder"
    ((count,),) = store.rows(sql, {"msisdn": msisdn})
    return int(count) > 0


def itinerary_of(store: Store, msisdn: str, *, window_days: int, min_stay: dt.timedelta) -> SubscriberItinerary:
    """The cities of the subscriber with number ``msisdn`` (none for an unknown number: same shape, no error).

    ``min_stay`` is used to the whole second (the carrier's configured hours).
    """
    ((updated,),) = store.rows(_LATEST_EVENT)
    if updated is None:
        today = dt.date.today()
        return SubscriberItinerary(today - dt.timedelta(days=window_days - 1), today, None, ())
    assert isinstance(updated, dt.datetime)
    end = updated.date()
    start = end - dt.timedelta(days=window_days - 1)
    start_ts = dt.datetime.combine(start, dt.time())
    end_excl_ts = dt.datetime.combine(end + dt.timedelta(days=1), dt.time())
    params: dict[str, Any] = {"msisdn": msisdn}
    if store.dialect == "spark":
        bounds = {"start_ts": literal(start_ts), "end_excl_ts": literal(end_excl_ts)}
    else:
        params |= {"start_ts": start_ts, "end_excl_ts": end_excl_ts}
        bounds = {name: _marker(store, name) for name in ("start_ts", "end_excl_ts")}
    events = f"signalling.subscriber_id IN ({_SUBSCRIBER.format(msisdn=_marker(store, 'msisdn'))})"
    sql = _CITIES.format(stays=stays_sql(PREFECTURE_AREA, events), min_stay_s=int(min_stay.total_seconds()), **bounds)
    cities = tuple(CityVisit(int(p), v) for p, v in store.rows(sql, params))
    return SubscriberItinerary(start, end, updated, cities)
