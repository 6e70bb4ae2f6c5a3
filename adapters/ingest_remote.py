"""Ingest into a PostgreSQL or Spark store: the DuckDB checks of ``adapters.ingest``, then one change set applied.

The checks are the DuckDB ingest's, statement for statement, run in an in-memory DuckDB *workspace* that holds
exactly the stored rows they can look at:

- the whole ``cells`` and ``subscribers`` tables (small; the references of signalling, and their own keys);
- of the loaded table (signalling, cases, tickets) and its provenance table ``ingest_lines_<table>``, only the
  stored rows whose key comes in the file, fetched by key from the target (PostgreSQL: the file's keys go into
  a temporary table and one join comes back; Spark: DuckDB joins them with the Parquet files);
- the whole ``ingest_log`` (one row per loaded file: the "already loaded" check).

What the checks changed in the workspace (rows added to the raw table and to ``rejected_<table>``,
``flagged_<table>``, ``ingest_updates``, ``ingest_lines_<table>``, ``ingest_log``; stored rows replaced by
``--update``) becomes one change set, applied to the target at the end:

- PostgreSQL: one transaction (deletes by key, then ``COPY`` of the new rows): all of it or nothing;
- Spark (a directory of Parquet tables; a catalog database is refused, load it with Spark's own tools): every
  new Parquet file is written first, outside the tables; then each is renamed into its table directory (a
  table with rows replaced by ``--update`` is rewritten and swapped in whole). A failure while writing changes
  nothing; only a crash between the renames (milliseconds, no computation left) can apply part of the set.
  The checks run in DuckDB over the Parquet files, so an ingest starts no JVM; the partial refresh after it
  does (``adapters.partials`` runs in the store's engine).

So a load into PostgreSQL or Spark rejects, flags and reports exactly what the same load into DuckDB would
(``tests/test_ingest_backends.py`` compares the resulting tables), with the same line numbers and messages.
One writer at a time: ``adapters.ingest`` holds the store's ingest lock (``adapters.ingest_lock``) around all of
this, so a second ingest into the same store is refused as busy instead of checking against rows the first is
about to change.
"""

from __future__ import annotations

import io
import shutil
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import duckdb
import pyarrow as pa
import pyarrow.csv as pa_csv

from adapters.backends import Store, arrow_schema
from adapters.backends.postgresql_store import PostgreSQLStore
from adapters.backends.spark_store import SparkStore
from adapters.store import RAW_TABLES, create_tables
from federation.errors import ConfigError, FederationError

__all__ = ["TableChange", "Workspace", "open_workspace"]

# Tables copied whole into the workspace: small, and read by the reference checks as a whole.
_WHOLE_TABLES = ("cells", "subscribers", "ingest_log")
# DuckDB's names for the column types of the ingest's tables; PostgreSQL knows them all by the same names.
_PG_TYPES = {
    "bigint": "BIGINT",
    "integer": "INTEGER",
    "character varying": "VARCHAR",
    "text": "VARCHAR",
    "date": "DATE",
    "timestamp without time zone": "TIMESTAMP",
    "boolean": "BOOLEAN",
}


@dataclass(frozen=True)
class TableChange:
    """What one ingest does to one table of the target: rows to delete (by key), then rows to add."""

    table: str
    columns: tuple[tuple[str, str], ...]  # (name, DuckDB type) of the table, in order
    added: pa.Table
    deleted_keys: pa.Table | None  # the key columns of the stored rows to delete (--update), or None
    key: tuple[str, ...]


def _arrow(con: duckdb.DuckDBPyConnection, sql: str) -> pa.Table:
    """A query's rows as one Arrow table (DuckDB 2 renamed ``arrow()`` to ``to_arrow_table()``)."""
    relation = con.sql(sql)
    table: pa.Table = relation.to_arrow_table() if hasattr(relation, "to_arrow_table") else relation.arrow()
    return table


class _Target(Protocol):
    def has_table(self, table: str) -> bool: ...

    def columns(self, table: str) -> list[tuple[str, str]]: ...

    def read_all(self, table: str) -> pa.Table: ...

    def read_matching(self, table: str, key: Sequence[str], keys: pa.Table) -> pa.Table: ...

    def apply(self, changes: Sequence[TableChange]) -> None: ...


