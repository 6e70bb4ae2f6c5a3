"""The Spark SQL backend (pyspark, the optional extra ``fedbroker[spark]``): operator-scale carriers.

Tables are either a directory with one Parquet directory per table (``TABLES/signalling/*.parquet``), registered
as temporary views each time the store is opened (so files written since are seen), or a catalog database that
Spark already knows (``USE db``). One SparkSession per process (starting the JVM takes seconds): a node opens it
at start-up and every round reuses it. The session time zone is UTC so that Spark never shifts the stores' naive
local times (Asia/Shanghai wall clock, ``docs/architecture.md``).

Parquet files are written and read for ``fedbroker store copy`` by DuckDB, without starting Spark.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa

from adapters.backends import arrow_schema, scatter_counts
from adapters.backends.duckdb_store import arrow_batches
from adapters.store import RAW_TABLES
from federation.errors import ConfigError, FederationError
from federation.stores import StoreLocation

__all__ = ["SparkStore", "spark_session"]

_SESSION_LOCK = threading.Lock()
_SESSIONS: dict[str, Any] = {}
# Temporary views are per session, and one session serves every store of the process: the tables directory
# whose views are registered now (a store re-registers its own before it runs a statement).
_VIEWS_OF: list[str] = [""]


def spark_session(master: str) -> Any:
    """This process's SparkSession for ``master`` (created once; pyspark allows one active session)."""
    with _SESSION_LOCK:
        if master in _SESSIONS:
            return _SESSIONS[master]
        if _SESSIONS:
            other = next(iter(_SESSIONS))
            raise ConfigError(f"this process already runs Spark on {other}; one node process uses one Spark master")
        try:
            from pyspark.sql import SparkSession
        except ImportError:
            raise ConfigError(
                "this node's store is Spark but pyspark is not installed: pip install 'fedbroker[spark]' "
                "(and a Java 17 runtime, e.g. Debian's openjdk-17-jre-headless)"
            ) from None
        partitions = os.environ.get("FEDBROKER_SPARK_SHUFFLE_PARTITIONS", "4")
        builder = (
            SparkSession.builder.master(master)
            .appName("fedbroker-adapter")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.sql.shuffle.partitions", partitions)
            .config("spark.sql.execution.arrow.pyspark.enabled", "true")
            .config("spark.driver.memory", os.environ.get("FEDBROKER_SPARK_DRIVER_MEMORY", "2g"))
            .config("spark.sql.parquet.inferTimestampNTZ.enabled", "true")
        )
        try:
            session = builder.getOrCreate()
        except Exception as exc:  # the JVM failed to start: no Java, no memory
            raise ConfigError(f"cannot start Spark on {master}: {_first_line(exc)}") from None
        session.sparkContext.setLogLevel("ERROR")
        _SESSIONS[master] = session
        return session


