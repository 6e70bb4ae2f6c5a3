"""fedbroker.Client against a real local federation: every kind, pandas and Arrow conversions, kept results,
exports, error classes, and the progress that names who is slow."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fedbroker import Client
from fedbroker.exports import csv_text, geojson
from fedbroker.harness import LocalFederation
from fedbroker.results import list_results, load_answer, save_answer
from federation.catalog import KINDS
from federation.errors import ConfigError, InvalidQuery
from federation.registry import load_registry
from tests import oracle
from tests.federation_fixtures import oracle_sum, own_federation, roster_variant

pytestmark = pytest.mark.slow
NATIONAL = "nhc-national"


@pytest.fixture(scope="module")
def fed(small_scenario: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    run_dir = tmp_path_factory.mktemp("run-client")
    roster = roster_variant(small_scenario, run_dir / "client.yaml", min_contributors=2, cases_k=1)
    with own_federation(roster, run_dir) as federation:
        yield federation


@pytest.fixture(scope="module")
def client(fed: LocalFederation) -> Client:
    return Client.from_roster(fed.config.path, coordinator=NATIONAL)


def test_every_kind_through_its_generated_method(client: Client, fed: LocalFederation) -> None:
    config = fed.config
    end = config.data_end
    start = end - dt.timedelta(days=2)
    answers = {
        "population": client.population(start=start, end=end, districts=[420102, 420103]),
        "flows": client.flows(start=start, end=end, source="transport", mode="rail"),
        "cases": client.cases(start=config.data_start, end=end),
        "importation-risk": client.importation_risk(end=end, window_days=7),
    }
    for kind, answer in answers.items():
        assert answer.kind == kind and answer.query["coordinator"] == NATIONAL
        assert all(len(row) == len(answer.columns) for row in answer.rows)
    assert {r[0] for r in answers["population"].rows} == {420102, 420103}
    assert answers["flows"].query["params"] == {"mode": "rail", "source": "transport"}
    assert answers["importation-risk"].query["start"] == (end - dt.timedelta(days=6)).isoformat()
    # every kind of the catalog has both methods, generated from its schema
    for name in KINDS:
        method = name.replace("-", "_")
        assert callable(getattr(client, method)) and callable(getattr(client, f"{method}_async"))
    # the cases answer equals the raw tables (k = 1 for cases here)
    codes = load_registry(config.domain.provinces).codes
    expected = oracle_sum(config, "health", lambda con: oracle.oracle_cases(con, codes, config.data_start, end))
    grid = expected.reshape(len(codes), 3)
    got = {r[0]: r[2:] for r in answers["cases"].rows}
    want = {int(c): list(map(int, grid[i])) for i, c in enumerate(codes) if grid[i].sum() > 0}
    assert got == want


def test_pandas_and_arrow_keep_types_nulls_and_the_signed_query(client: Client) -> None:
    answer = client.importation_risk()
    frame = answer.to_pandas()
    assert list(frame.columns) == answer.columns
    assert str(frame["district"].dtype) == "Int64" and str(frame["alert"].dtype) == "boolean"
    assert frame["importation_index"].tolist() == [r[3] for r in answer.rows]
    table = answer.to_arrow("top_origins")
    assert table.column_names == ["district", "rank", "origin", "origin_name", "share"]
    metadata = {k.decode(): v.decode() for k, v in table.schema.metadata.items()}
    assert json.loads(metadata["fedbroker.query"]) == answer.query
    assert metadata["fedbroker.query_sha256"] == answer.query_sha256
    population = client.population(start=client.federation.data_end, end=client.federation.data_end)
    counts = population.to_pandas()["count"]
    suppressed = [r[3] is None for r in population.rows]
    assert counts.isna().tolist() == suppressed and any(suppressed)  # k = 15: small presence counts hidden


def test_kept_results_index_and_every_format(client: Client, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    answer = client.importation_risk()
    registry = load_registry(client.federation.domain.provinces)
    folder = save_answer(answer, tmp_path, formats=("csv", "parquet", "geojson"), registry=registry)
    assert folder.name.endswith(answer.query_sha256[:12])
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(
        [
            "answer.json",
            *(f"{t}.{f}" for t in ("importation-risk", "top_origins") for f in ("csv", "parquet", "geojson")),
        ]
    )
    (entry,) = list_results(tmp_path)
    assert entry["query_sha256"] == answer.query_sha256 and entry["kind"] == "importation-risk"
    assert load_answer(tmp_path, answer.query_sha256[:10]) == answer
    back = pq.read_table(folder / "importation-risk.parquet")
    assert back.to_pylist() == [dict(zip(answer.columns, row, strict=True)) for row in answer.rows]
    collection = json.loads((folder / "importation-risk.geojson").read_text())
    _check_geojson(collection, len(answer.rows))
    # the CLI over the same folder
    shown = subprocess.run(
        [sys.executable, "-m", "fedbroker", "results", "list", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert entry["id"] in shown.stdout


def test_flows_geojson_are_linestrings_between_registry_points(client: Client) -> None:
    end = client.federation.data_end
    flows = client.flows(start=end - dt.timedelta(days=6), end=end)
    registry = load_registry(client.federation.domain.provinces)
    collection = geojson(flows, registry)
    _check_geojson(collection, len(flows.rows))
    first = collection["features"][0]
    assert first["geometry"]["type"] == "LineString"
    origin = int(registry.index_of([first["properties"]["origin"]])[0])
    assert first["geometry"]["coordinates"][0] == [float(registry.lon[origin]), float(registry.lat[origin])]


def _check_geojson(collection: dict[str, object], features: int) -> None:
    """RFC 7946's structure: a FeatureCollection of Features, each with a geometry (or null) and properties."""
    assert collection["type"] == "FeatureCollection"
    found = collection["features"]
    assert isinstance(found, list) and len(found) == features
    for feature in found:
        assert feature["type"] == "Feature" and isinstance(feature["properties"], dict)
        geometry = feature["geometry"]
        if geometry is None:
            continue
        assert geometry["type"] in ("Point", "LineString")
        points = [geometry["coordinates"]] if geometry["type"] == "Point" else geometry["coordinates"]
        for lon, lat in points:
            assert -180 <= lon <= 180 and -90 <= lat <= 90


