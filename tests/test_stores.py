"""Store values in the roster, and `fedbroker store copy` between every pair of engines."""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path

import duckdb
import pytest

from adapters.backends import data_window, open_backend
from adapters.backends.duckdb_store import DuckDBStore
from adapters.backends.postgresql_store import PostgreSQLStore
from adapters.store import create_tables, open_store
from adapters.store_copy import copy_store, detect_kind
from fedbroker.cli import main
from federation.errors import ConfigError
from federation.stores import StoreLocation, parse_store
from tests.backends import engine_location

BASE = Path("/srv/federation")


def test_store_values() -> None:
    assert parse_store("agencies/a.duckdb", base=BASE, where="w") == StoreLocation(
        "duckdb", path=BASE / "agencies/a.duckdb"
    )
    assert parse_store("duckdb:/data/a.duckdb", base=BASE, where="w").path == Path("/data/a.duckdb")
    pg = parse_store("postgresql://health@db.example:5432/cases?service=net1", base=BASE, where="w")
    assert pg.engine == "postgresql" and pg.url == "postgresql://health@db.example:5432/cases?service=net1"
    spark = parse_store("spark:", base=BASE, where="w", spark={"master": "spark://m1:7077", "tables": "./parquet"})
    assert spark == StoreLocation("spark", spark_master="spark://m1:7077", spark_tables=str(BASE / "parquet"))
    assert spark.spark_tables_are_files
    catalog = parse_store("spark:", base=BASE, where="w", spark={"tables": "carrier_a"})
    assert catalog.spark_master == "local[2]" and not catalog.spark_tables_are_files


@pytest.mark.parametrize(
    ("value", "spark", "fragment"),
    [
        ("postgresql://health:secret@db:5432/cases", None, "carries a password"),
        ("postgresql://health@db:5432/cases?password=x", None, "names a password"),
        ("mysql://db/x", None, "unknown store scheme"),
        ("spark:", None, "needs a spark:"),
        ("spark:", {"tables": "t", "master": "yarn"}, "not local"),
        ("spark:", {"master": "local[2]"}, "spark.tables is missing"),
        ("spark:", {"tables": "t", "memory": "4g"}, "spark.memory is not a key"),
        ("a.duckdb", {"tables": "t"}, "needs store: spark:"),
        ("  ", None, "empty store"),
    ],
)
def test_bad_store_values_say_what_to_fix(value: str, spark: object, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment) as caught:
        parse_store(value, base=BASE, where="federation.yaml: nodes[0].store", spark=spark)
    assert "nodes[0].store" in caught.value.message
    assert "secret" not in caught.value.message


def _telecom_store(path: Path) -> duckdb.DuckDBPyConnection:
    con = open_store(path, read_only=False)
    create_tables(con, "telecom")
    con.execute("INSERT INTO cells VALUES (1, 420102), (2, 420103), (3, NULL)")
    con.execute("INSERT INTO subscribers VALUES (10, 420102, '+8613800000010'), (11, NULL, NULL)")
    con.execute(
        "INSERT INTO signalling VALUES (10, TIMESTAMP '2024-03-01 23:59:59.250', 1), "
        "(10, TIMESTAMP '2024-03-02 00:00:00', 2), (11, TIMESTAMP '2024-03-05 08:00:00', NULL)"
    )
    return con


def _rows(location: StoreLocation, table: str) -> list[tuple[object, ...]]:
    store = open_backend(location)
    try:
        rows = [tuple(row.values()) for batch in store.read_table(table, 1000) for row in batch.to_pylist()]
    finally:
        store.close()
    return sorted(rows, key=repr)


def test_copy_round_trip_through_every_engine(tmp_path: Path) -> None:
    """DuckDB -> PostgreSQL -> Spark Parquet -> DuckDB keeps every row, null and sub-second timestamp."""
    origin = tmp_path / "origin.duckdb"
    _telecom_store(origin).close()
    hops = [
        StoreLocation("duckdb", path=origin),
        engine_location("postgresql", tmp_path),
        engine_location("spark", tmp_path),
        StoreLocation("duckdb", path=tmp_path / "back.duckdb"),
    ]
    for source, target in itertools.pairwise(hops):
        summary = copy_store(source, target)
        assert summary.kind == "telecom" and summary.rows == {"cells": 3, "subscribers": 2, "signalling": 3}
    for table in ("cells", "subscribers", "signalling"):
        assert _rows(hops[-1], table) == _rows(hops[0], table), table
    assert _rows(hops[-1], "signalling")[0][1] == dt.datetime(2024, 3, 1, 23, 59, 59, 250000)
    for hop in hops[1:]:  # the itinerary service finds a subscriber by number on every engine
        assert _rows(hop, "subscribers") == [(10, 420102, "+8613800000010"), (11, None, None)], hop.engine
    # Copying again replaces the rows instead of appending them.
    copy_store(hops[0], hops[1])
    assert len(_rows(hops[1], "signalling")) == 3
    back = open_backend(hops[-1])
    try:
        assert data_window(back, "telecom") == (dt.date(2024, 3, 1), dt.date(2024, 3, 5))
    finally:
        back.close()


def test_store_copy_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    origin = tmp_path / "origin.duckdb"
    _telecom_store(origin).close()
    assert main(["store", "copy", str(origin), f"spark:{tmp_path / 'parquet'}"]) == 0
    assert "signalling: 3 rows" in capsys.readouterr().out
    assert (tmp_path / "parquet" / "signalling").is_dir()
    assert main(["store", "copy", str(origin), "postgresql://u:pw@127.0.0.1:1/db"]) == 2
    assert "carries a password" in capsys.readouterr().err
    assert main(["store", "copy", str(tmp_path / "missing.duckdb"), str(tmp_path / "x.duckdb")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_copy_needs_one_kind(tmp_path: Path) -> None:
    con = open_store(tmp_path / "both.duckdb", read_only=False)
    create_tables(con, "telecom")
    create_tables(con, "health")
    with pytest.raises(ConfigError, match="give --kind"):
        detect_kind(DuckDBStore.wrap(con))
    con.close()
    summary = copy_store(
        StoreLocation("duckdb", path=tmp_path / "both.duckdb"),
        StoreLocation("duckdb", path=tmp_path / "h.duckdb"),
        kind="health",
    )
    assert summary.rows == {"cases": 0}


@pytest.mark.parametrize("engine", ["duckdb", "postgresql"])
def test_copy_into_a_table_from_before_msisdn_adds_the_column(tmp_path: Path, engine: str) -> None:
    origin = tmp_path / "origin.duckdb"
    _telecom_store(origin).close()
    target = engine_location(engine, tmp_path)
    old = open_backend(target, read_only=False)
    try:
        old_table = "CREATE TABLE subscribers (subscriber_id BIGINT, home_district INTEGER)"
        if isinstance(old, DuckDBStore):
            old.con.execute(old_table)
        else:
            assert isinstance(old, PostgreSQLStore)
            old.conn.execute(old_table)
    finally:
        old.close()
    copy_store(StoreLocation("duckdb", path=origin), target)
    assert _rows(target, "subscribers") == [(10, 420102, "+8613800000010"), (11, None, None)]
