"""Two ingests into one store are not run at once: the second is refused as busy (exit 9) and changes nothing.

The first ingest is stood in for by another process holding the store's ingest lock (adapters.ingest_lock): a
lock file's ``flock`` for DuckDB and Parquet stores, the schema's advisory lock for PostgreSQL. Once it lets go,
the same load goes through.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from adapters.ingest import add_arguments, ingest, run
from adapters.ingest_lock import ingest_lock_path
from federation.errors import ConfigError, IngestBusy, ResourceExhausted
from federation.stores import StoreLocation
from tests.backends import engine_location
from tests.test_ingest_backends import table_rows

A, B = 110101, 110102
DOMAIN = np.array([A, B], dtype=np.int32)

# Holds an exclusive flock on argv[1] until its stdin closes; says "locked" once it holds it.
_HOLD_FLOCK = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()
"""


@contextmanager
def held_elsewhere(lock: Path) -> Iterator[None]:
    """Another process holds ``lock`` (returns once it does) until the block ends."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_FLOCK, str(lock)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"  # blocks until the lock is held: no sleeping
        yield
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)


def cells_csv(folder: Path) -> Path:
    path = folder / "cells.csv"
    path.write_text(f"cell_id,district\n1,{A}\n2,{B}\n", encoding="utf-8")
    return path


def test_a_second_ingest_into_a_duckdb_store_is_busy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    location = engine_location("duckdb", tmp_path)
    source = cells_csv(tmp_path)
    with held_elsewhere(ingest_lock_path(location)):
        with pytest.raises(IngestBusy, match=r"another ingest into .* is running") as busy:
            ingest("telecom", location, csv=source, table="cells", domain=DOMAIN)
        assert isinstance(busy.value, ResourceExhausted) and busy.value.exit_code == 9
        assert location.path is not None and not location.path.exists()  # nothing was read or written
        parser = argparse.ArgumentParser()
        add_arguments(parser)
        args = parser.parse_args(["telecom", "--store", str(location.path), "--csv", str(source), "--table", "cells"])
        assert run(args) == 9
        assert "wait until it has finished" in capsys.readouterr().err
    summary = ingest("telecom", location, csv=source, table="cells", domain=DOMAIN)
    assert summary.loaded == 2
    assert table_rows(location, "cells") == [(1, A), (2, B)]


def test_a_second_ingest_into_parquet_tables_is_busy(tmp_path: Path) -> None:
    location = engine_location("spark", tmp_path)
    with held_elsewhere(ingest_lock_path(location)), pytest.raises(IngestBusy):
        ingest("telecom", location, csv=cells_csv(tmp_path), table="cells", domain=DOMAIN)
    assert location.spark_tables is not None
    assert [p.name for p in Path(location.spark_tables).iterdir()] == [".ingest-lock"]


def test_a_second_ingest_into_postgresql_is_busy(tmp_path: Path) -> None:
    location = engine_location("postgresql", tmp_path)
    import psycopg

    assert location.url is not None
    source = cells_csv(tmp_path)
    with psycopg.connect(location.url, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(hashtext('fedbroker-ingest:' || current_schema()))")
        with pytest.raises(IngestBusy):
            ingest("telecom", location, csv=source, table="cells", domain=DOMAIN)
        assert table_rows(location, "cells") == []
        other.execute("SELECT pg_advisory_unlock(hashtext('fedbroker-ingest:' || current_schema()))")
    assert ingest("telecom", location, csv=source, table="cells", domain=DOMAIN).loaded == 2
    assert table_rows(location, "cells") == [(1, A), (2, B)]


def test_the_lock_is_let_go_after_a_failed_ingest(tmp_path: Path) -> None:
    location = StoreLocation("duckdb", path=tmp_path / "store.duckdb")
    bad = tmp_path / "bad.csv"
    bad.write_text("no,such,columns\n1,2,3\n", encoding="utf-8")
    with pytest.raises(ConfigError):
        ingest("telecom", location, csv=bad, table="cells", domain=DOMAIN)
    assert ingest("telecom", location, csv=cells_csv(tmp_path), table="cells", domain=DOMAIN).loaded == 2


def test_postgresql_looks_stored_rows_up_by_an_index_on_the_key(tmp_path: Path) -> None:
    """The key fetch of the checks and the deletes of --update use an index, not a scan of the whole table."""
    location = engine_location("postgresql", tmp_path)
    import psycopg

    assert location.url is not None
    source = cells_csv(tmp_path)
    ingest("telecom", location, csv=source, table="cells", domain=DOMAIN)
    with psycopg.connect(location.url, autocommit=True) as conn:
        indexes = conn.execute(
            "SELECT tablename, indexdef FROM pg_indexes WHERE schemaname = current_schema() ORDER BY 1"
        ).fetchall()
        keyed = {(table, definition.split(" USING ")[1]) for table, definition in indexes}
        assert {
            ("cells", "btree (cell_id)"),
            ("ingest_lines_cells", "btree (cell_id)"),
            ("signalling", "btree (subscriber_id, ts, cell_id)"),
        } <= keyed
        # With scans ruled out the planner can still answer the key fetch: by the index.
        conn.execute("SET enable_seqscan = off")
        plan = conn.execute("EXPLAIN SELECT * FROM cells WHERE cell_id = 2").fetchall()
        assert "cells_ingest_key" in " ".join(line for (line,) in plan)
    changed = tmp_path / "changed.csv"
    changed.write_text(f"cell_id,district\n2,{A}\n", encoding="utf-8")
    assert ingest("telecom", location, csv=changed, table="cells", domain=DOMAIN, update=True).updated == 1
    assert table_rows(location, "cells") == [(1, A), (2, A)]
