"""The PostgreSQL backend (psycopg 3): a health network's or carrier's own relational database.

Credentials never come from the roster (``federation.stores``): libpq reads a service file, ``~/.pgpass`` or the
``PG*`` environment. Aggregate results come back as one binary COPY stream of ``(pos int8, n int8)`` tuples,
read straight into numpy (a fixed 26-byte record per row) instead of one Python tuple per row.
"""

from __future__ import annotations

import datetime as dt
import io
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.csv as pa_csv

from adapters.backends import arrow_schema, scatter_counts
from adapters.store import RAW_TABLES, added_columns_sql
from federation.errors import ConfigError, FederationError, NodeUnavailable
from federation.stores import StoreLocation

__all__ = ["PostgreSQLStore"]

_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
# One tuple of COPY BINARY with two non-null int8 fields: field count, then (length, value) per field.
_POS_N_RECORD = np.dtype([("fields", ">i2"), ("pos_len", ">i4"), ("pos", ">i8"), ("n_len", ">i4"), ("n", ">i8")])


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise ConfigError(
            "this node's store is PostgreSQL but psycopg is not installed: pip install 'fedbroker[postgresql]'"
        ) from None
    return psycopg


@dataclass
class PostgreSQLStore:
    """One psycopg connection (autocommit; writes open their own transaction)."""

    conn: Any  # psycopg.Connection: typed loosely so psycopg stays an optional import
    location: StoreLocation
    dialect: str = "postgresql"

    @classmethod
    def open(cls, location: StoreLocation) -> PostgreSQLStore:
        psycopg = _psycopg()
        try:
            conn = psycopg.connect(location.url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            # libpq's first line names the problem (refused, no such database, auth); it never holds a password.
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"cannot connect to the store {location.describe()}: {reason}") from None
        return cls(conn, location)

    def _run(self, what: str, action: Any) -> Any:
        psycopg = _psycopg()
        try:
            return action()
        except psycopg.OperationalError as exc:
            raise NodeUnavailable(f"the PostgreSQL store failed during {what}: {_first_line(exc)}") from None
        except psycopg.Error as exc:
            raise FederationError(f"the PostgreSQL store refused {what}: {_first_line(exc)}") from None

    def counts(self, sql: str, params: Mapping[str, Any], length: int) -> npt.NDArray[np.uint64]:
        def fetch() -> bytes:
            buffer = bytearray()
            with self.conn.cursor() as cur, cur.copy(f"COPY ({sql}) TO STDOUT (FORMAT binary)", dict(params)) as copy:
                for chunk in copy:
                    buffer += chunk
            return bytes(buffer)

        data = self._run("an aggregate", fetch)
        positions, counts = _pos_n_from_copy(data)
        return scatter_counts(positions, counts, length)

    def has_table(self, table: str) -> bool:
        row = self._run("a table lookup", lambda: self.conn.execute("SELECT to_regclass(%s)", (table,)).fetchone())
        return row is not None and row[0] is not None

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        bound = dict(params) if params else None  # without parameters psycopg leaves a % in the SQL alone
        result: list[tuple[Any, ...]] = self._run("a query", lambda: self.conn.execute(sql, bound).fetchall())
        return result

    def materialize(self, table: str, sql: str) -> None:
        def replace() -> None:
            with self.conn.transaction(), self.conn.cursor() as cur:
                cur.execute(f"DROP TABLE IF EXISTS {table}")
                cur.execute(f"CREATE TABLE {table} AS {sql}")

        self._run(f"building {table}", replace)

    def day_range(self, table: str, column: str) -> tuple[dt.date, dt.date] | None:
        sql = f"SELECT min({column})::date, max({column})::date FROM {table}"
        row = self._run("the data window", lambda: self.conn.execute(sql).fetchone())
        if row is None or row[0] is None:
            return None
        return row[0], row[1]

    def create_tables(self, kind: str) -> None:
        for table, columns in RAW_TABLES[kind].items():
            body = ", ".join(f"{name} {sql_type}" for name, sql_type in columns)
            for sql in (f"CREATE TABLE IF NOT EXISTS {table} ({body})", *added_columns_sql(table)):
                self._run("creating tables", lambda sql=sql: self.conn.execute(sql))

    def read_table(self, table: str, batch_rows: int) -> Iterator[pa.RecordBatch]:
        columns = self._columns(table)
        schema = arrow_schema(columns)
        names = ", ".join(name for name, _ in columns)
        with tempfile.TemporaryFile() as spool:

            def dump() -> None:
                with (
                    self.conn.cursor() as cur,
                    cur.copy(f"COPY (SELECT {names} FROM {table}) TO STDOUT (FORMAT csv)") as copy,
                ):
                    for chunk in copy:
                        spool.write(chunk)

            self._run(f"reading {table}", dump)
            spool.seek(0)
            reader = pa_csv.open_csv(
                spool,
                read_options=pa_csv.ReadOptions(column_names=schema.names, block_size=1 << 22),
                convert_options=pa_csv.ConvertOptions(
                    column_types=schema,
                    strings_can_be_null=True,
                    quoted_strings_can_be_null=False,
                    true_values=["t"],  # PostgreSQL's CSV spelling of booleans
                    false_values=["f"],
                ),
            )
            # Batches follow the CSV reader's blocks (4 MiB of text), about batch_rows for raw tables.
            yield from reader

    def write_table(self, table: str, columns: Sequence[tuple[str, str]], batches: Iterator[pa.RecordBatch]) -> int:
        schema = arrow_schema(columns)
        body = ", ".join(f"{name} {sql_type}" for name, sql_type in columns)
        names = ", ".join(name for name, _ in columns)

        def load() -> int:
            written = 0
            with self.conn.transaction(), self.conn.cursor() as cur:
                cur.execute(f"CREATE TABLE IF NOT EXISTS {table} ({body})")
                for statement in added_columns_sql(table):  # a table from before msisdn gains it
                    cur.execute(statement)
                cur.execute(f"TRUNCATE {table}")
                with cur.copy(f"COPY {table} ({names}) FROM STDIN (FORMAT csv)") as copy:
                    for batch in batches:
                        text = io.BytesIO()
                        pa_csv.write_csv(
                            batch.cast(schema), text, write_options=pa_csv.WriteOptions(include_header=False)
                        )
                        copy.write(text.getvalue())
                        written += batch.num_rows
            return written

        written: int = self._run(f"writing {table}", load)
        return written

    def _columns(self, table: str) -> list[tuple[str, str]]:
        for kind_tables in RAW_TABLES.values():
            if table in kind_tables:
                return list(kind_tables[table])
        raise ConfigError(f"{table} is not a raw table: only raw tables are copied")

    def close(self) -> None:
        self.conn.close()


def _pos_n_from_copy(data: bytes) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The ``(pos, n)`` columns of a COPY BINARY stream of two int8 fields (PostgreSQL's documented format)."""
    if not data.startswith(_COPY_SIGNATURE) or len(data) < 21:
        raise FederationError("the PostgreSQL store sent a COPY stream that is not in binary format")
    extension = int.from_bytes(data[15:19], "big")
    body = data[19 + extension : -2]  # the trailer is one int16 -1
    records = np.frombuffer(body, dtype=_POS_N_RECORD)
    if records.size and not (np.all(records["fields"] == 2) and np.all(records["pos_len"] == 8)):
        raise FederationError("an aggregate returned columns other than (pos int8, n int8)")
    return records["pos"].astype(np.int64), records["n"].astype(np.int64)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
