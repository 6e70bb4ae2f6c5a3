"""The official county risk tiers of February 2020 (low / medium / high), as pure functions over counts.

For the 14 days ending a day t, per district:

- **low**: no confirmed case reported in those 14 days (or none ever);
- **medium**: new cases in the 14 days, and cumulative (since the data's first day) ≤ 50, or cumulative > 50
  with no cluster in the 14 days;
- **high**: cumulative > 50 and at least one cluster in the 14 days.

A cluster in the 14 days is a cluster id with at least two confirmed cases reported in those days (the health
aggregate counts it; see ``docs/protocol.md``). A cluster implies new cases, so high needs no separate check on
them. Tiers are int8 codes indexing :data:`TIER_NAMES`.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = [
    "CUMULATIVE_LIMIT",
    "HIGH",
    "LOW",
    "MEDIUM",
    "TIER_NAMES",
    "TIER_WINDOW_DAYS",
    "risk_tiers",
    "tier_history",
    "tier_since",
    "trailing_sums",
]

TIER_NAMES: tuple[str, ...] = ("low", "medium", "high")
LOW, MEDIUM, HIGH = 0, 1, 2
TIER_WINDOW_DAYS = 14
CUMULATIVE_LIMIT = 50  # high needs strictly more than this many cases since the data's first day


def risk_tiers(
    new_14d: npt.NDArray[np.integer], cumulative: npt.NDArray[np.integer], clusters_14d: npt.NDArray[np.integer]
) -> npt.NDArray[np.int8]:
    """The tier of each district (elementwise over arrays of one shape): LOW, MEDIUM or HIGH as int8.

    ``new_14d``: confirmed cases reported in the 14 days ending the day; ``cumulative``: confirmed cases
    reported from the data's first day to that day; ``clusters_14d``: clusters in the 14 days.
    """
    new = np.asarray(new_14d, dtype=np.int64)
    high = (np.asarray(cumulative, dtype=np.int64) > CUMULATIVE_LIMIT) & (np.asarray(clusters_14d, dtype=np.int64) > 0)
    tiers: npt.NDArray[np.int8] = np.where(high, HIGH, np.where(new > 0, MEDIUM, LOW)).astype(np.int8)
    return tiers


def trailing_sums(daily: npt.NDArray[np.integer], days: int = TIER_WINDOW_DAYS) -> npt.NDArray[np.int64]:
    """Sum of the last ``days`` values up to and including each day, along the last axis (int64).

    Near the first day the window holds only the days there are.
    """
    cumulative = np.cumsum(np.asarray(daily, dtype=np.int64), axis=-1)
    shifted = np.zeros_like(cumulative)
    shifted[..., days:] = cumulative[..., :-days]
    result: npt.NDArray[np.int64] = cumulative - shifted
    return result


def tier_history(
    daily_confirmed: npt.NDArray[np.integer], clusters_14d: npt.NDArray[np.integer]
) -> npt.NDArray[np.int8]:
    """The tier of every district on every day, (districts, days) int8.

    ``daily_confirmed`` (districts, days): confirmed cases reported each day from the data's first day;
    ``clusters_14d`` (districts, days): clusters in the 14 days ending each day.
    """
    daily = np.asarray(daily_confirmed, dtype=np.int64)
    return risk_tiers(trailing_sums(daily), np.cumsum(daily, axis=-1), clusters_14d)


def tier_since(history: npt.NDArray[np.int8]) -> npt.NDArray[np.int64]:
    """For each district (row), the index of the first day of the run of equal tiers ending on the last day."""
    rows, days = history.shape
    if days == 0:
        return np.zeros(rows, dtype=np.int64)
    changed = np.zeros((rows, days), dtype=np.bool_)
    changed[:, 0] = True
    changed[:, 1:] = history[:, 1:] != history[:, :-1]
    index = np.where(changed, np.arange(days)[None, :], 0)
    since: npt.NDArray[np.int64] = np.maximum.accumulate(index, axis=1)[:, -1].astype(np.int64)
    return since
