"""Kept results: every answer saved in its own folder of a results directory, with an index.

``DIR/index.jsonl`` has one JSON line per saved answer: ``id`` (the folder name), ``kind``, ``start``, ``end``,
``coordinator``, ``nonce``, ``query_sha256`` (sha256 of the signed canonical query), ``saved`` (UTC), ``rows``
and ``files``. The folder ``DIR/<id>/`` holds ``answer.json`` (the whole answer, signed query included) and one
file per table and format, named ``<table>.<ext>``; the folder name ends with the first 12 hex digits of
``query_sha256``, and Parquet files carry the signed query in their metadata, so every file names the signed
query it answers.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from broker.client import Answer
from fedbroker.exports import export
from federation.errors import ConfigError
from federation.registry import Registry

INDEX = "index.jsonl"
TABLE_FORMATS = ("csv", "parquet", "geojson")


def save_answer(
    answer: Answer,
    directory: Path,
    *,
    formats: Sequence[str] = ("csv",),
    registry: Registry | None = None,
    now: dt.datetime | None = None,
) -> Path:
    """Save ``answer`` under ``directory`` (created if missing) and append it to the index; returns its folder."""
    unknown = [f for f in formats if f not in TABLE_FORMATS]
    if unknown:
        raise ConfigError(f"unknown result format(s) {', '.join(unknown)}; use {', '.join(TABLE_FORMATS)}")
    saved = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")
    ident = f"{saved}-{answer.kind}-{answer.query_sha256[:12]}"
    folder = directory / ident
    folder.mkdir(parents=True, exist_ok=False)
    files = [export(answer, "json", folder / "answer.json").name]
    for fmt in formats:
        for name in answer.table_names:
            files.append(export(answer, fmt, folder / f"{name}.{fmt}", registry=registry, name=name).name)
    entry = {
        "id": ident,
        "kind": answer.kind,
        "start": answer.query["start"],
        "end": answer.query["end"],
        "coordinator": answer.query["coordinator"],
        "nonce": answer.query["nonce"],
        "query_sha256": answer.query_sha256,
        "saved": saved,
        "rows": len(answer.rows),
        "files": files,
    }
    with (directory / INDEX).open("a", encoding="utf-8") as index:
        index.write(json.dumps(entry, ensure_ascii=False) + "\n")
    return folder


def list_results(directory: Path) -> list[dict[str, Any]]:
    """The index entries of ``directory``, oldest first (ConfigError if it holds no index)."""
    path = directory / INDEX
    if not path.is_file():
        raise ConfigError(f"{directory} holds no saved results ({INDEX} missing); save some with query --output")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_answer(directory: Path, ident: str) -> Answer:
    """A saved answer by its id, or by a unique prefix of it or of its query sha256."""
    entries = list_results(directory)
    matches = [e for e in entries if e["id"] == ident] or [
        e for e in entries if e["id"].startswith(ident) or e["query_sha256"].startswith(ident)
    ]
    if len(matches) != 1:
        known = ", ".join(e["id"] for e in entries[-5:]) or "none"
        raise ConfigError(
            f"{'no' if not matches else 'more than one'} saved result matches {ident!r} in {directory}; latest: {known}"
        )
    document = json.loads((directory / matches[0]["id"] / "answer.json").read_text(encoding="utf-8"))
    return Answer.from_json_dict(document)
