"""A federation on mixed engines answers exactly like the same federation on DuckDB alone.

The small scenario's health networks are copied into PostgreSQL (one schema each) and one carrier into Spark
Parquet tables; every node runs as its own process with mutual TLS, the Spark carrier with its own local Spark.
The other stores are fresh DuckDB copies; all but the Spark carrier's get daily partials. The importation-risk
answer (every row, with k = 1) must be identical to the answer of the all-DuckDB federation over the same raw
data, computed from raw scans only. Noise is off: the rosters here have no privacy section.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from pathlib import Path

import pytest

from adapters.backends import open_backend
from adapters.partials import refresh
from adapters.store_copy import copy_store
from broker.client import Answer, run_query
from fedbroker.harness import LocalFederation
from federation.catalog import new_query
from federation.config import dump_federation, load_federation
from tests.backends import engine_location
from tests.federation_fixtures import roster_variant

pytestmark = pytest.mark.slow
NATIONAL = "nhc-national"
SPARK_CARRIER = "telecom-b"


def _ask(roster: Path, run_dir: Path, end: dt.date) -> Answer:
    with LocalFederation(roster, run_dir=run_dir) as fed:
        query = new_query("importation-risk", start=None, end=end, params={"top": "3"}, coordinator=NATIONAL)
        return asyncio.run(run_query(fed.config, NATIONAL, query))


def test_postgresql_health_and_spark_carrier_answer_like_duckdb(small_scenario: Path, tmp_path: Path) -> None:
    # Generous deadlines: the Spark carrier's first statements set up Spark jobs, slow on a loaded machine, and a
    # carrier dropped at a stage would change the sum instead of failing loudly.
    duckdb_roster = roster_variant(
        small_scenario,
        tmp_path / "duckdb.yaml",
        min_contributors=2,
        mobility_k=1,
        cases_k=1,
        round_timeout_s=900,
        stage_timeout_s=600,
    )
    config = load_federation(duckdb_roster)
    nodes = []
    for node in config.nodes:
        engine = "postgresql" if node.kind == "health" else "spark" if node.id == SPARK_CARRIER else "duckdb"
        target = engine_location(engine, tmp_path)
        copy_store(node.location(), target)
        if engine != "spark":
            # Daily partials everywhere but on the Spark carrier (whose partials test_partials covers): the
            # mixed answer then comes from partials and raw scans at once, the reference from raw DuckDB only.
            store = open_backend(target, read_only=False)
            try:
                refresh(store, node.kind)
            finally:
                store.close()
        if engine == "duckdb":
            assert target.path is not None
            nodes.append(dataclasses.replace(node, store=target.path))
        else:
            nodes.append(dataclasses.replace(node, store_location=target))
    mixed_roster = tmp_path / "mixed.yaml"
    dump_federation(dataclasses.replace(config, nodes=tuple(nodes)), mixed_roster)
    engines = {n.id: n.location().engine for n in load_federation(mixed_roster).nodes}
    assert engines["health-net-1"] == engines["health-net-2"] == "postgresql" and engines[SPARK_CARRIER] == "spark"

    end = config.data_end - dt.timedelta(days=1)
    reference = _ask(duckdb_roster, tmp_path / "run-duckdb", end)
    mixed = _ask(mixed_roster, tmp_path / "run-mixed", end)

    assert mixed.contributors == reference.contributors
    assert all(not coverage["missing"] for coverage in mixed.contributors.values()), mixed.contributors
    assert mixed.columns == reference.columns
    assert mixed.rows == reference.rows
    assert mixed.suppressed == reference.suppressed
    assert len(reference.rows) > 0 and any(row[reference.columns.index("inflow")] for row in reference.rows)