def test_csv_tells_suppressed_from_empty() -> None:
    text = csv_text(["district", "count", "note", "flag"], [[420102, None, "", True], [420103, 7, 'a "b"', False]])
    assert text.splitlines() == ['"district","count","note","flag"', '420102,,"",true', '420103,7,"a ""b""",false']


def test_errors_are_the_exact_classes(client: Client, fed: LocalFederation) -> None:
    with pytest.raises(InvalidQuery, match="did you mean window_days"):
        client.importation_risk(window_day=7)
    with pytest.raises(InvalidQuery, match="did you mean 'importation-risk'"):
        client.query("importation_risks")
    with pytest.raises(InvalidQuery, match="inverted window"):
        client.population(start=client.federation.data_end, end=client.federation.data_start)
    # refused by the broker, rebuilt on this side as the error tree's class for its status
    with pytest.raises(InvalidQuery, match="not in the registry domain"):
        client.cases(start=fed.config.data_start, districts=[110101])
    with pytest.raises(ConfigError, match="coordinator"):
        Client(fed.config, "nobody")


def test_progress_names_the_agency_that_is_slow(small_scenario: Path, tmp_path: Path) -> None:
    roster = roster_variant(small_scenario, tmp_path / "slow.yaml", min_contributors=2, stage_timeout_s=5.0)
    with own_federation(roster, tmp_path) as federation:
        federation.stall("telecom-c")
        try:
            end = federation.config.data_end.isoformat()
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "fedbroker",
                    "query",
                    "population",
                    "--federation",
                    str(federation.config.path),
                    "--as",
                    NATIONAL,
                    "--start",
                    end,
                    "--end",
                    end,
                    "--format",
                    "json",
                ],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        finally:
            federation.resume("telecom-c")
    assert done.returncode == 0, done.stderr
    assert "waiting: waiting for telecom-c at open" in done.stderr
    missing = json.loads(done.stdout)["contributors"]["presence"]["missing"]
    assert [m.split(":")[0] for m in missing] == ["telecom-c"]
