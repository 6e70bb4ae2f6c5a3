"""``trend`` and ``warning`` through a whole federation (real processes, mutual TLS, secure aggregation) against an
oracle computed straight from the raw case rows, with k = 1 (nothing but zeros suppressed) and no noise.

The statistics themselves (EpiEstim's Rt, incidence's growth, surveillance's EARS) are checked against R in
test_epi_reference.py; here the oracle recomputes every series and tier from raw rows in plain Python and feeds
those series to the same R-checked functions, so what is tested is the aggregation, the join and the release.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import duckdb
import numpy as np
import pytest

from broker.client import Answer, run_query
from fedbroker.cli import main as fedbroker_main
from fedbroker.harness import LocalFederation
from federation.catalog import new_query
from federation.config import FederationConfig
from federation.epi.ears import ears_c1, ears_c2, ears_c3
from federation.epi.growth import fit_growth
from federation.epi.rt import MIN_WINDOW_CASES, estimate_rt
from federation.registry import load_registry
from tests import oracle
from tests.federation_fixtures import EXACT, oracle_sum, roster_variant

pytestmark = pytest.mark.slow
NATIONAL = "nhc-national"
PROVINCES = (42,)
DAYS = 60


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    from fedbroker.scenario import generate_scenario

    out = tmp_path_factory.mktemp("epidemic") / "hubei-60"
    generate_scenario(out, provinces=list(PROVINCES), subscribers=8_000, days=DAYS, seed=3)
    roster = roster_variant(
        out / "federation.yaml", out / "federation.k1.yaml", mobility_k=1, cases_k=1, privacy=EXACT
    )  # exact sums (noise: none): the answers are compared with the raw tables
    with LocalFederation(roster, run_dir=out / "run") as federation:
        yield federation


def ask(fed: LocalFederation, kind: str, *, end: dt.date, start: dt.date | None = None, **params: str) -> Answer:
    config = fed.config
    query = new_query(kind, start=start, end=end, params=params, coordinator=NATIONAL, data_start=config.data_start)
    return asyncio.run(run_query(config, NATIONAL, query))


# -- the oracle: raw case rows, plain Python --------------------------------------------------------------------


def raw_confirmed(config: FederationConfig) -> list[tuple[str, int, dt.date, dt.date | None, bool, int | None]]:
    """(network, district, report_date, onset_date, imported, cluster_id) of every confirmed row."""
    rows = []
    for node in config.nodes_of_kind("health"):
        con = duckdb.connect(str(node.store), read_only=True)
        try:
            found = con.execute(
                "SELECT district, report_date, onset_date, imported, cluster_id FROM cases WHERE status = 'confirmed'"
            ).fetchall()
        finally:
            con.close()
        rows += [(node.id, d, report, onset, bool(imported), cluster) for d, report, onset, imported, cluster in found]
    return rows


def daily_by_district(
    rows: list[tuple[str, int, dt.date, dt.date | None, bool, int | None]], start: dt.date, end: dt.date, by: str
) -> dict[int, list[list[int]]]:
    """district -> [[local, imported] per day of start..end]."""
    days = (end - start).days + 1
    series: dict[int, list[list[int]]] = defaultdict(lambda: [[0, 0] for _ in range(days)])
    for _network, district, report, onset, imported, _cluster in rows:
        day = report if by == "report" else onset
        if day is not None and start <= day <= end:
            series[district][(day - start).days][1 if imported else 0] += 1
    return series


def oracle_tier(new: int, cumulative: int, clusters: int) -> str:
    if cumulative > 50 and clusters > 0:
        return "high"
    return "medium" if new > 0 else "low"


def clusters_on(
    rows: list[tuple[str, int, dt.date, dt.date | None, bool, int | None]], district: int, start: dt.date, day: dt.date
) -> int:
    """Clusters of ``district`` in the 14 days ending ``day`` (not before ``start``), per network, summed."""
    first = max(start, day - dt.timedelta(days=13))
    cases: dict[tuple[str, int], int] = defaultdict(int)
    for network, d, report, _onset, _imported, cluster in rows:
        if d == district and cluster is not None and first <= report <= day:
            cases[(network, cluster)] += 1
    return sum(1 for count in cases.values() if count >= 2)


# -- trend ------------------------------------------------------------------------------------------------------


def table(answer: Answer, name: str | None = None) -> list[dict[str, Any]]:
    if name is None:
        return [dict(zip(answer.columns, row, strict=True)) for row in answer.rows]
    found = next(t for t in answer.tables if t["name"] == name)
    return [dict(zip(found["columns"], row, strict=True)) for row in found["rows"]]


@pytest.mark.parametrize(("level", "by"), [("prefecture", "report"), ("district", "onset"), ("national", "report")])
def test_trend_matches_the_oracle(fed: LocalFederation, level: str, by: str) -> None:
    config = fed.config
    start, end = config.data_start, config.data_end
    answer = ask(fed, "trend", end=end, level=level, by=by)
    registry = load_registry(PROVINCES)
    rows = raw_confirmed(config)
    per_district = daily_by_district(rows, start, end, by)
    # Sum districts into areas in plain Python.
    areas: dict[int, list[list[int]]] = {}
    for district, series in per_district.items():
        code = district if level == "district" else district // 100 if level == "prefecture" else 0
        if district not in set(registry.codes.tolist()):
            continue
        total = areas.setdefault(code, [[0, 0] for _ in series])
        for t, (local, imported) in enumerate(series):
            total[t][0] += local
            total[t][1] += imported
    got = table(answer)
    assert sorted({r["area"] for r in got}) == sorted(code for code, s in areas.items() if any(sum(x) for x in s))
    days = (end - start).days + 1
    for code, series in areas.items():
        mine = [r for r in got if r["area"] == code]
        if not any(sum(x) for x in series):
            continue
        assert [r["date"] for r in mine] == [(start + dt.timedelta(days=t)).isoformat() for t in range(days)]
        assert [[r["local"], r["imported"]] for r in mine] == series
        assert [r["confirmed"] for r in mine] == [a + b for a, b in series]
        local_series = np.array([[x[0] for x in series]])
        imported_series = np.array([[x[1] for x in series]])
        expected = estimate_rt(local_series, imported_series, si_mean=4.7, si_sd=2.9, window_days=7)
        for t, row in enumerate(mine):
            window = sum(sum(x) for x in series[max(0, t - 6) : t + 1])
            if t >= 7 and window >= MIN_WINDOW_CASES:
                assert row["r_mean"] == pytest.approx(expected.mean[0, t], rel=1e-12)
                assert row["r_lower"] == pytest.approx(expected.lower[0, t], rel=1e-12)
                assert row["r_upper"] == pytest.approx(expected.upper[0, t], rel=1e-12)
            else:
                assert row["r_mean"] is None and row["r_upper"] is None
        summary = next(r for r in table(answer, "areas") if r["area"] == code)
        confirmed = np.array([[a + b for a, b in series]])
        growth = fit_growth(confirmed, days=14)
        if confirmed[0, -14:].sum() >= MIN_WINDOW_CASES:
            assert summary["growth_rate"] == pytest.approx(growth.rate[0], rel=1e-12)
        else:
            assert summary["growth_rate"] is None
        assert summary["cases"] == int(confirmed.sum())
    assert answer.contributors["confirmed"]["contributed"] == ["health-net-1", "health-net-2", "health-net-3"]


def test_trend_finds_the_peak_and_turning_point_of_the_epicentre(fed: LocalFederation) -> None:
    config = fed.config
    answer = ask(fed, "trend", end=config.data_end, level="prefecture")
    wuhan = next(r for r in table(answer, "areas") if r["area"] == 4201)
    peak = dt.date.fromisoformat(wuhan["peak_date"])
    turning = dt.date.fromisoformat(wuhan["turning_point"])
    assert config.data_start < peak < turning < config.data_end
    # The turning point is what its rule says: the released upper bound stays below 1 for 7 days from it on.
    series = {r["date"]: r for r in table(answer) if r["area"] == 4201}
    run = [series[(turning + dt.timedelta(days=i)).isoformat()]["r_upper"] for i in range(7)]
    assert all(u is not None and u < 1 for u in run)
    before = [r for d, r in series.items() if peak < dt.date.fromisoformat(d) < turning]
    assert all(  # no earlier 7-day run after the peak
        not all(
            series.get((dt.date.fromisoformat(r["date"]) + dt.timedelta(days=i)).isoformat(), {}).get("r_upper")
            is not None
            and series[(dt.date.fromisoformat(r["date"]) + dt.timedelta(days=i)).isoformat()]["r_upper"] < 1
            for i in range(7)
        )
        for r in before
    )


# -- warning ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [30, DAYS - 1])
def test_warning_matches_the_oracle(fed: LocalFederation, offset: int) -> None:
    config = fed.config
    start = config.data_start
    end = start + dt.timedelta(days=offset)
    answer = ask(fed, "warning", end=end)
    registry = load_registry(PROVINCES)
    codes = registry.codes
    rows = raw_confirmed(config)
    per_district = daily_by_district(rows, start, end, "report")
    first = end - dt.timedelta(days=13)
    trips = oracle_sum(config, "telecom", lambda con: oracle.oracle_trips(con, codes, first, end))
    residents = oracle_sum(config, "telecom", lambda con: oracle.oracle_residents(con, codes))
    n = len(codes)
    flows = trips.reshape(n, n).astype(np.float64)
    got = {r["district"]: r for r in table(answer)}
    assert sorted(got) == sorted(codes.tolist())
    daily_totals = {
        int(c): [sum(x) for x in per_district[int(c)]] if int(c) in per_district else [0] * (offset + 1) for c in codes
    }
    new_by_origin = np.array([sum(daily_totals[int(c)][-14:]) for c in codes], dtype=np.float64)
    weights = np.divide(new_by_origin, residents, out=np.zeros(n), where=residents > 0)
    tiers_seen = set()
    for i, code in enumerate(codes.tolist()):
        daily = daily_totals[code]
        new, cumulative = sum(daily[-14:]), sum(daily)
        clusters = clusters_on(rows, code, start, end)
        row = got[code]
        assert (row["new_14d"], row["cumulative"], row["clusters_14d"]) == (new, cumulative, clusters), code
        assert row["tier"] == oracle_tier(new, cumulative, clusters), code
        tiers_seen.add(row["tier"])
        # tier_since: walk back while the tier of each earlier day is the same.
        since = offset
        while since > 0:
            day = start + dt.timedelta(days=since - 1)
            earlier = oracle_tier(
                sum(daily[max(0, since - 14) : since]), sum(daily[:since]), clusters_on(rows, code, start, day)
            )
            if earlier != row["tier"]:
                break
            since -= 1
        assert row["tier_since"] == (start + dt.timedelta(days=since)).isoformat(), code
        for name, method in (("c1", ears_c1), ("c2", ears_c2), ("c3", ears_c3)):
            result = method(np.array(daily))
            expected = None if np.isnan(result.upper_bound[-1]) else bool(result.alarm[-1])
            assert row[name] == expected, (code, name)
        index = float(sum(flows[o, i] * weights[o] for o in range(n) if o != i))
        assert row["importation_alert"] == (index >= 1.0), code
    assert "medium" in tiers_seen
    assert answer.contributors["trips"]["contributed"] == ["telecom-a", "telecom-b", "telecom-c"]
    assert answer.contributors["clusters"]["contributed"] == ["health-net-1", "health-net-2", "health-net-3"]


# -- the command line ---------------------------------------------------------------------------------------------


def test_cli_shows_rt_with_its_interval_and_json_carries_both_tables(
    fed: LocalFederation, capsys: pytest.CaptureFixture[str]
) -> None:
    runtime = str(fed.config.path)
    base = ["query", "trend", "--federation", runtime, "--as", NATIONAL, "--level", "province"]
    capsys.readouterr()
    assert fedbroker_main(base) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("area"))
    assert header.split() == ["area", "name", "date", "confirmed", "local", "imported", "r_mean", "r_lower", "r_upper"]
    assert "table areas:" in out and "turning_point" in out
    assert fedbroker_main([*base, "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["columns"][6:] == ["r_mean", "r_lower", "r_upper"]
    assert [t["name"] for t in document["tables"]] == ["areas"]
    estimated = [r for r in document["rows"] if r[6] is not None]
    assert estimated and all(r[7] <= r[6] <= r[8] for r in estimated)
    assert fedbroker_main(["query", "warning", "--federation", runtime, "--as", NATIONAL, "--format", "json"]) == 0
    warning = json.loads(capsys.readouterr().out)
    assert warning["columns"][3] == "tier" and warning["columns"][-1] == "tier_since"
