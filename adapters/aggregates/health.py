"""Health aggregates (docs/protocol.md §6, and the trend/warning kinds): one SQL statement each, in the store.

- :func:`cases`: district × status, rows reported in the window.
- :func:`confirmed_daily`: district × day × origin (local, imported), confirmed rows by report or onset date.
- :func:`clusters`: district × day, cluster ids with at least two confirmed cases reported in that district
  in the ``CLUSTER_WINDOW_DAYS`` days ending the day (and within the window).

The SQL keeps to standard SQL (joins, ``CASE``, ``VALUES``, ``GROUP BY ... HAVING``, date − date = days,
date + integer) apart from the domain relation, so that other store backends can run it unchanged.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import numpy.typing as npt

from adapters.store import DOMAIN_CTE, count_vector, domain_param
from federation.vocabulary import CASE_ORIGINS, CASE_STATUSES, CLUSTER_WINDOW_DAYS

__all__ = [
    "cases",
    "clusters",
    "confirmed_daily",
]


_STATUS_INDEX = " ".join(f"WHEN '{status}' THEN {i}" for i, status in enumerate(CASE_STATUSES))

# A person counts once per status in the window (the privacy unit's contribution bound): their first row of that
# status by (report_date, case_id) among the rows this vector counts. row_number() in a derived table keeps this
# standard SQL (no QUALIFY), so other store backends run it unchanged.
_CASES = f"""
WITH {DOMAIN_CTE},
numbered AS (
    SELECT dom.idx::BIGINT * {len(CASE_STATUSES)} + (CASE cases.status {_STATUS_INDEX} END) AS pos,
           row_number() OVER (
               PARTITION BY cases.person_id, cases.status ORDER BY cases.report_date, cases.case_id
           ) AS nth
    FROM cases
    JOIN domain_index AS dom ON dom.district = cases.district
    WHERE cases.report_date >= $start AND cases.report_date <= $end
      AND cases.status IN ({", ".join(f"'{status}'" for status in CASE_STATUSES)})
)
SELECT pos, count(*)::UBIGINT AS n FROM numbered WHERE nth = 1 GROUP BY pos
"""


# The confirmed aggregates count a person once: at their first confirmed row in the window (by the date used,
# then case_id) among the domain's rows. That bounds what one person adds (docs/security.md, sensitivities).
def _confirmed_daily_sql(date_column: str) -> str:
    return f"""
WITH {DOMAIN_CTE},
numbered AS (
    SELECT dom.idx AS idx, cases.{date_column} AS day, CASE WHEN cases.imported THEN 1 ELSE 0 END AS origin,
           row_number() OVER (PARTITION BY cases.person_id ORDER BY cases.{date_column}, cases.case_id) AS nth
    FROM cases
    JOIN domain_index AS dom ON dom.district = cases.district
    WHERE cases.status = 'confirmed'
      AND cases.{date_column} >= $start AND cases.{date_column} <= $end
)
SELECT ((idx::BIGINT * $days + (day - $start)) * 2 + origin) AS pos, count(*)::UBIGINT AS n
FROM numbered
WHERE nth = 1
GROUP BY idx, day, origin
"""


_CONFIRMED_DAILY = {"report": _confirmed_daily_sql("report_date"), "onset": _confirmed_daily_sql("onset_date")}

# Each confirmed case of a cluster counts on its report day and the 13 days after it; a (district, cluster,
# day) with two or more such cases is a cluster in the 14 days ending that day. A person counts once, at their
# first confirmed row reported in the window among the domain's rows.
_LAGS = ", ".join(f"({k})" for k in range(CLUSTER_WINDOW_DAYS))
_CLUSTERS = f"""
WITH {DOMAIN_CTE},
lags AS (SELECT * FROM (VALUES {_LAGS}) AS lags(k)),
numbered AS (
    SELECT cases.district, cases.cluster_id, cases.report_date,
           row_number() OVER (PARTITION BY cases.person_id ORDER BY cases.report_date, cases.case_id) AS nth
    FROM cases
    JOIN domain_index AS dom ON dom.district = cases.district
    WHERE cases.status = 'confirmed' AND cases.report_date >= $start AND cases.report_date <= $end
),
spread AS (
    SELECT numbered.district, numbered.cluster_id, numbered.report_date + lags.k AS day
    FROM numbered CROSS JOIN lags
    WHERE numbered.nth = 1 AND numbered.cluster_id IS NOT NULL
),
active AS (
    SELECT district, cluster_id, day FROM spread
    WHERE day <= $end
    GROUP BY district, cluster_id, day
    HAVING count(*) >= 2
)
SELECT dom.idx::BIGINT * $days + (active.day - $start) AS pos, count(*)::UBIGINT AS n
FROM active
JOIN domain_index AS dom ON dom.district = active.district
GROUP BY dom.idx, active.day
"""


def cases(
    con: duckdb.DuckDBPyConnection, domain: npt.NDArray[np.int32], start: dt.date, end: dt.date
) -> npt.NDArray[np.uint64]:
    """District × status: persons with a ``cases`` row of that status reported in [start, end], each counted
    once per status (at their first such row); index d_idx*3 + s_idx.

    Statuses are ordered as :data:`federation.vocabulary.CASE_STATUSES`; rows with any other status are ignored.
    """
    params = {"domain": domain_param(domain), "start": start, "end": end}
    return count_vector(con, _CASES, params, len(domain) * len(CASE_STATUSES))


def confirmed_daily(
    con: duckdb.DuckDBPyConnection,
    domain: npt.NDArray[np.int32],
    start: dt.date,
    end: dt.date,
    date: str = "report",
) -> npt.NDArray[np.uint64]:
    """District × day × origin: persons confirmed in [start, end] (report_date or onset_date), each once, at
    their first confirmed row in the window.

    Index (d_idx * days + day_idx) * 2 + o, o = 0 local (``imported`` false or NULL), 1 imported; ``date`` is
    "report" or "onset" (a row without an onset date is not counted by onset).
    """
    days = (end - start).days + 1
    params = {"domain": domain_param(domain), "start": start, "end": end, "days": days}
    return count_vector(con, _CONFIRMED_DAILY[date], params, len(domain) * days * len(CASE_ORIGINS))


def clusters(
    con: duckdb.DuckDBPyConnection, domain: npt.NDArray[np.int32], start: dt.date, end: dt.date
) -> npt.NDArray[np.uint64]:
    """District × day: cluster ids with at least two confirmed persons reported in the district within
    [max(start, t − 13), t] (a person counts once, at their first confirmed row in the window); index
    d_idx * days + day_idx.

    Rows outside [start, end] never count: an aggregate reads only its own window.
    """
    days = (end - start).days + 1
    params = {"domain": domain_param(domain), "start": start, "end": end, "days": days}
    return count_vector(con, _CLUSTERS, params, len(domain) * days)
