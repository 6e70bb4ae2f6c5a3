"""Health aggregates (docs/protocol.md §6, and the trend/warning kinds): one SQL statement each, in the store.

- :func:`cases`: district × status, persons reported in the window (once per status and day).
- :func:`confirmed_daily`: district × day × origin (local, imported), confirmed rows by report or onset date.
- :func:`clusters`: district × day, cluster ids with at least two confirmed cases reported in that district
  in the ``CLUSTER_WINDOW_DAYS`` days ending the day (and within the window).
- :func:`cluster_cases`: district, the confirmed cases of the clusters with at least two of them reported in
  that district in the window (one cell per district, what a tier on the window's last day needs).

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
    "cluster_cases",
    "clusters",
    "confirmed_daily",
]


_STATUS_INDEX = " ".join(f"WHEN '{status}' THEN {i}" for i, status in enumerate(CASE_STATUSES))

# Contribution bound (the privacy unit is a person-day): a person counts once per status and day, at their row
# with the lowest case_id among all their rows of that status and day (case_id is the line list's key), whatever
# its district; the domain is applied after. That makes each day's count a sum of its own (the daily partials
# keep it) and moves at most one count per status when one person-day is removed. row_number() in a derived
# table keeps this standard SQL (no QUALIFY), so other store backends run it unchanged.
_CASES = f"""
WITH {DOMAIN_CTE},
firsts AS (
    SELECT district, status,
           row_number() OVER (PARTITION BY person_id, status, report_date ORDER BY case_id) AS nth
    FROM cases
    WHERE report_date >= $start AND report_date <= $end
      AND status IN ({", ".join(f"'{status}'" for status in CASE_STATUSES)})
)
SELECT dom.idx::BIGINT * {len(CASE_STATUSES)} + (CASE firsts.status {_STATUS_INDEX} END) AS pos,
       count(*)::UBIGINT AS n
FROM firsts
JOIN domain_index AS dom ON dom.district = firsts.district
WHERE nth = 1
GROUP BY ALL
"""


# The confirmed aggregates bound a person the same way: once per day (the date the vector uses), at their
# confirmed row of that day with the lowest case_id.
def _confirmed_daily_sql(date_column: str) -> str:
    return f"""
WITH {DOMAIN_CTE},
firsts AS (
    SELECT district, {date_column} AS day, CASE WHEN imported THEN 1 ELSE 0 END AS origin,
           row_number() OVER (PARTITION BY person_id, {date_column} ORDER BY case_id) AS nth
    FROM cases
    WHERE status = 'confirmed' AND {date_column} >= $start AND {date_column} <= $end
)
SELECT ((dom.idx::BIGINT * $days + (firsts.day - $start)) * 2 + firsts.origin) AS pos, count(*)::UBIGINT AS n
FROM firsts
JOIN domain_index AS dom ON dom.district = firsts.district
WHERE nth = 1
GROUP BY ALL
"""


_CONFIRMED_DAILY = {"report": _confirmed_daily_sql("report_date"), "onset": _confirmed_daily_sql("onset_date")}

# Each confirmed case of a cluster counts on its report day and the 13 days after it; a (district, cluster,
# day) with two or more such cases is a cluster in the 14 days ending that day. A person counts once per report
# day (their confirmed row of that day with the lowest case_id).
_LAGS = ", ".join(f"({k})" for k in range(CLUSTER_WINDOW_DAYS))
_CLUSTERS = f"""
WITH {DOMAIN_CTE},
lags AS (SELECT * FROM (VALUES {_LAGS}) AS lags(k)),
firsts AS (
    SELECT district, cluster_id, report_date,
           row_number() OVER (PARTITION BY person_id, report_date ORDER BY case_id) AS nth
    FROM cases
    WHERE status = 'confirmed' AND report_date >= $start AND report_date <= $end
),
spread AS (
    SELECT firsts.district, firsts.cluster_id, firsts.report_date + lags.k AS day
    FROM firsts CROSS JOIN lags
    WHERE firsts.nth = 1 AND firsts.cluster_id IS NOT NULL
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


# A (district, cluster) with two or more counted confirmed cases in the window contributes all of them; a person
# counts once per report day, as in clusters. Its value is positive exactly where clusters' last day is, but it
# grows with every case of a cluster, and one person-day moves only its district's cell (by at most 2).
_CLUSTER_CASES = f"""
WITH {DOMAIN_CTE},
firsts AS (
    SELECT district, cluster_id,
           row_number() OVER (PARTITION BY person_id, report_date ORDER BY case_id) AS nth
    FROM cases
    WHERE status = 'confirmed' AND report_date >= $start AND report_date <= $end
),
clustered AS (
    SELECT district, cluster_id, count(*) AS n FROM firsts
    WHERE nth = 1 AND cluster_id IS NOT NULL
    GROUP BY district, cluster_id
    HAVING count(*) >= 2
)
SELECT dom.idx::BIGINT AS pos, sum(clustered.n)::UBIGINT AS n
FROM clustered
JOIN domain_index AS dom ON dom.district = clustered.district
GROUP BY dom.idx
"""


def cases(
    con: duckdb.DuckDBPyConnection, domain: npt.NDArray[np.int32], start: dt.date, end: dt.date
) -> npt.NDArray[np.uint64]:
    """District × status: persons with a ``cases`` row of that status reported on a day of [start, end], each
    counted once per status and report day (at that day's row with the lowest case_id); index d_idx*3 + s_idx.

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
    """District × day × origin: persons confirmed on a day of [start, end] (report_date or onset_date), each
    once per day, at that day's confirmed row with the lowest case_id.

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
    [max(start, t − 13), t] (a person counts once per report day, at that day's confirmed row with the lowest
    case_id); index d_idx * days + day_idx.

    Rows outside [start, end] never count: an aggregate reads only its own window.
    """
    days = (end - start).days + 1
    params = {"domain": domain_param(domain), "start": start, "end": end, "days": days}
    return count_vector(con, _CLUSTERS, params, len(domain) * days)


def cluster_cases(
    con: duckdb.DuckDBPyConnection, domain: npt.NDArray[np.int32], start: dt.date, end: dt.date
) -> npt.NDArray[np.uint64]:
    """District: the confirmed persons reported in [start, end] (each once per report day, at that day's confirmed
    row with the lowest case_id) of the cluster ids with at least two such in the district; index d_idx."""
    params = {"domain": domain_param(domain), "start": start, "end": end}
    return count_vector(con, _CLUSTER_CASES, params, len(domain))
