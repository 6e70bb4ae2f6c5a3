"""Shared helpers for integration tests: small scenarios, roster variants, oracle sums across agencies.

Isolation: the session's small scenario is read-only (stores, certificates, the roster). Every federation a
test starts gets its own directory (:func:`own_federation`): its roster variant, ready files, logs, runtime
roster and audit logs live there, so any module passes alone and in any order.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import duckdb
import numpy as np
import numpy.typing as npt
from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_fixed

from broker.client import run_query
from fedbroker.harness import LocalFederation
from federation.catalog import new_query
from federation.config import FederationConfig, PrivacyPolicy, dump_federation, load_federation
from federation.errors import FederationError
from federation.pki import issue_certificate

SMALL_PROVINCES = (42,)
SMALL_SUBSCRIBERS = 6_000
SMALL_DAYS = 21
SMALL_SEED = 11
# The shared scenario's fault tests retry rounds with other survivors, so they turn the exact agencies' survivor
# lock off; tests/test_differencing.py turns it on and plays the attack it stops.
#: The shared test scenario sums exactly (the oracle tests compare bit for bit); noise tests switch it on.
EXACT = PrivacyPolicy(noise="none", one_survivor_set=False)


def own_federation(
    roster: Path,
    run_dir: Path,
    *,
    nodes: Sequence[str] | None = None,
    faults: Mapping[str, str] | None = None,
    metrics: bool = False,
    log_format: str = "text",
) -> LocalFederation:
    """A federation whose run-time files, runtime roster and audit logs all live in ``run_dir`` (its own)."""
    return LocalFederation(
        roster,
        run_dir=run_dir,
        audit_dir=run_dir / "audit",
        nodes=nodes,
        faults=faults or {},
        metrics=metrics,
        log_format=log_format,
    )


#: A cheap query per agency kind that every node of that kind contributes to (one day, or no window).
_PROBE: Mapping[str, tuple[str, dict[str, str]]] = {
    "telecom": ("population", {}),
    "health": ("cases", {}),
    "transport": ("flows", {"source": "transport"}),
}


def restart_and_rejoin(
    fed: LocalFederation, node_ids: Sequence[str], coordinator: str, *, timeout_s: float = 90.0
) -> None:
    """Restart adapters (killed or not) and wait until the broker reaches every one of them again.

    A restarted node is bound at once, but the broker's channel to it only reconnects when its backoff expires;
    until then rounds drop the node. So a test that killed a node leaves the shared federation as it found it
    by asking a one-day query of each node's kind until the node contributes (at most ``timeout_s``)."""
    for node_id in node_ids:
        fed.restart(node_id)
    config = fed.config

    @retry(
        retry=retry_if_exception_type(AssertionError),
        stop=stop_after_delay(timeout_s),
        wait=wait_fixed(0.5),
        reraise=True,
    )
    def rejoined(node_id: str) -> None:
        kind, params = _PROBE[config.node(node_id).kind]
        query = new_query(kind, start=config.data_end, end=config.data_end, params=params, coordinator=coordinator)
        try:
            answer = asyncio.run(run_query(config, coordinator, query))
        except FederationError as error:  # e.g. too few contributors while several are still backing off
            raise AssertionError(f"{node_id} not reachable yet: {error.message}") from None
        contributed = {node for coverage in answer.contributors.values() for node in coverage["contributed"]}
        assert node_id in contributed, f"{node_id} not reachable yet: {answer.contributors}"

    for node_id in node_ids:
        rejoined(node_id)


def own_roster(source: Path, directory: Path) -> Path:
    """A copy of roster ``source`` in ``directory`` whose audit logs are written under ``directory``/audit, for a
    test that starts a federation by other means than :func:`own_federation` (e.g. ``fedbroker up``)."""
    config = load_federation(source)
    audit = directory / "audit"
    broker = dataclasses.replace(config.broker, audit_log=audit / config.broker.audit_log.name)
    nodes = tuple(dataclasses.replace(n, audit_log=audit / n.audit_log.name) for n in config.nodes)
    target = directory / "federation.yaml"
    dump_federation(dataclasses.replace(config, broker=broker, nodes=nodes), target)
    return target


