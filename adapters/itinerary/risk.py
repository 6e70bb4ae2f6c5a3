"""A carrier's risk list: the districts it currently flags, loaded from a file it chooses and re-read on change.

Accepted forms (codes are six-digit GB/T 2260 district codes, as numbers or strings):

- JSON: a list of codes ``[420102, 420106]``; an object ``{"districts": [...]}``; or a query result as
  ``fedbroker query ... --format json`` writes it (``{"columns": [...], "rows": [[...]]}``) with a ``district``
  column: every row is listed, except that where a ``tier`` column exists (the ``warning`` query) only rows of
  tier ``medium`` or ``high`` are, as the official lists flagged those;
- CSV: a header naming a ``district`` column (and optionally ``tier``, read as above), or one code per line.

The file is read again whenever its size or modification time changes, so a carrier updates the list by
replacing the file; a file that cannot be read or parsed is a ConfigError naming the file and the fix.
"""

from __future__ import annotations

import csv
import io
import json
import os
import threading
from pathlib import Path
from typing import Any

from federation.errors import ConfigError

__all__ = ["RISK_TIERS", "RiskList", "parse_risk_list"]

RISK_TIERS = frozenset({"medium", "high"})


class RiskList:
    """The districts on a carrier's risk list (``path``; None: an empty list), reloaded when the file changes."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._districts: frozenset[int] = frozenset()
        self.districts()  # fail at start-up, not on the first request

    def districts(self) -> frozenset[int]:
        """The current set of district codes."""
        if self.path is None:
            return frozenset()
        with self._lock:
            try:
                status = os.stat(self.path)
            except OSError as exc:
                raise ConfigError(
                    f"risk list {self.path}: cannot read it ({exc.strerror}); fix --risk-list or restore the file"
                ) from exc
            stamp = (status.st_size, status.st_mtime_ns)
            if stamp != self._stamp:
                try:
                    text = self.path.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError) as exc:
                    raise ConfigError(f"risk list {self.path}: cannot read it as UTF-8 text ({exc})") from exc
                self._districts = parse_risk_list(text, source=str(self.path))
                self._stamp = stamp
            return self._districts

    def prefectures(self) -> frozenset[int]:
        """Prefecture codes (district code // 100) holding at least one listed district."""
        return frozenset(code // 100 for code in self.districts())


def parse_risk_list(text: str, *, source: str) -> frozenset[int]:
    """The district codes in ``text`` (JSON or CSV, module docstring); ConfigError naming ``source``."""
    stripped = text.strip()
    if not stripped:
        return frozenset()
    if stripped[0] in "[{":
        try:
            document = json.loads(stripped)
        except ValueError as exc:
            raise ConfigError(f"risk list {source}: not valid JSON ({exc}); fix the file") from exc
        return frozenset(_codes(_from_json(document, source), source))
    return frozenset(_codes(_from_csv(stripped, source), source))


def _from_json(document: Any, source: str) -> list[Any]:
    if isinstance(document, list):
        return document
    if isinstance(document, dict) and isinstance(document.get("districts"), list):
        return list(document["districts"])
    if isinstance(document, dict) and isinstance(document.get("columns"), list):
        columns = [str(c) for c in document["columns"]]
        rows = document.get("rows")
        if "district" not in columns or not isinstance(rows, list):
            raise ConfigError(f"risk list {source}: a query result needs a district column and rows")
        return _table_codes(columns, rows, source)
    raise ConfigError(
        f'risk list {source}: expected a list of district codes, {{"districts": [...]}} or a query result '
        "with a district column"
    )


def _from_csv(text: str, source: str) -> list[Any]:
    reader = list(csv.reader(io.StringIO(text)))
    header = [cell.strip() for cell in reader[0]]
    if "district" in header:
        return _table_codes(header, reader[1:], source)
    if any(len(row) > 1 for row in reader):
        raise ConfigError(f"risk list {source}: a CSV with several columns needs a header naming 'district'")
    return [row[0] for row in reader if row and row[0].strip()]


def _table_codes(columns: list[str], rows: list[Any], source: str) -> list[Any]:
    at = columns.index("district")
    tier_at = columns.index("tier") if "tier" in columns else None
    codes = []
    for i, row in enumerate(rows):
        if not isinstance(row, list | tuple) or len(row) != len(columns):
            raise ConfigError(f"risk list {source}: row {i + 1} does not have the {len(columns)} columns of the header")
        if tier_at is not None and str(row[tier_at]).strip() not in RISK_TIERS:
            continue
        codes.append(row[at])
    return codes


def _codes(values: list[Any], source: str) -> list[int]:
    codes = []
    for i, value in enumerate(values):
        text = str(value).strip() if isinstance(value, int | str) and not isinstance(value, bool) else ""
        if not (text.isascii() and text.isdigit() and len(text) == 6):
            raise ConfigError(
                f"risk list {source}: entry {i + 1} is not a six-digit district code (write codes like 420106)"
            )
        codes.append(int(text))
    return codes
