"""The February 2020 risk tiers: the rule's boundaries and the run a district's tier has held."""

from __future__ import annotations

import numpy as np

from federation.epi.tiers import HIGH, LOW, MEDIUM, TIER_NAMES, risk_tiers, tier_history, tier_since, trailing_sums


def test_the_rule_at_its_boundaries() -> None:
    new = np.array([0, 0, 1, 1, 5, 5, 2])
    cumulative = np.array([0, 80, 50, 50, 51, 51, 51])
    clusters = np.array([0, 0, 0, 1, 0, 1, 1])
    assert risk_tiers(new, cumulative, clusters).tolist() == [LOW, LOW, MEDIUM, MEDIUM, MEDIUM, HIGH, HIGH]
    assert TIER_NAMES[HIGH] == "high"


def test_a_case_leaves_the_14_days_after_day_14() -> None:
    daily = np.zeros((1, 20), dtype=np.int64)
    daily[0, 3] = 1
    # Reported on day 3: in the 14 days ending days 3 .. 16, gone from day 17.
    assert trailing_sums(daily)[0].tolist() == [0, 0, 0] + [1] * 14 + [0, 0, 0]
    history = tier_history(daily, np.zeros_like(daily))
    assert history[0, 16] == MEDIUM and history[0, 17] == LOW
    assert tier_since(history).tolist() == [17]


def test_tier_history_and_since() -> None:
    daily = np.zeros((3, 30), dtype=np.int64)
    daily[0, 0] = 51  # 51 cases on day 0: medium until a cluster shows up
    clusters = np.zeros_like(daily)
    clusters[0, 5:12] = 1  # a cluster in the 14 days ending days 5..11
    daily[1, 25] = 2  # late cases: medium since day 25
    history = tier_history(daily, clusters)
    assert history[0, :14].tolist() == [MEDIUM] * 5 + [HIGH] * 7 + [MEDIUM] * 2
    assert history[0, 14:].tolist() == [LOW] * 16
    assert tier_since(history).tolist() == [14, 25, 0]
    assert tier_since(np.zeros((2, 0), dtype=np.int8)).tolist() == [0, 0]
