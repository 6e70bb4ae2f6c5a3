"""Health aggregates (DESIGN §3): case counts by district and status, one SQL statement in DuckDB."""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import numpy.typing as npt

from adapters.store import DOMAIN_CTE, count_vector, domain_param
from federation.vocabulary import CASE_STATUSES

__all__ = ["cases"]

_STATUS_INDEX = " ".join(f"WHEN '{status}' THEN {i}" for i, status in enumerate(CASE_STATUSES))

_CASES = f"""
WITH {DOMAIN_CTE}
SELECT dom.idx::BIGINT * {len(CASE_STATUSES)} + (CASE cases.status {_STATUS_INDEX} END) AS pos,
       count(*)::UBIGINT AS n
FROM cases
JOIN domain_index AS dom ON dom.district = cases.district
WHERE cases.report_date >= $start AND cases.report_date <= $end
  AND cases.status IN ({", ".join(f"'{status}'" for status in CASE_STATUSES)})
GROUP BY ALL
"""


def cases(
    con: duckdb.DuckDBPyConnection, domain: npt.NDArray[np.int32], start: dt.date, end: dt.date
) -> npt.NDArray[np.uint64]:
    """District × status: rows of ``cases`` with report_date in [start, end]; index d_idx*3 + s_idx.

    Statuses are ordered as :data:`federation.vocabulary.CASE_STATUSES`; rows with any other status are ignored.
    """
    params = {"domain": domain_param(domain), "start": start, "end": end}
    return count_vector(con, _CASES, params, len(domain) * len(CASE_STATUSES))
