"""Writes each agency's DuckDB store with exactly the raw tables of docs/protocol.md, "Raw tables".

Columns go in as registered numpy arrays and are inserted with one ``INSERT ... SELECT`` per table (DuckDB
scans the arrays in bulk; nothing is inserted row by row). A store is written to a temporary file and
renamed into place, so a reader never sees a half-written store.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator, Mapping
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt

from adapters.store import RAW_TABLES
from fedbroker.scenario.epidemic import NO_ONSET, STATUSES
from fedbroker.scenario.records import MODES, CaseRecords, TelecomRecords, TicketRecords

# Value checks beyond the types; onset_date (NULL for close contacts) and cluster_id (NULL outside a
# cluster) are the only nullable columns.
_CHECKS = {
    "status": f"status IN ({', '.join(repr(s) for s in STATUSES)})",
    "mode": f"mode IN ({', '.join(repr(m) for m in MODES)})",
}
_NULLABLE = {"onset_date", "cluster_id"}


def _create_table(con: duckdb.DuckDBPyConnection, kind: str, table: str) -> None:
    columns = []
    for name, sql_type in RAW_TABLES[kind][table]:
        constraint = "" if name in _NULLABLE else " NOT NULL"
        check = f" CHECK ({_CHECKS[name]})" if name in _CHECKS else ""
        columns.append(f"{name} {sql_type}{constraint}{check}")
    con.execute(f"CREATE TABLE {table} ({', '.join(columns)})")


def _insert(con: duckdb.DuckDBPyConnection, table: str, select: str, columns: Mapping[str, npt.NDArray[Any]]) -> int:
    """INSERT INTO table SELECT <select> FROM the registered numpy columns; returns the row count."""
    con.register("source", dict(columns))
    try:
        con.execute(f"INSERT INTO {table} SELECT {select} FROM source")
    finally:
        con.unregister("source")
    return int(next(iter(columns.values())).shape[0])


def _timestamps(start: date, seconds: npt.NDArray[np.int64]) -> npt.NDArray[np.datetime64]:
    """Seconds after the window's first midnight as numpy datetime64[s] (naive, like TIMESTAMP)."""
    epoch = (start - date(1970, 1, 1)).days * 86_400
    return (seconds + epoch).astype("datetime64[s]")


def _sql_list(values: tuple[str, ...]) -> str:
    return "[" + ", ".join(repr(v) for v in values) + "]"


class _Store:
    """A DuckDB file being written: created under a temporary name, renamed into place on success."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.partial = path.with_name(path.name + ".partial")
        for stale in (self.partial, Path(str(self.partial) + ".wal")):
            stale.unlink(missing_ok=True)
        self.con = duckdb.connect(str(self.partial))

    def finish(self) -> None:
        self.con.execute("CHECKPOINT")
        self.con.close()
        Path(str(self.path) + ".wal").unlink(missing_ok=True)
        os.replace(self.partial, self.path)

    def abandon(self) -> None:
        self.con.close()
        self.partial.unlink(missing_ok=True)


def _write(path: Path, kind: str, fill: Callable[[duckdb.DuckDBPyConnection], dict[str, int]]) -> dict[str, int]:
    store = _Store(path)
    try:
        for table in RAW_TABLES[kind]:
            _create_table(store.con, kind, table)
        counts = fill(store.con)
    except BaseException:
        store.abandon()
        raise
    store.finish()
    return counts


def write_telecom(path: Path, records: TelecomRecords, start: date) -> dict[str, int]:
    """Write a carrier's ``cells``, ``subscribers`` and ``signalling``; returns rows per table."""

    def fill(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
        return {
            "cells": _insert(
                con, "cells", "cell_id, district", {"cell_id": records.cell_id, "district": records.cell_district}
            ),
            "subscribers": _insert(
                con,
                "subscribers",
                "subscriber_id, home_district, msisdn",
                {
                    "subscriber_id": records.subscriber_id,
                    "home_district": records.home_district,
                    "msisdn": records.msisdn,
                },
            ),
            "signalling": _insert(
                con,
                "signalling",
                "subscriber_id, ts::TIMESTAMP, cell_id",
                {
                    "subscriber_id": records.event_subscriber,
                    "ts": _timestamps(start, records.event_second),
                    "cell_id": records.event_cell,
                },
            ),
        }

    return _write(path, "telecom", fill)


def write_health(path: Path, records: CaseRecords, start: date) -> dict[str, int]:
    """Write a health network's ``cases`` (onset_date NULL for close contacts, cluster_id NULL outside a
    cluster); returns rows per table."""
    first = f"DATE '{start.isoformat()}'"
    select = (
        f"case_id, person_id, ({_sql_list(STATUSES)})[status + 1], district, "
        f"CASE WHEN onset_day = {int(NO_ONSET)} THEN NULL ELSE {first} + onset_day END, "
        f"{first} + report_day, imported, NULLIF(cluster_id, 0)"
    )

    def fill(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
        columns: dict[str, npt.NDArray[Any]] = {
            "case_id": records.case_id,
            "person_id": records.person_id,
            "status": records.status,
            "district": records.district,
            "onset_day": records.onset_day,
            "report_day": records.report_day,
            "imported": records.imported,
            "cluster_id": records.cluster_id,
        }
        return {"cases": _insert(con, "cases", select, columns)}

    return _write(path, "health", fill)


def write_transport(path: Path, records: TicketRecords, start: date) -> dict[str, int]:
    """Write a transport operator's ``tickets``; returns rows per table."""
    select = f"ticket_id, passenger_id, ({_sql_list(MODES)})[mode + 1], origin, destination, departure::TIMESTAMP"

    def fill(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
        columns: dict[str, npt.NDArray[Any]] = {
            "ticket_id": records.ticket_id,
            "passenger_id": records.passenger_id,
            "mode": records.mode,
            "origin": records.origin,
            "destination": records.destination,
            "departure": _timestamps(start, records.departure_second),
        }
        return {"tickets": _insert(con, "tickets", select, columns)}

    return _write(path, "transport", fill)


def digest_chunks(agency_id: str, records: TelecomRecords | CaseRecords | TicketRecords) -> Iterator[bytes]:
    """The bytes a scenario's ``content_sha256`` covers for one agency: each column's name, dtype, length
    and little-endian values, in field order."""
    yield agency_id.encode()
    for field in dataclasses.fields(records):
        array = np.ascontiguousarray(getattr(records, field.name))
        yield f"{field.name}:{array.dtype.str}:{array.shape[0]}".encode()
        yield array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
