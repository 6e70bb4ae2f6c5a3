"""One ingest at a time per store: a second ingest into a store that is being loaded is refused as busy.

An ingest checks the file against the stored rows and then writes; two at once could each pass the checks
against rows the other is about to add (two versions of one key, both loaded). Rather than serialisable
transactions (which PostgreSQL would abort late, after the checks, and DuckDB files and Parquet directories
do not have across processes), the ingest takes the store's lock before it reads anything and holds it until
its change set and the partials' refresh are written:

- DuckDB file ``X.duckdb``: an exclusive ``flock`` on ``X.duckdb.ingest-lock`` beside it;
- Spark (a directory of Parquet tables): an exclusive ``flock`` on ``.ingest-lock`` in that directory;
- PostgreSQL: a session advisory lock keyed by the store's schema (``pg_try_advisory_lock``), released when
  the ingest's connection closes, so a crashed ingest never leaves the store locked.

The lock is never waited for: a busy store raises :class:`federation.errors.IngestBusy` (RESOURCE_EXHAUSTED,
exit 9) at once, naming the store, and nothing is read or changed. The lock file is left in place (an
unlocked file is no lock; removing it would race with a third ingest opening it).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from federation.errors import IngestBusy
from federation.stores import StoreLocation

__all__ = ["LOCK_NAME", "exclusive_file_lock", "ingest_lock_path", "postgresql_ingest_lock"]

LOCK_NAME = ".ingest-lock"


def ingest_lock_path(location: StoreLocation) -> Path:
    """The lock file of a DuckDB or Parquet-directory store."""
    if location.engine == "duckdb":
        assert location.path is not None
        path = Path(location.path)
        return path.with_name(path.name + LOCK_NAME)
    assert location.spark_tables is not None
    return Path(location.spark_tables) / LOCK_NAME


@contextlib.contextmanager
def exclusive_file_lock(path: Path, store: str) -> Iterator[None]:
    """Hold an exclusive, non-blocking ``flock`` on ``path`` (created if missing); IngestBusy if held."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _busy(store) from None
        try:
            yield
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def postgresql_ingest_lock(conn: Any, store: str) -> Iterator[None]:
    """Hold the schema's ingest advisory lock on ``conn`` (a psycopg connection in autocommit); IngestBusy if
    another session holds it."""
    key = "SELECT hashtext('fedbroker-ingest:' || current_schema())"
    row = conn.execute(f"SELECT pg_try_advisory_lock(({key}))").fetchone()
    if not row or not row[0]:
        raise _busy(store)
    try:
        yield
    finally:
        with contextlib.suppress(Exception):  # a broken connection has dropped the session's lock already
            conn.execute(f"SELECT pg_advisory_unlock(({key}))")


def _busy(store: str) -> IngestBusy:
    return IngestBusy(
        f"another ingest into {store} is running; wait until it has finished and run this one again "
        "(one ingest at a time per store)"
    )
