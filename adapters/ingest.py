"""Loading an agency's raw data (CSV or Parquet) into its store (DuckDB, PostgreSQL or Spark), validated in SQL.

``fedbroker ingest KIND --store STORE (--csv | --parquet) PATH [--table TABLE] [--provinces P | --federation F]
[--show-rejected] [--update] [--strict]``: one file feeds one raw table (telecom has three, so it needs
``--table``); STORE is any store value (a DuckDB path, ``postgresql://...``, ``spark:TABLES_DIR``). Every check
runs in DuckDB, never row by row in Python:

- a row with a null or unparsable id, timestamp or date, a district not in the domain (the registry, the given
  provinces or the roster's domain), a status or mode outside the allowed values, or too few fields goes to
  ``rejected_<table>`` (the table's columns as VARCHAR, ``reason``, ``source``, ``line``: the CSV line, header
  = line 1, or the Parquet row from 1); ``onset_date`` and ``cluster_id`` may be empty (suspected cases and
  close contacts often have no onset; a case outside any cluster has no cluster id); ``imported`` is true/false
  (also t/f, 1/0, yes/no); ``--show-rejected`` prints each one's line, reason and fields;
- an older case export without ``imported`` and ``cluster_id`` still loads: its rows get ``imported = false``
  and ``cluster_id = NULL``, and the summary says so;
- references, keys and flags (``adapters.ingest_checks``): signalling must name known cells and subscribers; a
  key that comes again with the same content is a duplicate, with other content a conflict naming the other
  line (``--update`` replaces the stored row instead, audited in ``ingest_updates``); an onset after the report
  date loads but is flagged;
- the file's sha256 is recorded in ``ingest_log``; loading the same file into the same table again adds nothing
  (unless ``--update``);
- ``subscribers.msisdn`` (E.164, e.g. ``+8613800000000``) may be missing from the file (older exports: the column
  loads as NULL) or empty; a number that is not E.164, or that another subscriber already holds (in the table or
  on an earlier valid row of the file), rejects the row.

A UTC offset in a timestamp (``Z``, ``+08``, ``-05:00``) is converted to the stores' zone, Asia/Shanghai, and
kept naive like the raw tables' own TIMESTAMP columns; text without one is local time already. A load is one
transaction: it lands whole or not at all; ``--strict`` rolls it back (exit 1) when any row is rejected; a
load that fails leaves no trace, not even a new empty store file (only the ingest lock file beside it,
``adapters.ingest_lock``: a second ingest into a store being loaded is refused as busy, exit 9). After a load
the store's daily partial aggregates are rebuilt (``adapters.partials``). A PostgreSQL or Spark store gets the
same checks, run in an in-memory DuckDB over the stored rows they need, and the result applied in one change set
(``adapters.ingest_remote``: one transaction in PostgreSQL, files renamed into place for Spark's Parquet).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import hashlib
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import duckdb
import numpy as np
import numpy.typing as npt

from adapters.backends import Store, open_backend
from adapters.backends.duckdb_store import DuckDBStore
from adapters.backends.postgresql_store import PostgreSQLStore
from adapters.ingest_checks import KeyOutcome, check_keys, check_references, flag_rows, record_lines
from adapters.ingest_lock import exclusive_file_lock, ingest_lock_path, postgresql_ingest_lock
from adapters.partials import refresh as refresh_partials
from adapters.store import ADDED_COLUMNS, AGENCY_KINDS, RAW_TABLES, create_tables, open_store
from federation.errors import ConfigError, FederationError, IngestBusy
from federation.msisdn import E164_PATTERN
from federation.stores import DEFAULT_SPARK_MASTER, StoreLocation, parse_store
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
# code), "timestamp", "date", "optional_date" (empty allowed), "flag" (a boolean), "msisdn" (E.164, empty
# allowed), or a tuple of allowed values.
_RULES: Mapping[str, Mapping[str, str | tuple[str, ...]]] = MappingProxyType(
    {
        "cells": {"cell_id": "id", "district": "district"},
        "subscribers": {"subscriber_id": "id", "home_district": "district", "msisdn": "msisdn"},
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

_E164_SQL = E164_PATTERN  # regexp_full_match anchors it
_INTEGER_TEXT = r"[+-]?[0-9]+"  # TRY_CAST alone would accept '12.5' (rounded), '0x10' and '1_000'
_FLAG_TEXT = ("true", "false", "t", "f", "1", "0", "yes", "no")
_OFFSET_TEXT = r"[0-9](Z|[+-][0-9]{2}(:?[0-9]{2})?)$"  # a time followed by a UTC offset
#: The stores' civil time zone: raw TIMESTAMP columns hold naive local time here (docs/protocol.md).
STORE_TIME_ZONE = "Asia/Shanghai"
#: Rejected rows kept in the summary for ``--show-rejected`` (all of them are in rejected_<table>).
SHOWN_REJECTED_CAP = 10_000


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
    updated: int = 0  # stored rows replaced (--update), each recorded in ingest_updates
    flagged: Mapping[str, tuple[int, ...]] = field(default_factory=dict)  # reason -> lines (loaded anyway)
    notes: tuple[str, ...] = ()
    #: (line, reason, the row's raw fields) of the first SHOWN_REJECTED_CAP rejected rows, in line order.
    rejected_rows: tuple[tuple[int, str, tuple[object, ...]], ...] = ()
    strict_refused: bool = False  # --strict and something was rejected: the load was rolled back

    def lines(self, *, show_rejected: bool = False) -> list[str]:
        """The summary as printed by ``fedbroker ingest`` (with every rejected row's line under show_rejected)."""
        head = f"{self.source} -> {self.kind} {self.table} (sha256 {self.sha256[:12]})"
        if self.already_loaded:
            return [head, f"  {self.table}: already loaded from this file; nothing added"]
        counts = f"{self.loaded} loaded, {self.rejected} rejected, {self.duplicates} duplicate"
        if self.updated:
            counts += f", {self.updated} updated"
        lines = [head, f"  {self.table}: {counts}"]
        lines += [f"    rejected ({reason}): {count}" for reason, count in sorted(self.rejected_by_reason.items())]
        lines += [
            f"  {name}: not in the file (an older export); every row loaded with {name} = {value}"
            for name, value in self.defaulted.items()
        ]
        for reason, flagged_lines in sorted(self.flagged.items()):
            shown = ", ".join(map(str, flagged_lines[:10])) + (" ..." if len(flagged_lines) > 10 else "")
            lines.append(f"    flagged ({reason}), loaded: {len(flagged_lines)} (lines {shown})")
        lines += [f"  note: {note}" for note in self.notes]
        if self.strict_refused:
            lines.append("  --strict: rows were rejected, so nothing was loaded; fix them and load the file again")
        elif self.rejected:
            lines.append(f"  rejected rows are kept in rejected_{self.table} with their line and reason")
        if show_rejected:
            for line, reason, fields in self.rejected_rows:
                shown_fields = ",".join("" if value is None else str(value) for value in fields)
                lines.append(f"  line {line}: {reason}: {shown_fields}")
            if self.rejected > len(self.rejected_rows):
                lines.append(f"  ... {self.rejected - len(self.rejected_rows)} more in rejected_{self.table}")
        return lines


#: Called once ``ingest_checked`` exists, before the checks that look at stored rows: (con, table, key).
BeforeChecks = Callable[[duckdb.DuckDBPyConnection, str, Sequence[str]], None]


def ingest(
    kind: str,
    store: Path | StoreLocation,
    *,
    csv: Path | None = None,
    parquet: Path | None = None,
    domain: npt.NDArray[np.int32] | None = None,
    table: str | None = None,
    update: bool = False,
    strict: bool = False,
) -> IngestSummary:
    """Load one CSV (with a header row) or Parquet file into a raw table of ``store``, creating the store if needed.

    ``domain`` (district codes accepted; default: the full registry) decides "unknown district". ``table`` is
    required for telecom (cells | subscribers | signalling); health and transport have one table each.
    ``update`` replaces stored rows whose key comes again with other content (audited in ingest_updates);
    without it they are rejected as conflicts. ``strict`` rolls the whole load back when any row is rejected.
    Raises ConfigError for a bad kind, table, source or store; a bad row is rejected, never raised. A load that
    raises or is refused changes nothing: not even a new, empty store file is left behind. ``store`` is a
    DuckDB file or any store location (PostgreSQL, Spark Parquet tables: ``adapters.ingest_remote``).
    """
    table = _table_of(kind, table)
    source, source_format = _source_of(csv, parquet)
    codes = _domain_codes(domain)
    digest = _sha256(source)
    if isinstance(store, StoreLocation):
        if store.engine != "duckdb":
            return _ingest_elsewhere(store, kind, table, source, source_format, digest, codes, update, strict)
        assert store.path is not None
        store = store.path
    location = StoreLocation("duckdb", path=Path(store))
    with exclusive_file_lock(ingest_lock_path(location), location.describe()):
        return _ingest_duckdb(Path(store), kind, table, source, source_format, digest, codes, update, strict)


def _ingest_duckdb(
    store: Path,
    kind: str,
    table: str,
    source: Path,
    source_format: str,
    digest: str,
    codes: list[int],
    update: bool,
    strict: bool,
) -> IngestSummary:
    """The load into a DuckDB file, in one transaction (the caller holds the store's ingest lock)."""
    created = not Path(store).exists()
    con = open_store(store, read_only=False)
    try:
        con.begin()
        try:
            summary = _load(con, kind, table, source, source_format, digest, codes, update=update)
        except BaseException:
            con.rollback()
            raise
        if strict and summary.rejected:
            con.rollback()
            summary = dataclasses.replace(summary, loaded=0, updated=0, strict_refused=True)
        else:
            con.commit()
            if not summary.already_loaded:
                # The daily partials no longer cover the raw tables: rebuild them, so rounds stay on partials.
                refresh_partials(DuckDBStore.wrap(con), kind)
    except BaseException:
        con.close()
        if created:
            _remove_store(Path(store))
        raise
    con.close()
    if summary.strict_refused and created:
        _remove_store(Path(store))
    return summary


def _ingest_elsewhere(
    location: StoreLocation,
    kind: str,
    table: str,
    source: Path,
    source_format: str,
    digest: str,
    codes: list[int],
    update: bool,
    strict: bool,
) -> IngestSummary:
    """The same load into a PostgreSQL or Spark store: checked in a DuckDB workspace, applied as one change set."""
    backend = open_backend(location, read_only=False)
    try:
        with _ingest_lock(backend, location):
            return _ingest_checked_elsewhere(backend, kind, table, source, source_format, digest, codes, update, strict)
    finally:
        backend.close()


def _ingest_lock(backend: Store, location: StoreLocation) -> contextlib.AbstractContextManager[None]:
    """The store's ingest lock (adapters.ingest_lock): an advisory lock in PostgreSQL, a lock file for Parquet."""
    if isinstance(backend, PostgreSQLStore):
        return postgresql_ingest_lock(backend.conn, location.describe())
    return exclusive_file_lock(ingest_lock_path(location), location.describe())


def _ingest_checked_elsewhere(
    backend: Store,
    kind: str,
    table: str,
    source: Path,
    source_format: str,
    digest: str,
    codes: list[int],
    update: bool,
    strict: bool,
) -> IngestSummary:
    """Check in a DuckDB workspace, apply the change set, refresh what it made stale (the caller holds the lock)."""
    from adapters.ingest_remote import open_workspace

    workspace = open_workspace(backend, kind, table)
    try:
        summary = _load(
            workspace.con,
            kind,
            table,
            source,
            source_format,
            digest,
            codes,
            update=update,
            before_checks=workspace.fetch_keyed_rows,
        )
        if summary.already_loaded:
            return summary
        if strict and summary.rejected:
            return dataclasses.replace(summary, loaded=0, updated=0, strict_refused=True)
        changes = workspace.changes(_key_of)
        workspace.target.apply(changes)
    finally:
        workspace.close()
    # Partials go stale only when their raw rows came or went (fresh() compares fingerprints of the raw
    # tables), and each partial in the store's engine costs jobs: rebuild only those.
    changed = [
        c.table for c in changes if c.table in RAW_TABLES[kind] and (c.added.num_rows or c.deleted_keys is not None)
    ]
    if changed:
        refresh_partials(backend, kind, changed)
    return summary


def _key_of(table: str) -> tuple[str, ...]:
    """The key of a raw table or of its provenance table (rows --update replaces are deleted by it)."""
    return PRIMARY_KEYS.get(table) or PRIMARY_KEYS.get(table.removeprefix("ingest_lines_"), ())


def _remove_store(path: Path) -> None:
    for leftover in (path, Path(f"{path}.wal")):
        leftover.unlink(missing_ok=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``fedbroker ingest``."""
    parser.add_argument("kind", choices=AGENCY_KINDS, help="agency kind of the store")
    parser.add_argument(
        "--store",
        required=True,
        help="the agency's store: PATH (DuckDB, created if missing) | postgresql://USER@HOST:PORT/DB | spark:DIR",
    )
    parser.add_argument(
        "--spark-master", default=DEFAULT_SPARK_MASTER, help="Spark master for spark: stores (default local[2])"
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--csv", type=Path, help="CSV file with a header row naming the table's columns")
    source.add_argument("--parquet", type=Path, help="Parquet file with the table's columns")
    tables = sorted(name for kind_tables in RAW_TABLES.values() for name in kind_tables)
    parser.add_argument("--table", choices=tables, help="table the file holds (required for telecom)")
    domain = parser.add_mutually_exclusive_group()
    domain.add_argument(
        "--provinces",
        help="comma-separated two-digit province codes: accept only their districts (default: the whole registry)",
    )
    domain.add_argument("--federation", type=Path, help="accept only the districts of this roster's domain")
    parser.add_argument("--show-rejected", action="store_true", help="print every rejected row: line, reason, fields")
    parser.add_argument(
        "--update", action="store_true", help="replace stored rows whose key comes again with other content (audited)"
    )
    parser.add_argument(
        "--strict", action="store_true", help="load nothing and exit 1 if any row is rejected (default: load the rest)"
    )


def run(args: argparse.Namespace) -> int:
    """Run ``fedbroker ingest``: print the summary; exit 0 done, 1 rows rejected under --strict, 2 refused, 9 busy
    (another ingest into the same store is running: adapters.ingest_lock)."""
    try:
        domain = None
        if args.provinces:
            domain = np.array(_registry_codes(_province_list(args.provinces)), dtype=np.int32)
        elif args.federation:
            from federation.config import load_federation

            provinces = load_federation(args.federation).domain.provinces
            domain = np.array(_registry_codes(None if provinces is None else list(provinces)), dtype=np.int32)
        location = parse_store(
            str(args.store),
            base=Path.cwd(),
            where="--store",
            spark_master=getattr(args, "spark_master", DEFAULT_SPARK_MASTER),
        )
        summary = ingest(
            args.kind,
            location,
            csv=args.csv,
            parquet=args.parquet,
            domain=domain,
            table=args.table,
            update=args.update,
            strict=args.strict,
        )
    except FederationError as exc:
        print(f"fedbroker ingest: {exc.message}", file=sys.stderr)
        # Busy is worth retrying as it is; anything else needs the command or the store fixed first.
        return exc.exit_code if isinstance(exc, IngestBusy) else 2
    print("\n".join(summary.lines(show_rejected=args.show_rejected)))
    return 1 if summary.strict_refused else 0


# -- the load, in SQL ----------------------------------------------------------------------------------------


def _load(
    con: duckdb.DuckDBPyConnection,
    kind: str,
    table: str,
    source: Path,
    source_format: str,
    digest: str,
    domain: list[int],
    *,
    update: bool,
    before_checks: BeforeChecks | None = None,
) -> IngestSummary:
    create_tables(con, kind)
    columns = [name for name, _ in RAW_TABLES[kind][table]]
    rejected_columns = ", ".join(f"{name} VARCHAR" for name in columns)
    con.execute(f"CREATE TABLE IF NOT EXISTS rejected_{table} ({rejected_columns}, reason VARCHAR, source VARCHAR)")
    # Stores from before line numbers: the column is added, old rows keep NULL.
    con.execute(f"ALTER TABLE rejected_{table} ADD COLUMN IF NOT EXISTS line BIGINT")
    con.execute(
        "CREATE TABLE IF NOT EXISTS ingest_log (sha256 VARCHAR, table_name VARCHAR, source VARCHAR, "
        "format VARCHAR, loaded BIGINT, rejected BIGINT, duplicates BIGINT, loaded_at TIMESTAMP)"
    )
    seen = con.execute(
        "SELECT count(*) FROM ingest_log WHERE sha256 = $sha256 AND table_name = $table",
        {"sha256": digest, "table": table},
    ).fetchone()
    if seen is not None and seen[0] > 0 and not update:
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
    # A CSV's first data row is line 2 (after the header); a Parquet file's rows are numbered from 1.
    first_line = 2 if source_format == "csv" else 1
    try:
        checks = _validate_and_insert(
            con, kind, table, str(source), first_line=first_line, update=update, before_checks=before_checks
        )
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
            "loaded": checks.loaded,
            "rejected": checks.rejected,
            "duplicates": checks.outcome.duplicates,
            "at": dt.datetime.now(dt.UTC).replace(tzinfo=None),
        },
    )
    return IngestSummary(
        kind,
        table,
        source,
        digest,
        checks.loaded,
        checks.rejected,
        checks.outcome.duplicates,
        False,
        MappingProxyType(checks.reasons),
        MappingProxyType(defaulted),
        updated=checks.outcome.updated,
        flagged=MappingProxyType({reason: tuple(lines) for reason, lines in checks.flagged.items()}),
        notes=tuple(checks.outcome.notes),
        rejected_rows=tuple(checks.rejected_rows),
    )


@dataclass(frozen=True)
class _Checks:
    loaded: int
    rejected: int
    reasons: dict[str, int]
    outcome: KeyOutcome
    flagged: dict[str, list[int]]
    rejected_rows: list[tuple[int, str, tuple[object, ...]]]


def _default_text(value: str) -> str:
    """An added column's default as the text the checks read (NULL stays NULL)."""
    return "NULL::VARCHAR" if value == "NULL" else f"'{value}'"


def _validate_and_insert(
    con: duckdb.DuckDBPyConnection,
    kind: str,
    table: str,
    source: str,
    *,
    first_line: int,
    update: bool,
    before_checks: BeforeChecks | None = None,
) -> _Checks:
    """Check every row of ingest_raw, reject the bad, insert the new (``first_line``: the first row's line)."""
    rules = _RULES[table]
    sql_types = dict(RAW_TABLES[kind][table])
    columns = list(sql_types)
    typed: list[str] = []
    checks: list[str] = []
    joins: list[str] = []
    for name in columns:
        rule = rules[name]
        raw = f"raw.{name}"
        if rule == "msisdn":
            # A number held by another subscriber in the table rejects the row; repeats within the file below.
            typed.append(f"{raw} AS {name}")
            joins.append(
                f"LEFT JOIN (SELECT {name}, min(subscriber_id) AS holder FROM {table} GROUP BY {name}) AS taken "
                f"ON taken.{name} = {raw} AND taken.holder IS DISTINCT FROM TRY_CAST(raw.subscriber_id AS BIGINT)"
            )
            checks.append(
                f"CASE WHEN {raw} IS NOT NULL AND NOT regexp_full_match({raw}, '{_E164_SQL}') THEN 'bad {name}' "
                f"WHEN taken.{name} IS NOT NULL THEN '{name} of another subscriber' END"
            )
            continue
        if isinstance(rule, tuple):
            allowed = ", ".join(f"'{value}'" for value in rule)
            typed.append(f"{raw} AS {name}")
            checks.append(
                f"CASE WHEN {raw} IS NULL THEN 'null {name}' WHEN {raw} NOT IN ({allowed}) THEN 'bad {name}' END"
            )
            continue
        cast = f"TRY_CAST({raw} AS {sql_types[name]})"
        if rule == "timestamp":
            # A UTC offset in the text (Z, +08, -05:00) is converted to the stores' zone; text without one is
            # already local wall-clock time.
            cast = (
                f"CASE WHEN regexp_matches({raw}, '{_OFFSET_TEXT}') "
                f"THEN CAST(timezone('{STORE_TIME_ZONE}', TRY_CAST({raw} AS TIMESTAMPTZ)) AS TIMESTAMP) "
                f"ELSE TRY_CAST({raw} AS TIMESTAMP) END"
            )
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
        # Row ids follow file order (insertion order is preserved) but need not start at 0 in a temp table.
        f"CREATE TEMP TABLE ingest_checked AS SELECT raw.rowid - first.rowid AS source_row, "
        f"raw.rowid - first.rowid + {int(first_line)} AS line, "
        f"{', '.join(f'raw.{name} AS raw_{name}' for name in columns)}, {', '.join(typed)}, "
        f"NULLIF(concat_ws('; ', {', '.join(checks)}), '') AS reason "
        f"FROM ingest_raw AS raw CROSS JOIN (SELECT min(rowid) AS rowid FROM ingest_raw) AS first {' '.join(joins)}"
    )
    if "msisdn" in columns:
        con.execute(
            """
            UPDATE ingest_checked SET reason = 'msisdn of another subscriber'
            WHERE reason IS NULL AND msisdn IS NOT NULL AND EXISTS (
                SELECT 1 FROM ingest_checked AS earlier
                WHERE earlier.msisdn = ingest_checked.msisdn AND earlier.source_row < ingest_checked.source_row
                  AND earlier.reason IS NULL
                  AND earlier.subscriber_id IS DISTINCT FROM ingest_checked.subscriber_id
            )
            """
        )
    key = PRIMARY_KEYS[table]
    if before_checks is not None:
        before_checks(con, table, key)
    references = check_references(con, table)
    outcome = check_keys(con, table, columns, key, source=source, update=update)
    outcome.notes[:0] = references
    flagged = flag_rows(con, table, source)
    raw_columns = ", ".join(f"raw_{name}" for name in columns)
    con.execute(
        f"INSERT INTO rejected_{table} ({raw_columns.replace('raw_', '')}, reason, source, line) "
        f"SELECT {raw_columns}, reason, $source, line FROM ingest_checked WHERE reason IS NOT NULL",
        {"source": source},
    )
    inserted = con.execute(
        f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(columns)} FROM ingest_checked WHERE keep"
    ).fetchone()
    record_lines(con, table, key, source)
    loaded = int(inserted[0]) if inserted is not None else 0
    reasons = {
        str(k): int(v)
        for k, v in con.execute(
            "SELECT CASE WHEN starts_with(reason, 'conflict') THEN 'conflict' ELSE reason END, count(*) "
            "FROM ingest_checked WHERE reason IS NOT NULL GROUP BY 1"
        ).fetchall()
    }
    shown = con.execute(
        f"SELECT line, reason, {raw_columns} FROM ingest_checked WHERE reason IS NOT NULL ORDER BY line LIMIT $cap",
        {"cap": SHOWN_REJECTED_CAP},
    ).fetchall()
    return _Checks(
        loaded=loaded,
        rejected=sum(reasons.values()),
        reasons=reasons,
        outcome=outcome,
        flagged=flagged,
        rejected_rows=[(int(row[0]), str(row[1]), tuple(row[2:])) for row in shown],
    )


def _reader_sql(source_format: str) -> str:
    if source_format == "csv":
        # null_padding: a short row reads as a row with empty trailing fields, rejected with its line number,
        # instead of failing the whole file.
        return "read_csv($source, header = true, all_varchar = true, null_padding = true)"
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
