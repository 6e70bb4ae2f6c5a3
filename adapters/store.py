"""An agency's DuckDB store: opening it, its raw tables (docs/protocol.md §6), and counting SQL turned into a vector.

The raw table names and columns are fixed so that anyone can recompute an answer from the raw data. Every
aggregate is one SQL statement that returns ``(pos, n)`` rows (vector position, count); :func:`count_vector`
scatters them into a zeroed ``uint64`` vector with numpy.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt

from federation.catalog.aggregates import ODFrame
from federation.errors import ConfigError
from federation.vocabulary import AGENCY_KINDS

__all__ = [
    "ADDED_COLUMNS",
    "AGENCY_KINDS",
    "DOMAIN_CTE",
    "OD_CTE",
    "RAW_TABLES",
    "added_columns_sql",
    "count_vector",
    "create_tables",
    "data_window",
    "domain_param",
    "od_params",
    "od_values",
    "open_store",
    "window_params",
]

# kind -> table -> ((column, SQL type), ...), in the exact order of docs/protocol.md, "Raw tables".
RAW_TABLES: Mapping[str, Mapping[str, tuple[tuple[str, str], ...]]] = MappingProxyType(
    {
        "telecom": MappingProxyType(
            {
                "cells": (("cell_id", "BIGINT"), ("district", "INTEGER")),
                # msisdn: the subscriber's E.164 number, used only by the subscriber's own itinerary request.
                "subscribers": (("subscriber_id", "BIGINT"), ("home_district", "INTEGER"), ("msisdn", "VARCHAR")),
                "signalling": (("subscriber_id", "BIGINT"), ("ts", "TIMESTAMP"), ("cell_id", "BIGINT")),
            }
        ),
        "health": MappingProxyType(
            {
                "cases": (
                    ("case_id", "BIGINT"),
                    ("person_id", "BIGINT"),
                    ("status", "VARCHAR"),
                    ("district", "INTEGER"),
                    ("onset_date", "DATE"),
                    ("report_date", "DATE"),
                    ("imported", "BOOLEAN"),
                    ("cluster_id", "BIGINT"),
                ),
            }
        ),
        "transport": MappingProxyType(
            {
                "tickets": (
                    ("ticket_id", "BIGINT"),
                    ("passenger_id", "BIGINT"),
                    ("mode", "VARCHAR"),
                    ("origin", "INTEGER"),
                    ("destination", "INTEGER"),
                    ("departure", "TIMESTAMP"),
                ),
            }
        ),
    }
)
if tuple(RAW_TABLES) != AGENCY_KINDS:
    raise ImportError(f"RAW_TABLES must define exactly the agency kinds {AGENCY_KINDS}, in that order")

# The table and column whose days define an agency's data window (what its aggregates are dated by).
_DATED_COLUMN = {
    "telecom": ("signalling", "ts"),
    "health": ("cases", "report_date"),
    "transport": ("tickets", "departure"),
}

# The domain as a relation (district code -> 0-based vector position), from the ``$domain`` INTEGER[] parameter.
# Both unnests run in one SELECT, so they zip element by element.
DOMAIN_CTE = (
    "domain_index AS (SELECT unnest($domain::INTEGER[]) AS district, "
    "generate_subscripts($domain::INTEGER[], 1) - 1 AS idx)"
)


# An origin × destination vector's rows and columns as two relations (district code -> row, -> column), from the
# ``$origin_codes``/``$origin_idx`` and ``$destination_codes``/``$destination_idx`` parameters (od_params): a
# district missing from one is not counted at that end, and several districts may share one position (the
# "outside" row and column of the border layout).
OD_CTE = (
    "origin_index AS (SELECT unnest($origin_codes::INTEGER[]) AS district, unnest($origin_idx::BIGINT[]) AS idx), "
    "destination_index AS (SELECT unnest($destination_codes::INTEGER[]) AS district, "
    "unnest($destination_idx::BIGINT[]) AS idx)"
)


def _raw_tables_of(kind: str) -> Mapping[str, tuple[tuple[str, str], ...]]:
    try:
        return RAW_TABLES[kind]
    except KeyError:
        raise ConfigError(f"unknown agency kind {kind!r}: use one of {', '.join(AGENCY_KINDS)}") from None


def open_store(path: Path, *, read_only: bool = True) -> duckdb.DuckDBPyConnection:
    """Open an agency's DuckDB store. Read-only stores must exist; a writable one is created if missing."""
    path = Path(path)
    if read_only and not path.is_file():
        raise ConfigError(
            f"agency store {path} does not exist: fix the store path in the node config, "
            "or create it with `fedbroker scenario generate` or `fedbroker ingest`"
        )
    if not read_only and not path.parent.is_dir():
        raise ConfigError(f"cannot create agency store {path}: directory {path.parent} does not exist")
    try:
        con = duckdb.connect(str(path), read_only=read_only)
    except duckdb.Error as exc:
        raise ConfigError(f"cannot open agency store {path}: {exc}") from exc
    # No progress bar: a node's or a CLI's output is logs and summaries, not a terminal animation.
    con.execute("SET enable_progress_bar = false")
    return con


