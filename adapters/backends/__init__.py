"""Store backends: one interface over an agency's DuckDB file, PostgreSQL database or Spark tables.

Every aggregate runs inside the store as one SQL statement in the store's dialect and returns ``(pos, n)`` rows
(vector position, count); :meth:`Store.counts` brings back only those rows (Arrow from DuckDB and Spark, binary
COPY from PostgreSQL) and scatters them into a ``uint64`` vector with numpy. Raw rows never leave the store on
the aggregate path. :meth:`Store.read_table` / :meth:`Store.write_table` move whole raw tables as Arrow record
batches, for ``fedbroker store copy`` only.

=============  ==========================================  =====================================================
engine         store value                                 dialect notes
=============  ==========================================  =====================================================
``duckdb``     ``PATH`` or ``duckdb:PATH``                 ``$name`` parameters, QUALIFY, struct max
``postgresql`` ``postgresql://USER@HOST:PORT/DB``          psycopg client-side binding, DISTINCT ON, COPY BINARY
``spark``      ``spark:`` + ``spark: {master, tables}``    literals rendered by :func:`spark_literal`, no QUALIFY
=============  ==========================================  =====================================================
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from federation.errors import ConfigError
from federation.stores import StoreLocation

__all__ = ["DATED_COLUMNS", "DIALECTS", "Store", "arrow_schema", "data_window", "open_backend", "scatter_counts"]

DIALECTS = ("duckdb", "postgresql", "spark")

_ARROW_TYPES: Mapping[str, pa.DataType] = {
    "BIGINT": pa.int64(),
    "INTEGER": pa.int32(),
    "VARCHAR": pa.string(),
    "DATE": pa.date32(),
    "TIMESTAMP": pa.timestamp("us"),
    "BOOLEAN": pa.bool_(),
}


class Store(Protocol):
    """An open agency store. Not thread-safe: one per thread, closed by its opener."""

    @property
    def dialect(self) -> str:
        """``duckdb`` | ``postgresql`` | ``spark``: which SQL the aggregates' dispatch table picks."""

    @property
    def location(self) -> StoreLocation: ...

    def counts(self, sql: str, params: Mapping[str, Any], length: int) -> npt.NDArray[np.uint64]:
        """Run counting SQL whose rows are ``(pos BIGINT, n BIGINT)``; scatter into zeros(length) uint64."""

    def has_table(self, table: str) -> bool: ...

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """A small result as tuples (fingerprints, state rows, one subscriber's own itinerary): never raw rows
        on an aggregate path. ``params`` are bound in the dialect's markers (``$name``, ``%(name)s``, ``:name``)."""

    def materialize(self, table: str, sql: str) -> None:
        """Replace ``table`` with the result of ``sql``, atomically (a reader sees the old or the new table)."""

    def day_range(self, table: str, column: str) -> tuple[dt.date, dt.date] | None:
        """First and last day of a DATE/TIMESTAMP column; None for an empty table."""

    def create_tables(self, kind: str) -> None:
        """Create the raw tables of an agency kind if missing (the column types of ``adapters.store.RAW_TABLES``)."""

    def read_table(self, table: str, batch_rows: int) -> Iterator[pa.RecordBatch]:
        """Every row of ``table`` in batches of at most ``batch_rows`` (for store copy)."""

    def write_table(self, table: str, columns: Sequence[tuple[str, str]], batches: Iterator[pa.RecordBatch]) -> int:
        """Replace ``table``'s rows with ``batches`` (created with ``columns`` if missing); rows written."""

    def close(self) -> None: ...


def arrow_schema(columns: Sequence[tuple[str, str]]) -> pa.Schema:
    """The Arrow schema of a raw table from its ``(name, SQL type)`` columns."""
    return pa.schema([(name, _ARROW_TYPES[sql_type]) for name, sql_type in columns])


def scatter_counts(positions: npt.ArrayLike, counts: npt.ArrayLike, length: int) -> npt.NDArray[np.uint64]:
    """zeros(length) uint64 with ``counts`` at ``positions`` (each position at most once)."""
    vector = np.zeros(length, dtype=np.uint64)
    vector[np.asarray(positions, dtype=np.int64)] = np.asarray(counts, dtype=np.uint64)
    return vector


def open_backend(location: StoreLocation, *, read_only: bool = True) -> Store:
    """Open the store at ``location``. A read-only DuckDB store must exist; ConfigError says what is wrong."""
    if location.engine == "duckdb":
        from adapters.backends.duckdb_store import DuckDBStore

        assert location.path is not None
        return DuckDBStore.open(location, read_only=read_only)
    if location.engine == "postgresql":
        from adapters.backends.postgresql_store import PostgreSQLStore

        return PostgreSQLStore.open(location)
    if location.engine == "spark":
        from adapters.backends.spark_store import SparkStore

        return SparkStore.open(location)
    raise ConfigError(f"unknown store engine {location.engine!r}: use one of {', '.join(DIALECTS)}")


# The table and column whose days define an agency's data window (what its aggregates are dated by).
DATED_COLUMNS: Mapping[str, tuple[str, str]] = {
    "telecom": ("signalling", "ts"),
    "health": ("cases", "report_date"),
    "transport": ("tickets", "departure"),
}


def data_window(store: Store, kind: str) -> tuple[dt.date, dt.date] | None:
    """First and last day present in any store (signalling ts, case report_date, ticket departure); None if empty."""
    if kind not in DATED_COLUMNS:
        raise ConfigError(f"unknown agency kind {kind!r}: use one of {', '.join(DATED_COLUMNS)}")
    table, column = DATED_COLUMNS[kind]
    if not store.has_table(table):
        raise ConfigError(
            f"the store has no {table} table: is it really a {kind} store? Load it with `fedbroker ingest {kind}`"
        )
    return store.day_range(table, column)
