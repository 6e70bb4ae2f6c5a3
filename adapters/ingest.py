"""Loading an agency's raw data (CSV or Parquet) into its DuckDB store, validated in SQL.

``fedbroker ingest KIND --store FILE (--csv | --parquet) PATH [--table TABLE]``: one file feeds one raw table
(telecom has three, so it needs ``--table``). Every check runs in DuckDB, never row by row in Python:

- a row with a null or unparsable id, timestamp or date, a district not in the domain, or a status or mode outside
  the allowed values goes to ``rejected_<table>`` (the table's columns as VARCHAR, ``reason``, ``source``);
  ``onset_date`` and ``cluster_id`` may be empty (suspected cases and close contacts often have no onset; a case
  outside any cluster has no cluster id); ``imported`` is true/false (also t/f, 1/0, yes/no);
- an older case export without ``imported`` and ``cluster_id`` still loads: its rows get ``imported = false``
  and ``cluster_id = NULL``, and the summary says so;
- a row whose primary key (cell_id, subscriber_id, (subscriber_id, ts, cell_id), case_id, ticket_id) is already in
  the table, or repeats an earlier row of the same file, is a duplicate and is skipped;
- the file's sha256 is recorded in ``ingest_log``; loading the same file into the same table again adds nothing.

Timestamps are read as local wall-clock time (a UTC offset in the text is ignored), like the raw tables' own
TIMESTAMP columns. A load is one transaction: it lands whole or not at all.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import duckdb
import numpy as np
import numpy.typing as npt

from adapters.store import ADDED_COLUMNS, AGENCY_KINDS, RAW_TABLES, create_tables, open_store
from federation.errors import ConfigError, FederationError
from federation.vocabulary import CASE_STATUSES, TRANSPORT_MODES

__all__ = ["PRIMARY_KEYS", "IngestSummary", "add_arguments", "ingest", "run"]

PRIMARY_KEYS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "cells": ("cell_id",),
        "subscribers": ("subscriber_id",),
        "signalling": ("subscriber_id", "ts", "cell_id"),
        "cases": ("case_id",),
        "tickets": ("ticket_id",),
    }
)

# How each column is checked: "id" (integer, required), "optional_id" (empty allowed), "district" (a domain
# code), "timestamp", "date", "optional_date" (empty allowed), "flag" (a boolean), or a tuple of allowed values.
_RULES: Mapping[str, Mapping[str, str | tuple[str, ...]]] = MappingProxyType(
    {
        "cells": {"cell_id": "id", "district": "district"},
        "subscribers": {"subscriber_id": "id", "home_district": "district"},
        "signalling": {"subscriber_id": "id", "ts": "timestamp", "cell_id": "id"},
        "cases": {
            "case_id": "id",
            "person_id": "id",
            "status": CASE_STATUSES,
            "district": "district",
            "onset_date": "optional_date",
            "report_date": "date",
            "imported": "flag",
            "cluster_id": "optional_id",
        },
        "tickets": {
            "ticket_id": "id",
            "passenger_id": "id",
            "mode": TRANSPORT_MODES,
            "origin": "district",
            "destination": "district",
            "departure": "timestamp",
        },
    }
)

_INTEGER_TEXT = r"[+-]?[0-9]+"  # TRY_CAST alone would accept '12.5' (rounded), '0x10' and '1_000'
_FLAG_TEXT = ("true", "false", "t", "f", "1", "0", "yes", "no")


@dataclass(frozen=True)
class IngestSummary:
    """What one ingest did to one table. Counts are rows of the source file."""

    kind: str
    table: str
    source: Path
    sha256: str  # hex digest of the source file's bytes
    loaded: int
    rejected: int
    duplicates: int
    already_loaded: bool  # this file was loaded into this table before: nothing was read or added
    rejected_by_reason: Mapping[str, int] = field(default_factory=dict)
    defaulted: Mapping[str, str] = field(default_factory=dict)  # column absent from the file -> value given

    def lines(self) -> list[str]:
        """The summary as printed by ``fedbroker ingest``."""
        head = f"{self.source} -> {self.kind} {self.table} (sha256 {self.sha256[:12]})"
        if self.already_loaded:
            return [head, f"  {self.table}: already loaded from this file; nothing added"]
        lines = [
            head,
            f"  {self.table}: {self.loaded} loaded, {self.rejected} rejected, {self.duplicates} duplicate",
        ]
        lines += [f"    rejected ({reason}): {count}" for reason, count in sorted(self.rejected_by_reason.items())]
        lines += [
            f"  {name}: not in the file (an older export); every row loaded with {name} = {value}"
            for name, value in self.defaulted.items()
        ]
        if self.rejected:
            lines.append(f"  rejected rows are kept in rejected_{self.table} with their reason")
        return lines


def ingest(
    kind: str,
    store: Path,
    *,
    csv: Path | None = None,
    parquet: Path | None = None,
    domain: npt.NDArray[np.int32] | None = None,
    table: str | None = None,
) -> IngestSummary:
    """Load one CSV (with a header row) or Parquet file into a raw table of ``store``, creating the store if needed.

    ``domain`` (district codes accepted; default: the full registry) decides "unknown district". ``table`` is
    required for telecom (cells | subscribers | signalling); health and transport have one table each.
    Raises ConfigError for a bad kind, table, source or store; a bad row is rejected, never raised.
    """
    table = _table_of(kind, table)
    source, source_format = _source_of(csv, parquet)
    codes = _domain_codes(domain)
    digest = _sha256(source)
    con = open_store(store, read_only=False)
    try:
        con.begin()
        try:
            summary = _load(con, kind, table, source, source_format, digest, codes)
        except BaseException:
            con.rollback()
            raise
        con.commit()
        return summary
    finally:
        con.close()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``fedbroker ingest``."""
    parser.add_argument("kind", choices=AGENCY_KINDS, help="agency kind of the store")
    parser.add_argument("--store", type=Path, required=True, help="the agency's DuckDB store (created if missing)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--csv", type=Path, help="CSV file with a header row naming the table's columns")
    source.add_argument("--parquet", type=Path, help="Parquet file with the table's columns")
    tables = sorted(name for kind_tables in RAW_TABLES.values() for name in kind_tables)
    parser.add_argument("--table", choices=tables, help="table the file holds (required for telecom)")
    parser.add_argument(
        "--provinces",
        help="comma-separated two-digit province codes: accept only their districts (default: the whole registry)",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``fedbroker ingest``: print the summary, return the exit status (0 done, 2 refused)."""
    try:
        domain = None
        if args.provinces:
            domain = np.array(_registry_codes(_province_list(args.provinces)), dtype=np.int32)
        summary = ingest(args.kind, args.store, csv=args.csv, parquet=args.parquet, domain=domain, table=args.table)
    except FederationError as exc:
        print(f"fedbroker ingest: {exc.message}", file=sys.stderr)
        return 2
    print("\n".join(summary.lines()))
    return 0


# -- the load, in SQL ----------------------------------------------------------------------------------------


def _load(
    con: duckdb.DuckDBPyConnection,
    kind: str,
    table: str,
    source: Path,
    source_format: str,
    digest: str,
    domain: list[int],
) -> IngestSummary:
    create_tables(con, kind)
    columns = [name for name, _ in RAW_TABLES[kind][table]]
    rejected_columns = ", ".join(f"{name} VARCHAR" for name in columns)
    con.execute(f"CREATE TABLE IF NOT EXISTS rejected_{table} ({rejected_columns}, reason VARCHAR, source VARCHAR)")
    con.execute(
        "CREATE TABLE IF NOT EXISTS ingest_log (sha256 VARCHAR, table_name VARCHAR, source VARCHAR, "
        "format VARCHAR, loaded BIGINT, rejected BIGINT, duplicates BIGINT, loaded_at TIMESTAMP)"
    )
    seen = con.execute(
        "SELECT count(*) FROM ingest_log WHERE sha256 = $sha256 AND table_name = $table",
        {"sha256": digest, "table": table},
    ).fetchone()
    if seen is not None and seen[0] > 0:
        return IngestSummary(kind, table, source, digest, 0, 0, 0, already_loaded=True)

    reader = _reader_sql(source_format)
    absent = _check_columns(con, reader, source, source_format, table, columns)
    defaulted = {name: ADDED_COLUMNS[table][name] for name in absent}
    text_columns = ", ".join(
        f"{_default_text(defaulted[name])} AS {name}"
        if name in defaulted
        else f"NULLIF(trim(CAST({name} AS VARCHAR)), '') AS {name}"
        for name in columns
    )
    _read(con, f"CREATE TEMP TABLE ingest_raw AS SELECT {text_columns} FROM {reader}", source, source_format)
    con.execute(
        "CREATE TEMP TABLE ingest_domain AS SELECT DISTINCT unnest($domain::INTEGER[]) AS district", {"domain": domain}
    )
    try:
        loaded, rejected, duplicates, reasons = _validate_and_insert(con, kind, table, str(source))
    finally:
        con.execute("DROP TABLE IF EXISTS ingest_raw")
        con.execute("DROP TABLE IF EXISTS ingest_domain")
        con.execute("DROP TABLE IF EXISTS ingest_checked")
    con.execute(
        "INSERT INTO ingest_log VALUES ($sha256, $table, $source, $format, $loaded, $rejected, $duplicates, $at)",
        {
            "sha256": digest,
            "table": table,
            "source": str(source),
            "format": source_format,
            "loaded": loaded,
            "rejected": rejected,
            "duplicates": duplicates,
            "at": dt.datetime.now(dt.UTC).replace(tzinfo=None),
        },
    )
    return IngestSummary(
        kind,
        table,
        source,
        digest,
        loaded,
        rejected,
        duplicates,
        False,
        MappingProxyType(reasons),
        MappingProxyType(defaulted),
    )


def _default_text(value: str) -> str:
    """An added column's default as the text the checks read (NULL stays NULL)."""
    return "NULL::VARCHAR" if value == "NULL" else f"'{value}'"


def _validate_and_insert(
    con: duckdb.DuckDBPyConnection, kind: str, table: str, source: str
) -> tuple[int, int, int, dict[str, int]]:
    """Check every row of ingest_raw, reject the bad, insert the new; (loaded, rejected, duplicates, reasons)."""
    rules = _RULES[table]
    sql_types = dict(RAW_TABLES[kind][table])
    columns = list(sql_types)
    typed: list[str] = []
    checks: list[str] = []
    joins: list[str] = []
    for name in columns:
        rule = rules[name]
        raw = f"raw.{name}"
        if isinstance(rule, tuple):
            allowed = ", ".join(f"'{value}'" for value in rule)
            typed.append(f"{raw} AS {name}")
            checks.append(
                f"CASE WHEN {raw} IS NULL THEN 'null {name}' WHEN {raw} NOT IN ({allowed}) THEN 'bad {name}' END"
            )
            continue
        cast = f"TRY_CAST({raw} AS {sql_types[name]})"
        typed.append(f"{cast} AS {name}")
        optional = rule in ("optional_date", "optional_id")
        null_check = "" if optional else f"WHEN {raw} IS NULL THEN 'null {name}' "
        if rule in ("id", "district"):
            parse_check = f"WHEN NOT regexp_full_match({raw}, '{_INTEGER_TEXT}') OR {cast} IS NULL"
        elif rule == "optional_id":
            parse_check = (
                f"WHEN {raw} IS NOT NULL AND (NOT regexp_full_match({raw}, '{_INTEGER_TEXT}') OR {cast} IS NULL)"
            )
        elif rule == "flag":
            allowed_flags = ", ".join(f"'{value}'" for value in _FLAG_TEXT)
            parse_check = f"WHEN lower({raw}) NOT IN ({allowed_flags})"
        else:
            parse_check = f"WHEN {raw} IS NOT NULL AND {cast} IS NULL"
        domain_check = ""
        if rule == "district":
            joins.append(f"LEFT JOIN ingest_domain AS dom_{name} ON dom_{name}.district = {cast}")
            domain_check = f" WHEN dom_{name}.district IS NULL THEN 'unknown district in {name}'"
        checks.append(f"CASE {null_check}{parse_check} THEN 'unparsable {name}'{domain_check} END")
    con.execute(
        f"CREATE TEMP TABLE ingest_checked AS SELECT raw.rowid AS source_row, "
        f"{', '.join(f'raw.{name} AS raw_{name}' for name in columns)}, {', '.join(typed)}, "
        f"NULLIF(concat_ws('; ', {', '.join(checks)}), '') AS reason "
        f"FROM ingest_raw AS raw {' '.join(joins)}"
    )
    raw_columns = ", ".join(f"raw_{name}" for name in columns)
    con.execute(
        f"INSERT INTO rejected_{table} SELECT {raw_columns}, reason, $source "
        "FROM ingest_checked WHERE reason IS NOT NULL",
        {"source": source},
    )
    key = PRIMARY_KEYS[table]
    # First occurrence in file order wins within the file; a key already in the table is never replaced.
    new_rows = con.execute(
        f"""
        INSERT INTO {table} ({", ".join(columns)})
        SELECT {", ".join(columns)} FROM (
            SELECT *, row_number() OVER (PARTITION BY {", ".join(key)} ORDER BY source_row) AS copy
            FROM ingest_checked WHERE reason IS NULL
        ) AS valid
        WHERE copy = 1 AND NOT EXISTS (
            SELECT 1 FROM {table} AS existing WHERE {" AND ".join(f"existing.{k} = valid.{k}" for k in key)}
        )
        """
    ).fetchone()
    loaded = int(new_rows[0]) if new_rows is not None else 0
    totals = con.execute("SELECT count(*), count(reason) FROM ingest_checked").fetchone()
    assert totals is not None
    total, rejected = int(totals[0]), int(totals[1])
    reasons = dict(
        con.execute("SELECT reason, count(*) FROM ingest_checked WHERE reason IS NOT NULL GROUP BY reason").fetchall()
    )
    return loaded, rejected, total - rejected - loaded, {str(k): int(v) for k, v in reasons.items()}


def _reader_sql(source_format: str) -> str:
    if source_format == "csv":
        return "read_csv($source, header = true, all_varchar = true)"
    return "read_parquet($source)"


def _read(con: duckdb.DuckDBPyConnection, sql: str, source: Path, source_format: str) -> None:
    try:
        con.execute(sql, {"source": str(source)})
    except duckdb.Error as exc:
        raise _unreadable(source, source_format, exc) from exc


def _unreadable(source: Path, source_format: str, exc: duckdb.Error) -> ConfigError:
    # The first line of DuckDB's message names the problem; later lines may quote the file's content (raw rows).
    problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return ConfigError(f"cannot read {source} as {source_format.upper()}: {problem}; fix or re-export the file")


def _check_columns(
    con: duckdb.DuckDBPyConnection,
    reader: str,
    source: Path,
    source_format: str,
    table: str,
    columns: Sequence[str],
) -> list[str]:
    """Check the source has the table's columns; returns the added columns (ADDED_COLUMNS) it lacks."""
    try:
        described = con.execute(f"DESCRIBE SELECT * FROM {reader}", {"source": str(source)}).fetchall()
    except duckdb.Error as exc:
        raise _unreadable(source, source_format, exc) from exc
    present = {str(row[0]) for row in described}
    optional = ADDED_COLUMNS.get(table, {})
    absent = [name for name in columns if name not in present and name in optional]
    if 0 < len(absent) < len(optional):
        raise ConfigError(
            f"{source} has {', '.join(sorted(set(optional) - set(absent)))} but lacks {', '.join(absent)}: "
            f"give the file all of {', '.join(optional)} (or none of them, for an older export)"
        )
    missing = [name for name in columns if name not in present and name not in optional]
    if missing:
        raise ConfigError(
            f"{source} lacks column(s) {', '.join(missing)} of table {table}; its header must name {', '.join(columns)}"
        )
    return absent


# -- arguments -----------------------------------------------------------------------------------------------


def _table_of(kind: str, table: str | None) -> str:
    if kind not in RAW_TABLES:
        raise ConfigError(f"unknown agency kind {kind!r}: use one of {', '.join(AGENCY_KINDS)}")
    tables = tuple(RAW_TABLES[kind])
    if table is None:
        if len(tables) > 1:
            raise ConfigError(f"a {kind} store has several tables: name the file's one with --table {'|'.join(tables)}")
        return tables[0]
    if table not in tables:
        raise ConfigError(f"{table!r} is not a {kind} table: use --table {'|'.join(tables)}")
    return table


def _source_of(csv: Path | None, parquet: Path | None) -> tuple[Path, str]:
    if (csv is None) == (parquet is None):
        raise ConfigError("give exactly one source file: --csv PATH or --parquet PATH")
    source, source_format = (Path(csv), "csv") if csv is not None else (Path(str(parquet)), "parquet")
    if not source.is_file():
        raise ConfigError(f"source file {source} does not exist; fix the --{source_format} path")
    return source, source_format


def _domain_codes(domain: npt.NDArray[np.int32] | None) -> list[int]:
    if domain is None:
        return _registry_codes(None)
    array = np.asarray(domain)
    if array.ndim != 1 or array.size == 0 or not np.issubdtype(array.dtype, np.integer):
        raise ConfigError("the ingest domain must be a non-empty one-dimensional array of district codes")
    codes: list[int] = array.astype(np.int64).tolist()
    return codes


def _registry_codes(provinces: list[int] | None) -> list[int]:
    # Imported here: loading the registry reads package data, which only ingest without a domain needs.
    from federation.registry import load_registry

    codes: list[int] = load_registry(provinces).codes.astype(np.int64).tolist()
    return codes


def _province_list(text: str) -> list[int]:
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts or not all(part.isdigit() and len(part) == 2 for part in parts):
        raise ConfigError(f"--provinces {text!r}: give comma-separated two-digit province codes, e.g. 42,43")
    return [int(part) for part in parts]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
