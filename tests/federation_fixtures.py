"""Shared helpers for integration tests: small scenarios, roster variants, oracle sums across agencies."""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

import duckdb
import numpy as np
import numpy.typing as npt

from federation.config import FederationConfig, dump_federation, load_federation
from federation.pki import generate_dev_pki

SMALL_PROVINCES = (42,)
SMALL_SUBSCRIBERS = 6_000
SMALL_DAYS = 21
SMALL_SEED = 11


def roster_variant(
    source: Path,
    target: Path,
    *,
    min_contributors: int | None = None,
    mobility_k: int | None = None,
    cases_k: int | None = None,
    round_timeout_s: float | None = None,
    stage_timeout_s: float | None = None,
) -> Path:
    """Write a copy of a roster beside the original with some policies or disclosure settings changed."""
    config = load_federation(source)
    nodes = tuple(
        dataclasses.replace(n, policy=dataclasses.replace(n.policy, min_contributors=min_contributors))
        if min_contributors is not None
        else n
        for n in config.nodes
    )
    broker = config.broker
    if mobility_k is not None:
        broker = dataclasses.replace(broker, mobility_k=mobility_k)
    if cases_k is not None:
        broker = dataclasses.replace(broker, cases_k=cases_k)
    if round_timeout_s is not None:
        broker = dataclasses.replace(broker, round_timeout_s=round_timeout_s)
    if stage_timeout_s is not None:
        broker = dataclasses.replace(broker, stage_timeout_s=stage_timeout_s)
    dump_federation(dataclasses.replace(config, nodes=nodes, broker=broker), target)
    return target


def oracle_sum(
    config: FederationConfig,
    kind: str,
    compute: Callable[[duckdb.DuckDBPyConnection], npt.NDArray[np.uint64]],
    *,
    only: Iterable[str] | None = None,
) -> npt.NDArray[np.uint64]:
    """Sum an oracle vector straight from the raw DuckDB file of every agency of ``kind`` (or of ``only``)."""
    wanted = set(only) if only is not None else None
    total: npt.NDArray[np.uint64] | None = None
    for node in config.nodes_of_kind(kind):
        if wanted is not None and node.id not in wanted:
            continue
        con = duckdb.connect(str(node.store), read_only=True)
        try:
            vector = compute(con)
        finally:
            con.close()
        total = vector if total is None else total + vector
    assert total is not None, f"no {kind} agencies"
    return total


def days(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def with_extra_carriers(source: Path, target: Path, copies: dict[str, str]) -> Path:
    """A roster with more telecom carriers: each new id gets a copy of an existing carrier's store (the
    copy's data are its own from then on), its own certificate from the federation CA and its own audit log.
    ``copies`` maps new id -> id whose store is copied."""
    config = load_federation(source)
    pki_dir = config.ca.parent
    generate_dev_pki(pki_dir, list(copies))
    nodes = list(config.nodes)
    # Fixed ports after every port in use (the harness rebinds ephemerally anyway).
    next_port = 1 + max(int(member.address.rsplit(":", 1)[1]) for member in (*nodes, config.broker))
    for offset, (new_id, original_id) in enumerate(copies.items()):
        original = config.node(original_id)
        store = original.store.with_name(f"{new_id}.duckdb")
        shutil.copyfile(original.store, store)
        nodes.append(
            dataclasses.replace(
                original,
                id=new_id,
                address=f"127.0.0.1:{next_port + offset}",
                store=store,
                cert=pki_dir / f"{new_id}.pem",
                key=pki_dir / f"{new_id}.key",
                audit_log=original.audit_log.with_name(f"{new_id}.jsonl"),
            )
        )
    dump_federation(dataclasses.replace(config, nodes=tuple(nodes)), target)
    return target