class Workspace:
    """An in-memory DuckDB holding the target's rows that one ingest's checks can see, and the change set."""

    def __init__(self, target: _Target, kind: str, table: str) -> None:
        self.target = target
        self.kind = kind
        self.table = table
        self.con = duckdb.connect()
        self.con.execute("SET enable_progress_bar = false")
        create_tables(self.con, kind)
        self._prefetched: list[str] = []
        for name in _WHOLE_TABLES:
            if name == "ingest_log" or name in RAW_TABLES[kind]:
                self._load_rows(name, target.read_all(name) if target.has_table(name) else None)

    def _load_rows(self, table: str, rows: pa.Table | None) -> None:
        """Put stored rows into the workspace table (created with the target's columns if missing)."""
        if rows is None:
            return
        self.con.register("fetched_rows", rows)
        try:
            exists = self.con.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = $t", {"t": table}
            ).fetchone()
            if exists is None or exists[0] == 0:
                body = ", ".join(f"{name} {sql_type}" for name, sql_type in self.target.columns(table))
                self.con.execute(f"CREATE TABLE {table} ({body})")
            names = ", ".join(rows.schema.names)
            self.con.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM fetched_rows")
            self.con.execute(f"CREATE TABLE prefetched_{table} AS SELECT * FROM {table}")
        finally:
            self.con.unregister("fetched_rows")
        self._prefetched.append(table)

    def fetch_keyed_rows(self, con: duckdb.DuckDBPyConnection, table: str, key: Sequence[str]) -> None:
        """The checks' hook, once ``ingest_checked`` exists: fetch the stored rows sharing a key with the file."""
        assert con is self.con
        if table in _WHOLE_TABLES:
            keys = None
        else:
            keys = _arrow(self.con, f"SELECT DISTINCT {', '.join(key)} FROM ingest_checked WHERE reason IS NULL")
            if self.target.has_table(table):
                self._load_rows(table, self.target.read_matching(table, key, keys))
        provenance = f"ingest_lines_{table}"
        if self.target.has_table(provenance):
            if keys is None:
                keys = _arrow(self.con, f"SELECT DISTINCT {', '.join(key)} FROM ingest_checked WHERE reason IS NULL")
            self._load_rows(provenance, self.target.read_matching(provenance, key, keys))

    def changes(self, key_of: Callable[[str], tuple[str, ...]]) -> list[TableChange]:
        """Every workspace table with its change: rows added (all of a table not fetched), stored rows deleted."""
        changed = []
        names = [str(row[0]) for row in self.con.execute("SHOW TABLES").fetchall()]
        for table in names:
            if table.startswith("prefetched_"):
                continue
            columns = tuple((str(r[0]), str(r[1])) for r in self.con.execute(f"DESCRIBE {table}").fetchall())
            if table in self._prefetched:
                added = _arrow(self.con, f"SELECT * FROM {table} EXCEPT ALL SELECT * FROM prefetched_{table}")
                deleted = _arrow(self.con, f"SELECT * FROM prefetched_{table} EXCEPT ALL SELECT * FROM {table}")
            else:
                added = _arrow(self.con, f"SELECT * FROM {table}")
                deleted = None
            key = key_of(table)
            deleted_keys = deleted.select(list(key)) if deleted is not None and deleted.num_rows else None
            # Every table, even unchanged: the target gets each table the DuckDB ingest creates (empty or not).
            changed.append(TableChange(table, columns, added, deleted_keys, key))
        return changed

    def close(self) -> None:
        self.con.close()


def open_workspace(store: Store, kind: str, table: str) -> Workspace:
    """A workspace over a PostgreSQL or Spark (Parquet files) store; ConfigError for a Spark catalog."""
    if isinstance(store, PostgreSQLStore):
        return Workspace(_PostgreSQLTarget(store), kind, table)
    if isinstance(store, SparkStore):
        if not store.location.spark_tables_are_files:
            raise ConfigError(
                f"fedbroker ingest loads a Spark store of Parquet files; {store.location.spark_tables} is a catalog "
                "database: load it with Spark's own tools, or ingest into Parquet and register those"
            )
        assert store.location.spark_tables is not None
        return Workspace(_ParquetTarget(Path(store.location.spark_tables)), kind, table)
    raise ConfigError(f"no ingest workspace for a {store.dialect} store")


# -- PostgreSQL ------------------------------------------------------------------------------------------------


