"""The released answer to a joint query, as the broker hands it to the coordinator (docs/protocol.md,
"Results"): a main table, optional further tables, and notes.

A ``None`` cell was suppressed by disclosure control. Values are data: a derived number another part needs
travels as a number in a column, never inside formatted text.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from federation.queries import Query

Cell = int | float | str | bool | None


@dataclass(frozen=True)
class Table:
    """A further table of a result (e.g. trend's per-area summary), with its own suppression count."""

    name: str
    columns: tuple[str, ...]
    rows: list[tuple[Cell, ...]]
    suppressed: int = 0

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "columns": list(self.columns),
            "rows": [list(row) for row in self.rows],
            "suppressed": self.suppressed,
        }


@dataclass(frozen=True)
class QueryResult:
    """Columns and rows after disclosure control. ``suppressed`` counts the suppressed cells (or dropped rows,
    as each query kind documents); ``tables`` holds any further tables."""

    query: Query
    columns: tuple[str, ...]
    rows: list[tuple[Cell, ...]]
    suppressed: int
    notes: tuple[str, ...] = ()
    tables: tuple[Table, ...] = ()

    def table(self, name: str) -> Table:
        for table in self.tables:
            if table.name == name:
                return table
        raise KeyError(name)

    def to_json_dict(self, contributors: Mapping[str, Mapping[str, Sequence[str]]]) -> dict[str, Any]:
        """``{"query", "columns", "rows", "suppressed", "contributors", "notes"}`` plus ``"tables"`` when the
        kind has further tables; ``contributors`` maps each round to ``{"contributed": [...], "missing": [...]}``.
        """
        document: dict[str, Any] = {
            "query": json.loads(self.query.canonical()),
            "columns": list(self.columns),
            "rows": [list(row) for row in self.rows],
            "suppressed": self.suppressed,
            "contributors": {
                name: {key: list(ids) for key, ids in rounds.items()} for name, rounds in contributors.items()
            },
            "notes": list(self.notes),
        }
        if self.tables:
            document["tables"] = [t.to_json_dict() for t in self.tables]
        return document
