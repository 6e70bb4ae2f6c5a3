"""The three store engines for tests: a DuckDB store built by a test, copied into PostgreSQL or Spark's Parquet.

PostgreSQL comes from ``FEDBROKER_TEST_POSTGRESQL`` (a libpq URL; ``scripts/pg-throwaway`` starts one and
prints it); each store gets its own schema, reached through the URL's ``options=-csearch_path=...``. Spark needs
pyspark and a Java runtime. Without them the tests of that engine skip and say why, except under
``FEDBROKER_REQUIRE_BACKENDS=1`` (set by ``.ci/run``), where a missing engine fails the test instead.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import urllib.parse
import uuid
from pathlib import Path

import duckdb
import pytest

from adapters.backends import Store, open_backend
from adapters.backends.duckdb_store import DuckDBStore
from adapters.store_copy import copy_tables
from federation.stores import StoreLocation

__all__ = ["ENGINES", "as_backend", "engine_location", "require_engine"]

ENGINES = ("duckdb", "postgresql", "spark")
POSTGRESQL_ENV = "FEDBROKER_TEST_POSTGRESQL"


def _missing(engine: str) -> str | None:
    if engine == "postgresql":
        if not os.environ.get(POSTGRESQL_ENV):
            return f'no PostgreSQL: set {POSTGRESQL_ENV} (eval "$(scripts/pg-throwaway start DIR)")'
        if importlib.util.find_spec("psycopg") is None:
            return "psycopg is not installed: pip install -e '.[postgresql]'"
    if engine == "spark":
        if importlib.util.find_spec("pyspark") is None:
            return "pyspark is not installed: pip install -e '.[spark]'"
        if shutil.which("java") is None:
            return "no Java runtime for Spark: install openjdk-17-jre-headless"
    return None


def require_engine(engine: str) -> None:
    """Skip (or, under FEDBROKER_REQUIRE_BACKENDS=1, fail) when ``engine`` is not available here."""
    reason = _missing(engine)
    if reason is None:
        return
    if os.environ.get("FEDBROKER_REQUIRE_BACKENDS") == "1":
        pytest.fail(f"{engine} backend required (FEDBROKER_REQUIRE_BACKENDS=1) but {reason}")
    pytest.skip(reason)


def engine_location(engine: str, folder: Path) -> StoreLocation:
    """A new, empty store of ``engine``: a DuckDB file or a Parquet directory under ``folder``, or a fresh schema."""
    require_engine(engine)
    if engine == "duckdb":
        return StoreLocation("duckdb", path=folder / f"store-{uuid.uuid4().hex[:8]}.duckdb")
    if engine == "spark":
        return StoreLocation(
            "spark", spark_master="local[2]", spark_tables=str(folder / f"tables-{uuid.uuid4().hex[:8]}")
        )
    import psycopg

    url = os.environ[POSTGRESQL_ENV]
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in url else "?"
    options = urllib.parse.quote(f"-csearch_path={schema}")
    return StoreLocation("postgresql", url=f"{url}{separator}options={options}")


def as_backend(con: duckdb.DuckDBPyConnection, kind: str, engine: str, folder: Path) -> Store:
    """The raw tables of a test's DuckDB store as a store of ``engine`` (the same connection for DuckDB)."""
    source = DuckDBStore.wrap(con)
    if engine == "duckdb":
        return source
    target = open_backend(engine_location(engine, folder), read_only=False)
    copy_tables(source, target, kind)
    return target
