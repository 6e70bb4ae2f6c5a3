"""outflow, exposure and return-to-work through a whole federation (real processes, mutual TLS, secure
aggregation, noise off) against oracles computed straight from the raw tables.

k = 1 for both kinds of count, so only zeros are out of the comparison; the disclosure rules themselves are
tested on hand-built sums in test_mobility_kinds.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from broker.client import Answer, run_query
from fedbroker.harness import LocalFederation
from federation.catalog import new_query
from federation.registry import load_registry
from tests import oracle
from tests.federation_fixtures import oracle_sum, roster_variant
from tests.oracle_mobility import oracle_arrivals, oracle_exposure

pytestmark = pytest.mark.slow
NATIONAL = "nhc-national"


@pytest.fixture(scope="module")
def fed(small_scenario: Path) -> Iterator[LocalFederation]:
    roster = roster_variant(small_scenario, small_scenario.parent / "federation.mobility.yaml", mobility_k=1, cases_k=1)
    with LocalFederation(roster, run_dir=small_scenario.parent / "run-mobility") as federation:
        yield federation


def ask(fed: LocalFederation, kind: str, *, end: dt.date, **params: str) -> Answer:
    query = new_query(kind, start=None, end=end, params=params, coordinator=NATIONAL, data_start=fed.config.data_start)
    return asyncio.run(run_query(fed.config, NATIONAL, query))


def as_dicts(columns: list[str], rows: list[list[Any]]) -> list[dict[str, Any]]:
    return [dict(zip(columns, row, strict=True)) for row in rows]


def ols(x: list[float], y: list[float]) -> tuple[float, float]:
    """Intercept and slope by the textbook formulas, in plain Python."""
    mx, my = sum(x) / len(x), sum(y) / len(y)
    slope = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True)) / sum((a - mx) ** 2 for a in x)
    return my - slope * mx, slope


def test_outflow_from_wuhan_matches_the_oracle(fed: LocalFederation) -> None:
    config = fed.config
    codes = load_registry(config.domain.provinces).codes
    end = config.data_end
    start = end - dt.timedelta(days=13)
    answer = ask(fed, "outflow", end=end, home="4201")
    arrivals = oracle_sum(config, "telecom", lambda con: oracle_arrivals(con, codes, start, end, "4201"))
    confirmed = oracle_sum(config, "health", lambda con: oracle.oracle_cases(con, codes, start, end))[0::3]
    want = {
        int(code): (int(a), int(c))
        for code, a, c in zip(codes, arrivals, confirmed, strict=True)
        if a > 0 and int(code) // 100 != 4201
    }
    rows = as_dicts(answer.columns, answer.rows)
    assert {r["area"]: (r["arrivals"], r["confirmed"]) for r in rows} == want
    assert len(want) >= 10, "Wuhan's residents should have left for many districts in the travel season"
    # The fit over every listed destination (k = 1), recomputed by hand.
    x = [math.log1p(a) for a, _ in want.values()]
    y = [math.log1p(c) for _, c in want.values()]
    intercept, slope = ols(x, y)
    fit = dict(zip(answer.tables[0]["columns"], answer.tables[0]["rows"][0], strict=True))
    assert answer.tables[0]["name"] == "fit" and fit["n"] == len(want)
    assert fit["intercept"] == pytest.approx(intercept, rel=1e-9) and fit["slope"] == pytest.approx(slope, rel=1e-9)
    for r in rows:
        a, c = want[int(r["area"])]
        assert r["expected"] == pytest.approx(math.expm1(intercept + slope * math.log1p(a)), rel=1e-9)
        assert r["cases_per_10k"] == pytest.approx(10_000 * c / a)
    assert [r["arrivals"] for r in rows] == sorted((r["arrivals"] for r in rows), reverse=True)


def test_outflow_by_prefecture_sums_the_districts(fed: LocalFederation) -> None:
    config = fed.config
    codes = load_registry(config.domain.provinces).codes
    end = config.data_end
    start = end - dt.timedelta(days=6)
    answer = ask(fed, "outflow", end=end, home="42", level="prefecture", window_days="7")
    assert answer.rows == [], "home 42 is the whole domain: no destination lies outside it"
    answer = ask(fed, "outflow", end=end, home="4201", level="prefecture", window_days="7")
    arrivals = oracle_sum(config, "telecom", lambda con: oracle_arrivals(con, codes, start, end, "4201"))
    want: dict[int, int] = {}
    for code, a in zip(codes.tolist(), arrivals.tolist(), strict=True):
        if code // 100 != 4201 and a:
            want[code // 100] = want.get(code // 100, 0) + a
    assert {r[0]: r[3] for r in answer.rows} == want and len(want) >= 5


def test_exposure_to_wuhan_matches_the_oracle(fed: LocalFederation) -> None:
    config = fed.config
    codes = load_registry(config.domain.provinces).codes
    end = config.data_end
    start = end - dt.timedelta(days=13)
    wuhan = [int(c) for c in codes if c // 100 == 4201]
    answer = ask(fed, "exposure", end=end, risk_districts=",".join(str(c) for c in wuhan))
    counts = oracle_sum(config, "telecom", lambda con: oracle_exposure(con, codes, start, end, wuhan)).reshape(-1, 2)
    want = {int(code): (int(e), int(p)) for code, (e, p) in zip(codes, counts, strict=True) if p > 0}
    rows = as_dicts(answer.columns, answer.rows)
    assert {r["district"]: (r["exposed"], r["present"]) for r in rows} == want
    outside = [e for code, (e, _) in want.items() if code // 100 != 4201]
    assert sum(outside) > 0, "people who stayed in Wuhan should now be elsewhere too"
    assert all(r["exposed_share"] == pytest.approx(r["exposed"] / r["present"]) for r in rows)
    assert np.array_equal(
        counts[:, 1], oracle_sum(config, "telecom", lambda con: oracle.oracle_presence(con, codes, end, end))
    )


def test_return_to_work_matches_the_oracle(fed: LocalFederation) -> None:
    config = fed.config
    registry = load_registry(config.domain.provinces)
    codes = registry.codes
    n = len(codes)
    end = config.data_end
    start = end - dt.timedelta(days=6)
    base_start, base_end = config.data_start, config.data_start + dt.timedelta(days=4)
    answer = ask(
        fed, "return-to-work", end=end, baseline_start=base_start.isoformat(), baseline_end=base_end.isoformat()
    )
    assert answer.query["params"]["cases_start"] == config.data_start.isoformat()
    base = oracle_sum(config, "telecom", lambda con: oracle.oracle_presence(con, codes, base_start, base_end))
    window = oracle_sum(config, "telecom", lambda con: oracle.oracle_presence(con, codes, start, end))
    trips = oracle_sum(config, "telecom", lambda con: oracle.oracle_trips(con, codes, start, end)).reshape(n, n)
    tier_start = end - dt.timedelta(days=13)
    new = oracle_sum(config, "health", lambda con: oracle.oracle_cases(con, codes, tier_start, end))[0::3]
    total = oracle_sum(config, "health", lambda con: oracle.oracle_cases(con, codes, config.data_start, end))[0::3]
    clusters = oracle_sum(config, "health", lambda con: oracle.oracle_clusters(con, codes, tier_start, end))
    on_end = clusters.reshape(n, 14)[:, -1]
    # The February 2020 rule written out again: high = more than 50 cases and a cluster; medium = new cases.
    tier = [
        "high" if t > 50 and c > 0 else "medium" if w > 0 else "low" for w, t, c in zip(new, total, on_end, strict=True)
    ]
    assert "medium" in tier, "the epidemic should give some district a tier above low"
    rows = {r[0]: dict(zip(answer.columns, r, strict=True)) for r in answer.rows}
    assert set(rows) == {int(c) for c in codes}
    for i, code in enumerate(codes.tolist()):
        b = sorted(base.reshape(n, -1)[i].tolist())
        median = (b[len(b) // 2] + b[(len(b) - 1) // 2]) / 2
        mean = sum(window.reshape(n, -1)[i].tolist()) / 7
        row = rows[code]
        assert row["baseline"] == pytest.approx(median) and row["presence"] == pytest.approx(mean)
        assert row["change_pct"] == (pytest.approx(100 * (mean - median) / median) if median else None)
        by_tier = {"high": 0, "medium": 0, "low": 0}
        for o in range(n):
            if o != i:
                by_tier[tier[o]] += int(trips[o, i])
        got = (row["inflow_from_high"], row["inflow_from_medium"], row["inflow_from_low"])
        assert got == (by_tier["high"], by_tier["medium"], by_tier["low"])
    city = [
        float(rows[int(code)]["change_pct"])
        for code, name in zip(codes, registry.names, strict=True)
        if name.endswith("区") and rows[int(code)]["change_pct"] is not None
    ]
    assert city and sum(city) / len(city) < -5, "city presence should dip in the travel season"


def test_exposure_risk_from_warning_is_two_signed_audited_queries(
    fed: LocalFederation, capsys: pytest.CaptureFixture[str]
) -> None:
    from fedbroker.cli import main

    config = fed.config
    end = config.data_end
    tiers = ("high", "medium")
    warning = ask(fed, "warning", end=end)
    expected = sorted(r[0] for r in warning.rows if r[warning.columns.index("tier")] in tiers)
    assert expected, "the small world should have districts with cases in the last 14 days"
    assert (
        main(
            [
                "query",
                "exposure",
                "--federation",
                str(config.path),
                "--as",
                NATIONAL,
                "--risk-from-warning",
                "high,medium",
                "--format",
                "json",
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    document = json.loads(captured.out)
    assert document["query"]["kind"] == "exposure"
    assert document["query"]["params"]["risk_districts"] == ",".join(str(c) for c in expected)
    assert "warning query" in captured.err
    released = [r for r in audit_lines(config.broker.audit_log) if r["event"] == "query.released"]
    assert [r["kind"] for r in released[-2:]] == ["warning", "exposure"]
    # Every carrier opened the exposure round for that signed query and no other list.
    nonce = document["query"]["nonce"]
    for node in config.nodes_of_kind("telecom"):
        opened = [r for r in audit_lines(node.audit_log) if r["event"] == "round.open" and r.get("nonce") == nonce]
        assert [r["aggregate"] for r in opened] == ["telecom.exposure"]
    with pytest.raises(SystemExit) as refused:
        main(["query", "exposure", "--federation", str(config.path), "--as", NATIONAL, "--risk-from-warning", "low"])
    assert refused.value.code == 2 and "high, medium" in capsys.readouterr().err
    both = ["--risk-districts", str(expected[0]), "--risk-from-warning", "high"]
    assert main(["query", "exposure", "--federation", str(config.path), "--as", NATIONAL, *both]) != 0
    assert "not both" in capsys.readouterr().err


def audit_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
