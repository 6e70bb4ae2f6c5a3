"""The DuckDB backend: an embedded file per agency (the default store)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa

from adapters.backends import arrow_schema, scatter_counts
from adapters.store import added_columns_sql, create_tables, open_store
from federation.stores import StoreLocation

__all__ = ["DuckDBStore", "arrow_batches"]


def arrow_batches(con: duckdb.DuckDBPyConnection, query: str, batch_rows: int) -> Iterator[pa.RecordBatch]:
    """A query's rows as Arrow batches, streamed (DuckDB 2 renamed fetch_record_batch to to_arrow_reader)."""
    # A cursor of its own: the caller's connection may hold a pending result, and may be used while this streams.
    cursor = con.cursor()
    relation = cursor.sql(query)
    if hasattr(relation, "to_arrow_reader"):
        yield from relation.to_arrow_reader(batch_rows)
    else:
        yield from relation.fetch_record_batch(batch_rows)


@dataclass
class DuckDBStore:
    """A DuckDB connection as a :class:`adapters.backends.Store`; ``con`` is open to the aggregates' DuckDB SQL."""

    con: duckdb.DuckDBPyConnection
    location: StoreLocation
    dialect: str = "duckdb"

    @classmethod
    def open(cls, location: StoreLocation, *, read_only: bool = True) -> DuckDBStore:
        assert location.path is not None
        return cls(open_store(location.path, read_only=read_only), location)

    @classmethod
    def wrap(cls, con: duckdb.DuckDBPyConnection) -> DuckDBStore:
        """An already open connection (tests, benchmarks, ingest) as a store."""
        return cls(con, StoreLocation("duckdb"))

    def counts(self, sql: str, params: Mapping[str, Any], length: int) -> npt.NDArray[np.uint64]:
        columns = self.con.execute(sql, dict(params)).fetchnumpy()
        return scatter_counts(columns["pos"], columns["n"], length)

    def has_table(self, table: str) -> bool:
        found = self.con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = $table AND table_schema = 'main'",
            {"table": table},
        ).fetchone()
        return found is not None and found[0] > 0

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        result: list[tuple[Any, ...]] = self.con.execute(sql, dict(params) if params else None).fetchall()
        return result

    def materialize(self, table: str, sql: str) -> None:
        self.con.execute(f"CREATE OR REPLACE TABLE {table} AS {sql}")

    def day_range(self, table: str, column: str) -> tuple[dt.date, dt.date] | None:
        row = self.con.execute(f"SELECT min({column})::DATE, max({column})::DATE FROM {table}").fetchone()
        if row is None or row[0] is None:
            return None
        return row[0], row[1]

    def create_tables(self, kind: str) -> None:
        create_tables(self.con, kind)

    def read_table(self, table: str, batch_rows: int) -> Iterator[pa.RecordBatch]:
        yield from arrow_batches(self.con, f"SELECT * FROM {table}", batch_rows)

    def write_table(self, table: str, columns: Sequence[tuple[str, str]], batches: Iterator[pa.RecordBatch]) -> int:
        schema = arrow_schema(columns)
        body = ", ".join(f"{name} {sql_type}" for name, sql_type in columns)
        names = ", ".join(name for name, _ in columns)
        self.con.begin()
        try:
            self.con.execute(f"CREATE TABLE IF NOT EXISTS {table} ({body})")
            for statement in added_columns_sql(table):  # a table from before msisdn gains it
                self.con.execute(statement)
            self.con.execute(f"DELETE FROM {table}")
            incoming = pa.RecordBatchReader.from_batches(schema, (batch.cast(schema) for batch in batches))
            self.con.register("incoming_rows", incoming)
            try:
                self.con.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM incoming_rows")
            finally:
                self.con.unregister("incoming_rows")
            row = self.con.execute(f"SELECT count(*) FROM {table}").fetchone()
        except BaseException:
            self.con.rollback()
            raise
        self.con.commit()
        assert row is not None
        return int(row[0])

    def close(self) -> None:
        self.con.close()
