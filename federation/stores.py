"""Where an agency keeps its raw tables: the roster's ``store:`` value, parsed and checked once.

Accepted values (``docs/architecture.md``, "Stores"):

- ``agencies/x.duckdb`` or ``duckdb:agencies/x.duckdb``: a DuckDB file (the default, embedded);
- ``postgresql://USER@HOST:PORT/DB`` (or ``postgres://``): PostgreSQL through psycopg 3. Credentials come from a
  libpq service file (``?service=NAME``), ``~/.pgpass`` or the ``PG*`` environment, never from the roster: a
  password in the URL is refused, so it cannot end up in a file that every node holds;
- ``spark:`` with a ``spark: {master: local[2] | spark://HOST:PORT, tables: PATH_OR_CATALOG}`` section on the
  node: Spark SQL through pyspark (the optional extra ``fedbroker[spark]``). ``tables`` is a directory holding
  one Parquet directory per raw table (``tables/signalling/*.parquet``), or a catalog database name
  (``fedbroker_telecom_a``) whose tables Spark already knows.

The same strings, with ``spark:TABLES`` for Spark, name stores on the command line (``fedbroker store copy``).
"""

from __future__ import annotations

import os
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from federation.errors import ConfigError

__all__ = ["ENGINES", "StoreLocation", "parse_store"]

ENGINES = ("duckdb", "postgresql", "spark")
DEFAULT_SPARK_MASTER = "local[2]"
_SPARK_MASTER = re.compile(r"local(\[([0-9]+|\*)\])?|spark://[A-Za-z0-9._-]+:[0-9]{1,5}(,[A-Za-z0-9._-]+:[0-9]{1,5})*")
_CATALOG_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?")


@dataclass(frozen=True)
class StoreLocation:
    """One agency store. Exactly the fields of its engine are set."""

    engine: str  # "duckdb" | "postgresql" | "spark"
    path: Path | None = None  # duckdb: the database file
    url: str | None = None  # postgresql: a libpq connection URL without a password
    spark_master: str | None = None  # spark: local[N] or spark://host:port
    spark_tables: str | None = None  # spark: a directory of Parquet tables, or a catalog database name

    @property
    def spark_tables_are_files(self) -> bool:
        """True when ``spark_tables`` is a directory of Parquet tables rather than a catalog database."""
        return self.spark_tables is not None and _CATALOG_NAME.fullmatch(self.spark_tables) is None

    def roster_value(self, base: Path) -> tuple[str, dict[str, str] | None]:
        """The ``store:`` value (and ``spark:`` section) that reads back as this location, paths relative to base."""
        if self.engine == "duckdb":
            assert self.path is not None
            return os.path.relpath(self.path, base), None
        if self.engine == "postgresql":
            assert self.url is not None
            return self.url, None
        assert self.spark_master is not None and self.spark_tables is not None
        tables = os.path.relpath(self.spark_tables, base) if self.spark_tables_are_files else self.spark_tables
        return "spark:", {"master": self.spark_master, "tables": tables}

    def describe(self) -> str:
        """A short human name for messages (never a credential: the URL has none)."""
        if self.engine == "duckdb":
            return f"DuckDB {self.path}"
        if self.engine == "postgresql":
            return f"PostgreSQL {self.url}"
        return f"Spark {self.spark_tables} on {self.spark_master}"


def parse_store(
    value: str, *, base: Path, where: str, spark: object = None, spark_master: str = DEFAULT_SPARK_MASTER
) -> StoreLocation:
    """Parse a store value; ``where`` names its place (``roster.yaml: nodes[2].store``) in errors.

    ``spark`` is the node's ``spark:`` mapping in a roster; on the command line, ``spark:TABLES`` with
    ``spark_master`` stands for it. Relative paths are taken from ``base``.
    """
    text = value.strip()
    if not text:
        raise ConfigError(f"{where}: empty store; write a DuckDB path, a postgresql:// URL or spark:")
    if text.startswith(("postgresql://", "postgres://")):
        return StoreLocation("postgresql", url=_checked_url(text, where))
    if text.startswith("spark:"):
        return _spark(text[len("spark:") :], base=base, where=where, section=spark, master=spark_master)
    if spark is not None:
        raise ConfigError(f"{where}: a spark: section needs store: spark:; remove the section or use Spark")
    if text.startswith("duckdb:"):
        text = text[len("duckdb:") :]
    if "://" in text:
        scheme = text.split("://", 1)[0]
        raise ConfigError(f"{where}: unknown store scheme {scheme!r}; use a DuckDB path, postgresql:// or spark:")
    return StoreLocation("duckdb", path=Path(os.path.normpath(base / Path(text).expanduser())))


def _checked_url(url: str, where: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.password is not None:
        raise ConfigError(
            f"{where}: the PostgreSQL URL carries a password; remove it and give credentials in a libpq "
            "service file (?service=NAME), ~/.pgpass or PGPASSWORD on the node's host"
        )
    query = urllib.parse.parse_qs(parts.query)
    if "password" in query or "passfile" in query:
        raise ConfigError(f"{where}: the PostgreSQL URL names a password; use ~/.pgpass or PGPASSWORD instead")
    if parts.fragment:
        raise ConfigError(f"{where}: the PostgreSQL URL has a #fragment; remove it")
    return url


def _spark(rest: str, *, base: Path, where: str, section: object, master: str) -> StoreLocation:
    if section is not None:
        if rest:
            raise ConfigError(f"{where}: write store: spark: and put the tables in the spark: section, not both")
        if not isinstance(section, dict):
            raise ConfigError(f"{where}: the spark: section must be a mapping {{master: ..., tables: ...}}")
        unknown = sorted(set(section) - {"master", "tables"})
        if unknown:
            raise ConfigError(f"{where}: spark.{unknown[0]} is not a key; use master and tables")
        if "tables" not in section:
            raise ConfigError(f"{where}: spark.tables is missing; give a Parquet directory or a catalog database")
        master = section.get("master", DEFAULT_SPARK_MASTER)
        rest = section["tables"]
        if not isinstance(rest, str) or not rest.strip():
            raise ConfigError(f"{where}: spark.tables must be a non-empty string")
    elif not rest:
        raise ConfigError(f"{where}: store: spark: needs a spark: {{master: local[2], tables: DIR}} section")
    if not isinstance(master, str) or _SPARK_MASTER.fullmatch(master) is None:
        raise ConfigError(f"{where}: spark master {master!r} is not local[N] or spark://HOST:PORT")
    tables = rest.strip()
    if _CATALOG_NAME.fullmatch(tables) is None:
        tables = os.path.normpath(base / Path(tables).expanduser())
    return StoreLocation("spark", spark_master=master, spark_tables=tables)
