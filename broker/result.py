"""The released answer to a joint query, as the coordinator receives it (DESIGN §7)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from federation.queries import Query

Cell = int | float | str | bool | None


@dataclass(frozen=True)
class QueryResult:
    """Columns and rows after disclosure control. A ``None`` cell was suppressed; ``suppressed`` counts the
    suppressed cells (or dropped rows, as each query kind documents)."""

    query: Query
    columns: tuple[str, ...]
    rows: list[tuple[Cell, ...]]
    suppressed: int
    notes: tuple[str, ...] = ()

    def to_json_dict(self, contributors: Mapping[str, Mapping[str, list[str]]]) -> dict[str, Any]:
        """``{"query", "columns", "rows", "suppressed", "contributors"}`` (plus ``notes``).

        ``query`` is the signed query as a JSON object; ``contributors`` maps each round name to
        ``{"contributed": [...], "missing": [...]}``.
        """
        return {
            "query": json.loads(self.query.canonical()),
            "columns": list(self.columns),
            "rows": [list(row) for row in self.rows],
            "suppressed": self.suppressed,
            "contributors": {
                name: {key: list(ids) for key, ids in rounds.items()} for name, rounds in contributors.items()
            },
            "notes": list(self.notes),
        }