# Columns added to a raw table after its first version, with the value the older rows get.
ADDED_COLUMNS: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {
        "cases": MappingProxyType({"imported": "false", "cluster_id": "NULL"}),
        "subscribers": MappingProxyType({"msisdn": "NULL"}),
    }
)


def added_columns_sql(table: str) -> list[str]:
    """``ALTER TABLE`` statements (DuckDB and PostgreSQL) giving a table made before a column was added that
    column, older rows taking its default (``ADDED_COLUMNS``); none for a table that never gained one."""
    types = {name: sql_type for kind_tables in RAW_TABLES.values() for name, sql_type in kind_tables.get(table, ())}
    return [
        f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {name} {types[name]} DEFAULT {default}"
        for name, default in ADDED_COLUMNS.get(table, {}).items()
    ]


def create_tables(con: duckdb.DuckDBPyConnection, kind: str) -> None:
    """Create the raw tables of an agency kind ('telecom' | 'health' | 'transport') if they do not exist.

    A table made before a column was added (``ADDED_COLUMNS``) gains it, older rows taking its default.
    """
    for table, columns in _raw_tables_of(kind).items():
        body = ", ".join(f"{name} {sql_type}" for name, sql_type in columns)
        con.execute(f"CREATE TABLE IF NOT EXISTS {table} ({body})")
        for statement in added_columns_sql(table):
            con.execute(statement)


def data_window(con: duckdb.DuckDBPyConnection, kind: str) -> tuple[dt.date, dt.date] | None:
    """First and last day present in the store (signalling ts, case report_date, ticket departure); None if empty."""
    _raw_tables_of(kind)
    table, column = _DATED_COLUMN[kind]
    found = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = $table AND table_schema = 'main'",
        {"table": table},
    ).fetchone()
    if found is None or found[0] == 0:
        raise ConfigError(
            f"the store has no {table} table: is it really a {kind} store? Load it with `fedbroker ingest {kind}`"
        )
    row = con.execute(f"SELECT min({column})::DATE, max({column})::DATE FROM {table}").fetchone()
    if row is None or row[0] is None:
        return None
    first, last = row
    assert isinstance(first, dt.date) and isinstance(last, dt.date)
    return first, last


def domain_param(domain: npt.NDArray[np.int32]) -> list[int]:
    """The domain as the ``$domain`` parameter of :data:`DOMAIN_CTE`."""
    codes: list[int] = domain.tolist()
    return codes


def od_params(domain: npt.NDArray[np.int32], frame: ODFrame) -> dict[str, Any]:
    """The parameters of :data:`OD_CTE` for ``frame`` over ``domain``, with ``$n`` (cells per row) and ``$cells``
    (positions at or past it are not counted)."""
    at_origin, at_destination = frame.origin >= 0, frame.destination >= 0
    return {
        "origin_codes": domain[at_origin].tolist(),
        "origin_idx": frame.origin[at_origin].tolist(),
        "destination_codes": domain[at_destination].tolist(),
        "destination_idx": frame.destination[at_destination].tolist(),
        "n": frame.columns,
        "cells": frame.cells,
    }


def od_values(domain: npt.NDArray[np.int32], positions: npt.NDArray[np.int64], alias: str) -> str:
    """An OD frame's rows or columns (``positions`` over ``domain``, −1: not counted) as a portable VALUES
    relation ``alias(district, idx)`` of integer literals, for the dialects that take no array parameter."""
    at = positions >= 0
    rows = ", ".join(f"({int(c)}, {int(i)})" for c, i in zip(domain[at].tolist(), positions[at].tolist(), strict=True))
    return f"(VALUES {rows}) AS {alias}(district, idx)"


def window_params(start: dt.date, end: dt.date) -> dict[str, Any]:
    """``$start_ts`` and ``$end_excl_ts``: the inclusive whole-day window as a half-open TIMESTAMP range."""
    return {
        "start_ts": dt.datetime.combine(start, dt.time()),
        "end_excl_ts": dt.datetime.combine(end + dt.timedelta(days=1), dt.time()),
    }


def count_vector(
    con: duckdb.DuckDBPyConnection, sql: str, params: Mapping[str, Any], length: int
) -> npt.NDArray[np.uint64]:
    """Run counting SQL returning one ``(pos, n)`` row per non-zero position; scatter into zeros(length) uint64."""
    columns = con.execute(sql, dict(params)).fetchnumpy()
    positions = np.asarray(columns["pos"], dtype=np.int64)
    counts = np.asarray(columns["n"], dtype=np.uint64)
    vector = np.zeros(length, dtype=np.uint64)
    vector[positions] = counts
    return vector
