"""The checks of an ingest that look beyond one row: references, keys seen before, and flags. All in DuckDB SQL.

They run on ``ingest_checked`` (one row per source row: ``source_row``, ``line``, the raw text as ``raw_<col>``,
the typed columns, and ``reason``, NULL while the row is valid), after the per-row checks of ``adapters.ingest``:

- **references** (signalling): a ``cell_id`` not in ``cells`` or a ``subscriber_id`` not in ``subscribers`` is
  rejected, once that table holds rows (an empty one is named in the summary: load it first to check them);
- **keys within the file**: the first valid row of a key wins; a later row with the same content is a duplicate,
  one with other content is rejected as a conflict naming the first one's line;
- **keys already stored**: the same content is a duplicate; other content is a conflict naming the stored row's
  source and line (``ingest_lines_<table>`` records them for every table whose key is not its whole row), or,
  with ``update``, replaces the stored row and is recorded in ``ingest_updates`` (old and new values, source,
  line, time): the audit of every change an ingest made to existing data;
- **flags** (cases): an onset after the report date loads, but is counted and kept in ``flagged_cases``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import duckdb

__all__ = ["KeyOutcome", "check_keys", "check_references", "flag_rows", "record_lines"]

# Tables whose key is the whole row cannot conflict (other content is another key): no provenance needed.
_WHOLE_ROW_KEY = {"signalling"}
_REFERENCES: Mapping[str, tuple[tuple[str, str], ...]] = {
    "signalling": (("cell_id", "cells"), ("subscriber_id", "subscribers")),
}
_FLAGS: Mapping[str, tuple[tuple[str, str], ...]] = {
    "cases": (("onset after report", "onset_date > report_date"),),
}


@dataclass
class KeyOutcome:
    """What the key checks decided about the file's valid rows."""

    duplicates: int = 0
    conflicts: int = 0
    updated: int = 0
    notes: list[str] = field(default_factory=list)


def _scalar(con: duckdb.DuckDBPyConnection, sql: str, params: Mapping[str, object] | None = None) -> int:
    row = con.execute(sql, dict(params or {})).fetchone()
    assert row is not None
    return int(row[0] or 0)