def roster_variant(
    source: Path,
    target: Path,
    *,
    min_contributors: int | None = None,
    mobility_k: int | None = None,
    cases_k: int | None = None,
    round_timeout_s: float | None = None,
    stage_timeout_s: float | None = None,
    privacy: PrivacyPolicy | None = None,
    rho_per_round: float | None = None,
) -> Path:
    """Write a copy of a roster beside the original with some policies or disclosure settings changed."""
    config = load_federation(source)
    nodes = tuple(
        dataclasses.replace(n, policy=dataclasses.replace(n.policy, min_contributors=min_contributors))
        if min_contributors is not None
        else n
        for n in config.nodes
    )
    if privacy is not None:
        nodes = tuple(dataclasses.replace(n, policy=dataclasses.replace(n.policy, privacy=privacy)) for n in nodes)
    broker = config.broker
    if mobility_k is not None:
        broker = dataclasses.replace(broker, mobility_k=mobility_k)
    if cases_k is not None:
        broker = dataclasses.replace(broker, cases_k=cases_k)
    if round_timeout_s is not None:
        broker = dataclasses.replace(broker, round_timeout_s=round_timeout_s)
    if stage_timeout_s is not None:
        broker = dataclasses.replace(broker, stage_timeout_s=stage_timeout_s)
    if rho_per_round is not None:
        broker = dataclasses.replace(broker, rho_per_round=rho_per_round)
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
    copy's data are its own from then on), its own certificate from the federation CA and its own audit log,
    all written beside ``target`` (the source scenario is not touched). ``copies`` maps new id -> id whose
    store is copied."""
    config = load_federation(source)
    own = target.parent
    ca_pem, ca_key_pem = config.ca.read_bytes(), config.ca.with_suffix(".key").read_bytes()
    now = dt.datetime.now(dt.UTC)
    nodes = list(config.nodes)
    # Fixed ports after every port in use (the harness rebinds ephemerally anyway).
    next_port = 1 + max(
        int(address.rsplit(":", 1)[1]) for address in [n.address for n in nodes] + [config.broker.address]
    )
    for offset, (new_id, original_id) in enumerate(copies.items()):
        original = config.node(original_id)
        store = own / f"{new_id}.duckdb"
        shutil.copyfile(original.store, store)
        cert_pem, key_pem = issue_certificate(
            ca_pem, ca_key_pem, new_id, not_before=now - dt.timedelta(hours=1), not_after=now + dt.timedelta(days=2)
        )
        (own / f"{new_id}.pem").write_bytes(cert_pem)
        (own / f"{new_id}.key").write_bytes(key_pem)
        (own / f"{new_id}.key").chmod(0o600)
        nodes.append(
            dataclasses.replace(
                original,
                id=new_id,
                address=f"127.0.0.1:{next_port + offset}",
                store=store,
                cert=own / f"{new_id}.pem",
                key=own / f"{new_id}.key",
                audit_log=original.audit_log.with_name(f"{new_id}.jsonl"),
            )
        )
    dump_federation(dataclasses.replace(config, nodes=tuple(nodes)), target)
    return target


def private_copy(
    source: Path,
    target_dir: Path,
    *,
    privacy: PrivacyPolicy,
    rho_per_round: float | None = None,
    min_contributors: int | None = None,
) -> Path:
    """A roster in ``target_dir`` over copies of the source's stores, with its own audit logs and budget ledgers
    (ledgers live beside the stores), every agency's privacy policy set to ``privacy``."""
    config = load_federation(source)
    (target_dir / "agencies").mkdir(parents=True, exist_ok=True)
    nodes = []
    for node in config.nodes:
        store = target_dir / "agencies" / node.store.name
        shutil.copyfile(node.store, store)
        policy = dataclasses.replace(node.policy, privacy=privacy)
        if min_contributors is not None:
            policy = dataclasses.replace(policy, min_contributors=min_contributors)
        audit = target_dir / "audit" / node.audit_log.name
        nodes.append(dataclasses.replace(node, store=store, audit_log=audit, policy=policy))
    broker = dataclasses.replace(config.broker, audit_log=target_dir / "audit" / config.broker.audit_log.name)
    if rho_per_round is not None:
        broker = dataclasses.replace(broker, rho_per_round=rho_per_round)
    target = target_dir / "federation.yaml"
    dump_federation(dataclasses.replace(config, nodes=tuple(nodes), broker=broker), target)
    return target
