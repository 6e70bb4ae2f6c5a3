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
from fedbroker.scenario.records import MODES, CarrierTables, CaseRecords, SignallingChunk, TicketRecords

# Value checks beyond the types; onset_date (NULL for close contacts) and cluster_id (NULL outside a
# cluster) are the only nullable columns.
_CHECKS = {
    "status": f"status IN ({', '.join(repr(s) for s in STATUSES)})",
    "mode": f"mode IN ({', '.join(repr(m) for m in MODES)})",
}
_NULLABLE = {"onset_date", "cluster_id"}
# DuckDB's buffer for a carrier's store while it is written: without a cap it keeps every written block cached
# (up to 80 % of the machine's memory by default), three carriers at once.
WRITER_MEMORY_LIMIT = "512MB"


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


class TelecomStore:
    """A carrier's store written as its signalling streams in: ``cells`` and ``subscribers`` at once, then one
    :class:`SignallingChunk` per day in time order, then :meth:`finish` (or :meth:`abandon`).

    Each chunk is one ``INSERT`` of that day's rows, so only a day's events are ever in memory (the store's own
    buffer is capped by ``WRITER_MEMORY_LIMIT``); appending the days in order gives the same table, row for row,
    as inserting the whole signalling at once.
    """

    def __init__(self, path: Path, tables: CarrierTables, start: date) -> None:
        self._start = start
        self._store = _Store(path)
        try:
            self._store.con.execute(f"SET memory_limit = '{WRITER_MEMORY_LIMIT}'")
            for table in RAW_TABLES["telecom"]:
                _create_table(self._store.con, "telecom", table)
            self.rows = {
                "cells": _insert(
                    self._store.con,
                    "cells",
                    "cell_id, district",
                    {"cell_id": tables.cell_id, "district": tables.cell_district},
                ),
                "subscribers": _insert(
                    self._store.con,
                    "subscribers",
                    "subscriber_id, home_district, msisdn",
                    {
                        "subscriber_id": tables.subscriber_id,
                        "home_district": tables.home_district,
                        "msisdn": tables.msisdn,
                    },
                ),
                "signalling": 0,
            }
        except BaseException:
            self._store.abandon()
            raise

    def append(self, chunk: SignallingChunk) -> None:
        """Insert one day's events (after the previous day's)."""
        if chunk.count == 0:
            return
        self.rows["signalling"] += _insert(
            self._store.con,
            "signalling",
            "subscriber_id, ts::TIMESTAMP, cell_id",
            {
                "subscriber_id": chunk.subscriber_id,
                "ts": _timestamps(self._start, chunk.second),
                "cell_id": chunk.cell_id,
            },
        )

    def finish(self) -> dict[str, int]:
        """Checkpoint and rename the store into place; returns rows per table."""
        self._store.finish()
        return dict(self.rows)

    def abandon(self) -> None:
        self._store.abandon()


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


def digest_chunks(agency_id: str, records: CarrierTables | CaseRecords | TicketRecords) -> Iterator[bytes]:
    """The bytes a scenario's ``content_sha256`` covers for one agency: each column's name, dtype, length
    and little-endian values, in field order. A carrier's signalling columns follow, from
    :class:`SignallingSpool`."""
    yield agency_id.encode()
    for field in dataclasses.fields(records):
        yield from _column_chunks(field.name, np.ascontiguousarray(getattr(records, field.name)))


def _column_chunks(name: str, array: npt.NDArray[Any]) -> Iterator[bytes]:
    yield f"{name}:{array.dtype.str}:{array.shape[0]}".encode()
    yield array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()


class SignallingSpool:
    """A carrier's signalling columns appended to one file each, so ``content_sha256`` can hash each column
    whole, in the same bytes as when the columns were held in memory, without holding them.

    The hash covers a column's length before its values and the columns one after the other, so it cannot be
    fed as the days stream in; the spool costs 24 bytes per event of disk (about 2.7 GB at 114 M events) and
    is removed by :meth:`close`.
    """

    # (hashed name, SignallingChunk field); int64 little-endian, as the in-memory columns were hashed.
    COLUMNS = (("event_subscriber", "subscriber_id"), ("event_second", "second"), ("event_cell", "cell_id"))
    _DTYPE = np.dtype("<i8")
    _READ_BYTES = 16 * 2**20

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self._paths = [folder / f"{name}.i8" for name, _ in self.COLUMNS]
        self._files = [path.open("wb") for path in self._paths]
        self._count = 0

    def append(self, chunk: SignallingChunk) -> None:
        for spool, (_, field) in zip(self._files, self.COLUMNS, strict=True):
            spool.write(np.ascontiguousarray(getattr(chunk, field), dtype=self._DTYPE).tobytes())
        self._count += chunk.count

    def digest_chunks(self) -> Iterator[bytes]:
        """Each column's header and values, read back in blocks of ``_READ_BYTES``."""
        for spool in self._files:
            spool.close()
        for path, (name, _) in zip(self._paths, self.COLUMNS, strict=True):
            yield f"{name}:{self._DTYPE.str}:{self._count}".encode()
            with path.open("rb") as values:
                while block := values.read(self._READ_BYTES):
                    yield block

    def close(self) -> None:
        for spool, path in zip(self._files, self._paths, strict=True):
            spool.close()
            path.unlink(missing_ok=True)