class _PostgreSQLTarget:
    def __init__(self, store: PostgreSQLStore) -> None:
        self.store = store

    def _run(self, what: str, action: Callable[[], Any]) -> Any:
        return self.store._run(what, action)

    def has_table(self, table: str) -> bool:
        return self.store.has_table(table)

    def columns(self, table: str) -> list[tuple[str, str]]:
        sql = (
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = %s ORDER BY ordinal_position"
        )
        found = self._run("a table lookup", lambda: self.store.conn.execute(sql, (table,)).fetchall())
        return [(str(name), _PG_TYPES[str(data_type)]) for name, data_type in found]

    def _select(self, what: str, table: str, sql: str, cur: Any = None) -> pa.Table:
        columns = self.columns(table)
        schema = arrow_schema(columns)
        buffer = io.BytesIO()

        def dump(cursor: Any) -> None:
            with cursor.copy(f"COPY ({sql}) TO STDOUT (FORMAT csv)") as copy:
                for chunk in copy:
                    buffer.write(chunk)

        if cur is None:
            with self.store.conn.cursor() as own:
                self._run(what, lambda: dump(own))
        else:
            self._run(what, lambda: dump(cur))
        return _csv_table(buffer.getvalue(), schema)

    def read_all(self, table: str) -> pa.Table:
        names = ", ".join(name for name, _ in self.columns(table))
        return self._select(f"reading {table}", table, f"SELECT {names} FROM {table}")

    def read_matching(self, table: str, key: Sequence[str], keys: pa.Table) -> pa.Table:
        if keys.num_rows == 0:
            return arrow_schema(self.columns(table)).empty_table()
        types = dict(self.columns(table))
        names = ", ".join(f"t.{name}" for name, _ in self.columns(table))
        match = " AND ".join(f"t.{k} = k.{k}" for k in key)
        with self.store.conn.transaction(), self.store.conn.cursor() as cur:
            self._run(f"indexing {table}", lambda: _ensure_key_index(cur, table, key))
            body = ", ".join(f"{k} {types[k]}" for k in key)
            self._run("staging keys", lambda: cur.execute(f"CREATE TEMP TABLE ingest_keys ({body}) ON COMMIT DROP"))
            self._run("staging keys", lambda: _copy_in(cur, "ingest_keys", list(key), keys))
            return self._select(
                f"reading {table}", table, f"SELECT {names} FROM {table} AS t JOIN ingest_keys AS k ON {match}", cur
            )

    def apply(self, changes: Sequence[TableChange]) -> None:
        def write() -> None:
            with self.store.conn.transaction(), self.store.conn.cursor() as cur:
                for change in changes:
                    body = ", ".join(f"{name} {sql_type}" for name, sql_type in change.columns)
                    cur.execute(f"CREATE TABLE IF NOT EXISTS {change.table} ({body})")
                    if change.key:
                        _ensure_key_index(cur, change.table, change.key)
                    if change.deleted_keys is not None:
                        types = dict(change.columns)
                        key_body = ", ".join(f"{k} {types[k]}" for k in change.key)
                        cur.execute(f"CREATE TEMP TABLE ingest_deleted ({key_body}) ON COMMIT DROP")
                        _copy_in(cur, "ingest_deleted", list(change.key), change.deleted_keys)
                        match = " AND ".join(f"{change.table}.{k} = d.{k}" for k in change.key)
                        cur.execute(f"DELETE FROM {change.table} USING ingest_deleted AS d WHERE {match}")
                        cur.execute("DROP TABLE ingest_deleted")
                    if change.added.num_rows:
                        _copy_in(cur, change.table, [name for name, _ in change.columns], change.added)

        self._run("the ingest", write)


def key_index_name(table: str) -> str:
    """The name of the index on a table's ingest key in PostgreSQL."""
    return f"{table}_ingest_key"


def _ensure_key_index(cur: Any, table: str, key: Sequence[str]) -> None:
    """Index ``table`` on its ingest key, so the key fetch and the deletes of ``--update`` look rows up instead of
    scanning the table (a signalling table of 10^8 rows per file otherwise). Built once: by the first ingest into
    a table, or the first after ``store copy`` replaced it (then over the rows already there, the one slow time)."""
    cur.execute(f"CREATE INDEX IF NOT EXISTS {key_index_name(table)} ON {table} ({', '.join(key)})")