def check_references(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    """Reject rows naming an unknown cell or subscriber; notes for reference tables that are still empty."""
    notes = []
    for column, referenced in _REFERENCES.get(table, ()):
        if _scalar(con, f"SELECT count(*) FROM {referenced}") == 0:
            notes.append(f"{referenced} is empty: {column} not checked; load {referenced} first to check them")
            continue
        con.execute(
            f"UPDATE ingest_checked SET reason = 'unknown {column}' WHERE reason IS NULL AND NOT EXISTS "
            f"(SELECT 1 FROM {referenced} AS known WHERE known.{column} = ingest_checked.{column})"
        )
    return notes


def check_keys(
    con: duckdb.DuckDBPyConnection,
    table: str,
    columns: Sequence[str],
    key: Sequence[str],
    *,
    source: str,
    update: bool,
) -> KeyOutcome:
    """Mark conflicts as reasons, set ``keep`` on the rows to insert; with ``update`` delete what they replace."""
    outcome = KeyOutcome()
    keys = ", ".join(key)
    content = f"row({', '.join(columns)})"
    con.execute("ALTER TABLE ingest_checked ADD COLUMN keep BOOLEAN DEFAULT false")
    con.execute(
        f"""
        CREATE TEMP TABLE ingest_first AS
        SELECT source_row, row_number() OVER w AS copy, first_value(line) OVER w AS first_line,
               {content} IS NOT DISTINCT FROM first_value({content}) OVER w AS same
        FROM ingest_checked WHERE reason IS NULL
        WINDOW w AS (PARTITION BY {keys} ORDER BY source_row)
        """
    )
    try:
        con.execute(
            "UPDATE ingest_checked SET reason = 'conflict: same key as line ' || f.first_line || "
            "' of this file with other content' FROM ingest_first AS f "
            "WHERE f.source_row = ingest_checked.source_row AND f.copy > 1 AND NOT f.same"
        )
        outcome.duplicates += _scalar(con, "SELECT count(*) FROM ingest_first WHERE copy > 1 AND same")
        con.execute(
            "UPDATE ingest_checked SET keep = true FROM ingest_first AS f "
            "WHERE f.source_row = ingest_checked.source_row AND f.copy = 1"
        )
    finally:
        con.execute("DROP TABLE ingest_first")

    match = " AND ".join(f"stored.{k} = ingest_checked.{k}" for k in key)
    stored_content = f"row({', '.join(f'stored.{c}' for c in columns)})"
    new_content = f"row({', '.join(f'ingest_checked.{c}' for c in columns)})"
    outcome.duplicates += _scalar(
        con,
        f"SELECT count(*) FROM ingest_checked JOIN {table} AS stored ON {match} "
        f"WHERE ingest_checked.keep AND {stored_content} IS NOT DISTINCT FROM {new_content}",
    )
    con.execute(
        f"UPDATE ingest_checked SET keep = false FROM {table} AS stored "
        f"WHERE ingest_checked.keep AND {match} AND {stored_content} IS NOT DISTINCT FROM {new_content}"
    )
    if table in _WHOLE_ROW_KEY:
        return outcome
    provenance = _provenance_table(con, table, key)
    where_differs = f"ingest_checked.keep AND {match} AND {stored_content} IS DISTINCT FROM {new_content}"
    if not update:
        origin = " AND ".join(f"p.{k} = ingest_checked.{k}" for k in key)
        con.execute(
            f"""
            UPDATE ingest_checked SET keep = false, reason = 'conflict: key already stored with other content'
                || coalesce(' (' || (SELECT p.source || ' line ' || p.line FROM {provenance} AS p
                                     WHERE {origin} LIMIT 1) || ')', '') || '; use --update to replace it'
            FROM {table} AS stored WHERE {where_differs}
            """
        )
        outcome.conflicts = _scalar(con, "SELECT count(*) FROM ingest_checked WHERE starts_with(reason, 'conflict')")
        return outcome
    outcome.conflicts = _scalar(con, "SELECT count(*) FROM ingest_checked WHERE starts_with(reason, 'conflict')")
    con.execute(
        "CREATE TABLE IF NOT EXISTS ingest_updates (table_name VARCHAR, old_row VARCHAR, new_row VARCHAR, "
        "source VARCHAR, line BIGINT, updated_at TIMESTAMP)"
    )
    outcome.updated = _scalar(
        con, f"SELECT count(*) FROM ingest_checked JOIN {table} AS stored ON {match} WHERE {where_differs}"
    )
    con.execute(
        f"""
        INSERT INTO ingest_updates
        SELECT '{table}', CAST({stored_content} AS VARCHAR), CAST({new_content} AS VARCHAR), $source,
               ingest_checked.line, $at
        FROM ingest_checked JOIN {table} AS stored ON {match} WHERE {where_differs}
        """,
        {"source": source, "at": dt.datetime.now(dt.UTC).replace(tzinfo=None)},
    )
    for target in (table, provenance):
        same_key = " AND ".join(f"{target}.{k} = ingest_checked.{k}" for k in key)
        con.execute(
            f"DELETE FROM {target} WHERE EXISTS (SELECT 1 FROM ingest_checked WHERE ingest_checked.keep AND {same_key})"
        )
    return outcome


def _provenance_table(con: duckdb.DuckDBPyConnection, table: str, key: Sequence[str]) -> str:
    name = f"ingest_lines_{table}"
    key_types = {row[0]: row[1] for row in con.execute(f"DESCRIBE {table}").fetchall() if row[0] in key}
    body = ", ".join(f"{k} {key_types[k]}" for k in key)
    con.execute(f"CREATE TABLE IF NOT EXISTS {name} ({body}, source VARCHAR, line BIGINT)")
    return name


def record_lines(con: duckdb.DuckDBPyConnection, table: str, key: Sequence[str], source: str) -> None:
    """Remember where each inserted key came from, so a later conflict can name its line."""
    if table in _WHOLE_ROW_KEY:
        return
    name = _provenance_table(con, table, key)
    con.execute(
        f"INSERT INTO {name} SELECT {', '.join(key)}, $source, line FROM ingest_checked WHERE keep",
        {"source": source},
    )


def flag_rows(con: duckdb.DuckDBPyConnection, table: str, source: str) -> dict[str, list[int]]:
    """Rows that load but look wrong: reason -> their lines; kept in ``flagged_<table>``."""
    flagged: dict[str, list[int]] = {}
    for reason, condition in _FLAGS.get(table, ()):
        lines = [
            int(r[0])
            for r in con.execute(f"SELECT line FROM ingest_checked WHERE keep AND {condition} ORDER BY line").fetchall()
        ]
        if not lines:
            continue
        flagged[reason] = lines
        con.execute(f"CREATE TABLE IF NOT EXISTS flagged_{table} (line BIGINT, reason VARCHAR, source VARCHAR)")
        con.execute(
            f"INSERT INTO flagged_{table} SELECT line, $reason, $source FROM ingest_checked WHERE keep AND {condition}",
            {"reason": reason, "source": source},
        )
    return flagged
