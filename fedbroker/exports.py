"""An answer's tables as files: CSV, JSON, Parquet and GeoJSON.

CSV: a suppressed cell is empty and unquoted; every text value is quoted, so an empty text is ``""`` and the two
never look alike. Booleans are ``true``/``false``. JSON is the ``--format json`` document. Parquet keeps nulls for
suppressed cells and carries the signed query in its schema metadata (``fedbroker.query``). GeoJSON (RFC 7946):
a row with a ``district`` (or ``area`` of six digits) is a Point at that district's registry coordinates
(longitude, latitude) with the row's columns as properties; a row with ``origin`` and ``destination`` is a
LineString between them; a row whose place has no coordinates (or is "outside the province", code 0) keeps its
properties with a null geometry.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from broker.client import Answer
from federation.errors import ConfigError
from federation.registry import Registry

FORMATS = ("csv", "json", "parquet", "geojson")


def csv_text(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """The table as CSV text (header line first), with suppressed cells distinguishable from empty text."""
    lines = [",".join(_csv_field(c) for c in columns)]
    lines += [",".join(_csv_field(v) for v in row) for row in rows]
    return "\n".join(lines) + "\n"


def _csv_field(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value) if isinstance(value, float) else str(value)
    return '"' + str(value).replace('"', '""') + '"'


def write_parquet(answer: Answer, name: str | None, path: Path) -> None:
    """One table of ``answer`` as a Parquet file (needs pyarrow: the ``arrow`` extra)."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError("Parquet export needs pyarrow: pip install 'fedbroker[arrow]'") from None
    pq.write_table(answer.to_arrow(name), path)


def geojson(answer: Answer, registry: Registry, name: str | None = None) -> dict[str, Any]:
    """One table of ``answer`` as a GeoJSON FeatureCollection (see the module docstring)."""
    table = answer.table(name)
    columns: list[str] = table["columns"]
    where = {
        code: (lon, lat)
        for code, lon, lat in zip(registry.codes.tolist(), registry.lon.tolist(), registry.lat.tolist(), strict=True)
        if math.isfinite(lon) and math.isfinite(lat)
    }
    features = []
    for row in table["rows"]:
        properties = dict(zip(columns, row, strict=True))
        features.append({"type": "Feature", "geometry": _geometry(properties, where), "properties": properties})
    return {
        "type": "FeatureCollection",
        "features": features,
        "fedbroker": {"table": table["name"], "query": answer.query, "query_sha256": answer.query_sha256},
    }


def _geometry(properties: dict[str, Any], where: dict[int, tuple[float, float]]) -> dict[str, Any] | None:
    if "origin" in properties and "destination" in properties:
        a, b = where.get(_code(properties["origin"])), where.get(_code(properties["destination"]))
        if a is None or b is None:
            return None
        return {"type": "LineString", "coordinates": [list(a), list(b)]}
    for column in ("district", "area"):
        if column in properties:
            point = where.get(_code(properties[column]))
            return None if point is None else {"type": "Point", "coordinates": list(point)}
    return None


def _code(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else -1


def export(answer: Answer, fmt: str, path: Path, *, registry: Registry | None = None, name: str | None = None) -> Path:
    """Write one table (``json``: the whole answer) of ``answer`` to ``path`` in ``fmt``; returns ``path``."""
    if fmt == "json":
        path.write_text(answer.to_json() + "\n", encoding="utf-8")
    elif fmt == "csv":
        table = answer.table(name)
        path.write_text(csv_text(table["columns"], table["rows"]), encoding="utf-8")
    elif fmt == "parquet":
        write_parquet(answer, name, path)
    elif fmt == "geojson":
        if registry is None:
            raise ConfigError("GeoJSON export needs the federation's district registry for coordinates")
        path.write_text(json.dumps(geojson(answer, registry, name), ensure_ascii=False) + "\n", encoding="utf-8")
    else:
        raise ConfigError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    return path