def _copy_in(cur: Any, table: str, names: list[str], rows: pa.Table) -> None:
    text = io.BytesIO()
    pa_csv.write_csv(rows.select(names), text, write_options=pa_csv.WriteOptions(include_header=False))
    with cur.copy(f"COPY {table} ({', '.join(names)}) FROM STDIN (FORMAT csv)") as copy:
        copy.write(text.getvalue())


def _csv_table(data: bytes, schema: pa.Schema) -> pa.Table:
    if not data:
        return schema.empty_table()
    return pa_csv.read_csv(
        io.BytesIO(data),
        read_options=pa_csv.ReadOptions(column_names=schema.names),
        convert_options=pa_csv.ConvertOptions(
            column_types=schema,
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            true_values=["t"],
            false_values=["f"],
        ),
    )


# -- Spark: a directory of Parquet tables, read and written by DuckDB -----------------------------------------


class _ParquetTarget:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.con = duckdb.connect()

    def _glob(self, table: str) -> str:
        return str(self.root / table / "*.parquet").replace("'", "''")

    def has_table(self, table: str) -> bool:
        folder = self.root / table
        return folder.is_dir() and any(folder.glob("*.parquet"))

    def columns(self, table: str) -> list[tuple[str, str]]:
        described = self.con.execute(f"DESCRIBE SELECT * FROM read_parquet('{self._glob(table)}')").fetchall()
        return [(str(row[0]), str(row[1])) for row in described]

    def read_all(self, table: str) -> pa.Table:
        return _arrow(self.con, f"SELECT * FROM read_parquet('{self._glob(table)}')")

    def read_matching(self, table: str, key: Sequence[str], keys: pa.Table) -> pa.Table:
        self.con.register("ingest_keys", keys)
        try:
            match = " AND ".join(f"t.{k} = k.{k}" for k in key)
            return _arrow(
                self.con, f"SELECT t.* FROM read_parquet('{self._glob(table)}') AS t JOIN ingest_keys AS k ON {match}"
            )
        finally:
            self.con.unregister("ingest_keys")

    def apply(self, changes: Sequence[TableChange]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        staging = self.root / f".ingest-{uuid.uuid4().hex}"
        staging.mkdir()
        moves: list[tuple[Path, Path]] = []  # (staged, final): files into table dirs, or whole table dirs
        try:
            for change in changes:
                if change.deleted_keys is None and not change.added.num_rows and self.has_table(change.table):
                    continue
                moves.append(self._stage(staging, change))
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        retired = []
        try:
            for staged, final in moves:
                if staged.is_dir() and final.exists():
                    old = self.root / f".{final.name}.old.{uuid.uuid4().hex}"
                    final.rename(old)
                    retired.append(old)
                final.parent.mkdir(parents=True, exist_ok=True)
                staged.rename(final)
        except OSError as exc:
            raise FederationError(f"the Spark store's Parquet tables could not be updated: {exc}") from None
        finally:
            for old in retired:
                shutil.rmtree(old, ignore_errors=True)
            shutil.rmtree(staging, ignore_errors=True)

    def _stage(self, staging: Path, change: TableChange) -> tuple[Path, Path]:
        casts = ", ".join(f"CAST({name} AS {sql_type}) AS {name}" for name, sql_type in change.columns)
        self.con.register("added_rows", change.added)
        try:
            if change.deleted_keys is None and self.has_table(change.table):
                part = staging / f"part-{uuid.uuid4().hex}.parquet"
                self._write(f"SELECT {casts} FROM added_rows", part)
                return part, self.root / change.table / part.name
            folder = staging / change.table
            folder.mkdir()
            rows = f"SELECT {casts} FROM added_rows"
            if change.deleted_keys is not None:
                self.con.register("deleted_keys", change.deleted_keys)
                match = " AND ".join(f"t.{k} = d.{k}" for k in change.key)
                rows = (
                    f"SELECT t.* FROM read_parquet('{self._glob(change.table)}') AS t "
                    f"WHERE NOT EXISTS (SELECT 1 FROM deleted_keys AS d WHERE {match}) UNION ALL {rows}"
                )
            self._write(rows, folder / "part-00000.parquet")
            return folder, self.root / change.table
        finally:
            self.con.unregister("added_rows")

    def _write(self, sql: str, path: Path) -> None:
        target = str(path).replace("'", "''")
        self.con.execute(f"COPY ({sql}) TO '{target}' (FORMAT parquet, ROW_GROUP_SIZE 1000000)")
