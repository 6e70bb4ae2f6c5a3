"""``fedbroker store copy SRC DST``: an agency's raw tables from one store into another, any engine to any engine.

The kind is the one whose raw tables SRC holds (all of them). Each table moves as Arrow record batches and
replaces the table of the same name in DST, in one transaction per table where the engine has them (a Parquet
table is written beside the old one and swapped in). Only raw tables move: audit logs, rejected rows and partial
aggregates stay with their store (``fedbroker store refresh`` rebuilds partials from the copied raw tables).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from adapters.backends import Store, open_backend
from adapters.store import RAW_TABLES
from federation.errors import ConfigError, FederationError
from federation.stores import DEFAULT_SPARK_MASTER, StoreLocation, parse_store

__all__ = ["CopySummary", "add_arguments", "copy_store", "copy_tables", "detect_kind", "run"]

BATCH_ROWS = 1 << 20


@dataclass(frozen=True)
class CopySummary:
    kind: str
    rows: dict[str, int]  # table -> rows written

    def lines(self, source: StoreLocation, target: StoreLocation) -> list[str]:
        head = f"{source.describe()} -> {target.describe()} ({self.kind})"
        return [head, *(f"  {table}: {rows} rows" for table, rows in self.rows.items())]


def detect_kind(store: Store) -> str:
    """The agency kind whose raw tables are all in ``store``."""
    kinds = [kind for kind, tables in RAW_TABLES.items() if all(store.has_table(t) for t in tables)]
    if len(kinds) != 1:
        found = ", ".join(kinds) or "none"
        raise ConfigError(
            f"{store.location.describe()} holds the raw tables of {found} agency kinds; a store copy needs exactly "
            "one: give --kind"
        )
    return kinds[0]


def copy_tables(source: Store, target: Store, kind: str) -> CopySummary:
    """Copy every raw table of ``kind`` from ``source`` to ``target``."""
    rows: dict[str, int] = {}
    for table, columns in RAW_TABLES[kind].items():
        if not source.has_table(table):
            raise ConfigError(f"{source.location.describe()} has no {table} table: it is not a {kind} store")
        rows[table] = target.write_table(table, columns, source.read_table(table, BATCH_ROWS))
    return CopySummary(kind, rows)


def copy_store(source: StoreLocation, target: StoreLocation, *, kind: str | None = None) -> CopySummary:
    if source == target:
        raise ConfigError("the source and the target are the same store")
    src = open_backend(source)
    try:
        dst = open_backend(target, read_only=False)
        try:
            return copy_tables(src, dst, kind or detect_kind(src))
        finally:
            dst.close()
    finally:
        src.close()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``fedbroker store copy``."""
    parser.add_argument("source", help="PATH | duckdb:PATH | postgresql://USER@HOST:PORT/DB | spark:TABLES_DIR")
    parser.add_argument("target", help="the same forms; a DuckDB file or Parquet directory is created if missing")
    parser.add_argument("--kind", choices=tuple(RAW_TABLES), help="agency kind (default: found from SRC's tables)")
    parser.add_argument(
        "--spark-master", default=DEFAULT_SPARK_MASTER, help="Spark master for spark: stores (default local[2])"
    )


def run(args: argparse.Namespace) -> int:
    try:
        source = parse_store(args.source, base=Path.cwd(), where="SRC", spark_master=args.spark_master)
        target = parse_store(args.target, base=Path.cwd(), where="DST", spark_master=args.spark_master)
        summary = copy_store(source, target, kind=args.kind)
    except FederationError as exc:
        print(f"fedbroker store copy: {exc.message}", file=sys.stderr)
        return 2
    print("\n".join(summary.lines(source, target)))
    return 0


def add_refresh_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``fedbroker store refresh``."""
    parser.add_argument("store", help="PATH | duckdb:PATH | postgresql://USER@HOST:PORT/DB | spark:TABLES_DIR")
    parser.add_argument("--kind", choices=tuple(RAW_TABLES), help="agency kind (default: found from its tables)")
    parser.add_argument(
        "--spark-master", default=DEFAULT_SPARK_MASTER, help="Spark master for spark: stores (default local[2])"
    )


def run_refresh(args: argparse.Namespace) -> int:
    """``fedbroker store refresh``: rebuild the store's daily partials from its raw tables."""
    from adapters.partials import refresh

    try:
        location = parse_store(args.store, base=Path.cwd(), where="STORE", spark_master=args.spark_master)
        store = open_backend(location, read_only=False)
        try:
            kind = args.kind or detect_kind(store)
            built = refresh(store, kind)
        finally:
            store.close()
    except FederationError as exc:
        print(f"fedbroker store refresh: {exc.message}", file=sys.stderr)
        return 2
    print(f"{location.describe()} ({kind}): partials refreshed")
    print("\n".join(f"  {table}: {rows} rows" for table, rows in built.items()))
    return 0