@dataclass
class SparkStore:
    location: StoreLocation
    spark: Any  # pyspark.sql.SparkSession, typed loosely so pyspark stays optional
    dialect: str = "spark"

    @classmethod
    def open(cls, location: StoreLocation) -> SparkStore:
        assert location.spark_master is not None and location.spark_tables is not None
        return cls(location, None)

    # The session starts on first use, so that copying Parquet files never starts a JVM.
    def _session(self) -> Any:
        if self.spark is None:
            assert self.location.spark_master is not None
            self.spark = spark_session(self.location.spark_master)
            self._register_views()
        elif _VIEWS_OF[0] != self.location.spark_tables:
            self._register_views()
        return self.spark

    def _register_views(self) -> None:
        tables = self.location.spark_tables
        assert tables is not None
        if not self.location.spark_tables_are_files:
            self.spark.sql(f"USE {tables}")
        else:
            for view in self.spark.catalog.listTables():
                if view.isTemporary:
                    self.spark.catalog.dropTempView(view.name)
            for table in _tables_in(Path(tables)):
                self.spark.read.parquet(str(Path(tables) / table)).createOrReplaceTempView(table)
        _VIEWS_OF[0] = tables

    def warm_up(self) -> None:
        """Start the session and register the tables now (a node does it before it listens)."""
        self._session()

    def _run(self, what: str, sql: str, args: Mapping[str, Any] | None = None) -> Any:
        spark = self._session()
        try:
            return spark.sql(sql, args=dict(args) if args else None)
        except Exception as exc:  # pyspark raises AnalysisException and friends, no shared base worth naming
            raise FederationError(f"the Spark store refused {what}: {_first_line(exc)}") from None

    def counts(self, sql: str, params: Mapping[str, Any], length: int) -> npt.NDArray[np.uint64]:
        frame = self._run("an aggregate", sql, params)
        try:
            table = frame.toArrow()
        except Exception as exc:
            raise FederationError(f"the Spark store failed during an aggregate: {_first_line(exc)}") from None
        return scatter_counts(table.column("pos").to_numpy(), table.column("n").to_numpy(), length)

    def has_table(self, table: str) -> bool:
        if self.location.spark_tables_are_files:
            assert self.location.spark_tables is not None
            return table in _tables_in(Path(self.location.spark_tables))
        return bool(self._session().catalog.tableExists(table))

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        frame = self._run("a query", sql, params)
        try:
            return [tuple(row) for row in frame.collect()]
        except Exception as exc:
            raise FederationError(f"the Spark store failed during a query: {_first_line(exc)}") from None

    def materialize(self, table: str, sql: str) -> None:
        root = self._files("building tables")
        staging = root / f".{table}.{uuid.uuid4().hex}"
        try:
            self._run(f"building {table}", sql).write.parquet(str(staging))
        except FederationError:
            raise
        except Exception as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise FederationError(f"the Spark store failed building {table}: {_first_line(exc)}") from None
        self._swap_in(root, table, staging)

    def _swap_in(self, root: Path, table: str, staging: Path) -> None:
        target = root / table
        retired = root / f".{table}.old.{uuid.uuid4().hex}"
        if target.exists():
            target.rename(retired)
        staging.rename(target)
        shutil.rmtree(retired, ignore_errors=True)
        if self.spark is not None and _VIEWS_OF[0] == self.location.spark_tables:
            self.spark.read.parquet(str(target)).createOrReplaceTempView(table)

    def day_range(self, table: str, column: str) -> tuple[dt.date, dt.date] | None:
        rows = self._run(
            "the data window", f"SELECT CAST(min({column}) AS DATE), CAST(max({column}) AS DATE) FROM {table}"
        ).collect()
        if not rows or rows[0][0] is None:
            return None
        return rows[0][0], rows[0][1]

    def create_tables(self, kind: str) -> None:
        for table, columns in RAW_TABLES[kind].items():
            if not self.has_table(table):
                self.write_table(table, columns, iter(()))

    def _files(self, what: str) -> Path:
        if not self.location.spark_tables_are_files:
            raise ConfigError(
                f"{what} works on a Spark store of Parquet files only; {self.location.spark_tables} is a catalog "
                "database: load it with Spark's own tools"
            )
        assert self.location.spark_tables is not None
        return Path(self.location.spark_tables)

    def read_table(self, table: str, batch_rows: int) -> Iterator[pa.RecordBatch]:
        folder = self._files("reading tables") / table
        con = duckdb.connect()
        try:
            glob = str(folder / "*.parquet").replace("'", "''")
            yield from arrow_batches(con, f"SELECT * FROM read_parquet('{glob}')", batch_rows)
        finally:
            con.close()

    def write_table(self, table: str, columns: Sequence[tuple[str, str]], batches: Iterator[pa.RecordBatch]) -> int:
        root = self._files("writing tables")
        root.mkdir(parents=True, exist_ok=True)
        schema = arrow_schema(columns)
        staging = root / f".{table}.{uuid.uuid4().hex}"
        staging.mkdir()
        con = duckdb.connect()
        try:
            incoming = pa.RecordBatchReader.from_batches(schema, (batch.cast(schema) for batch in batches))
            con.register("incoming_rows", incoming)
            names = ", ".join(name for name, _ in columns)
            part_file = str(staging / "part-00000.parquet").replace("'", "''")
            casts = ", ".join(f"CAST({name} AS {sql_type}) AS {name}" for name, sql_type in columns)
            con.execute(
                f"COPY (SELECT {casts} FROM (SELECT {names} FROM incoming_rows)) TO '{part_file}' "
                "(FORMAT parquet, ROW_GROUP_SIZE 1000000)"
            )
            row = con.execute(
                "SELECT count(*) FROM read_parquet($f)", {"f": str(staging / "part-00000.parquet")}
            ).fetchone()
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        finally:
            con.close()
        self._swap_in(root, table, staging)
        assert row is not None
        return int(row[0])

    def close(self) -> None:
        # The session outlives the store: the next round in this process reuses it.
        pass


def _tables_in(root: Path) -> list[str]:
    if not root.is_dir():
        return []
    return sorted(
        p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and any(p.glob("*.parquet"))
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
