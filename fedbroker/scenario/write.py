"""Orchestration: simulate the world, write every agency's store, the roster, the PKI and the manifest.

Layout of a scenario directory::

    federation.yaml            the roster (federation.config format), paths relative to this directory
    scenario.json              manifest: parameters, model constants, rows per table, content hash
    agencies/<agency-id>.duckdb  each agency's raw tables (docs/protocol.md, "Raw tables")
    pki/                       dev CA + certificate and key of the broker, every node, every coordinator and
                               each carrier's SMS gateway (telecom-a-gateway, ...)
    sms/outbox.jsonl           the local SMS sender's outbox (written by the carriers' itinerary service)
    audit/                     where the nodes append their audit logs
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from fedbroker.scenario import epidemic as epidemic_model
from fedbroker.scenario import records as records_model
from fedbroker.scenario import timeline as timeline_model
from fedbroker.scenario import world as world_model
from fedbroker.scenario.agencies import SignallingSpool, TelecomStore, digest_chunks, write_health, write_transport
from fedbroker.scenario.epidemic import line_list
from fedbroker.scenario.records import carrier_tables, case_records, signalling_days, ticket_records
from fedbroker.scenario.simulate import World, simulate
from fedbroker.scenario.timeline import DEFAULT_DAYS, SCENARIO_START, epicentre_prefecture
from federation.catalog import agency_query_kinds
from federation.pki import generate_dev_pki
from federation.registry import load_registry

DEFAULT_PROVINCES: tuple[int, ...] = (34, 36, 41, 42, 43, 50, 61)
"""Hubei (42) and its neighbours: Anhui 34, Jiangxi 36, Henan 41, Hunan 43, Chongqing 50, Shaanxi 61."""

CARRIERS = ("telecom-a", "telecom-b", "telecom-c")
HEALTH_NETWORKS = ("health-net-1", "health-net-2", "health-net-3")
TRANSPORT_OPERATORS = ("transport-a", "transport-b", "transport-c")
BROKER_ID = "broker"
NATIONAL_COORDINATOR = "nhc-national"
HUBEI = 42
BROKER_PORT = 7400
MANIFEST_FORMAT = "fedbroker-scenario/1"
MAX_DAYS = 366

# Each agency allows every catalog kind whose round plans use its aggregates (federation.catalog). Health
# networks allow a window as long as the default scenario: an epidemic curve is read whole.
_POLICIES: Mapping[str, dict[str, Any]] = {
    kind: {"allowed_queries": list(agency_query_kinds(kind)), "min_contributors": 3, "max_window_days": days}
    for kind, days in (("telecom", 31), ("health", 92), ("transport", 31))
}
_OUTPUTS = ("agencies", "pki", "audit", "federation.yaml", "scenario.json")


class ScenarioExistsError(FileExistsError):
    """The output directory holds something other than this same scenario, and ``force`` was not given."""


@dataclass(frozen=True)
class ScenarioSummary:
    """What ``generate_scenario`` wrote. ``rows`` is agency id -> table -> row count."""

    out: Path
    federation: Path
    name: str
    registry_hash: str
    districts: int
    persons: int
    days: int
    seed: int
    seed_district: int
    rows: Mapping[str, Mapping[str, int]]
    content_sha256: str
    seconds: float


def scenario_name(provinces: Sequence[int] | None) -> str:
    if provinces is None:
        return "national"
    if tuple(sorted(provinces)) == DEFAULT_PROVINCES:
        return "hubei-default"
    return "provinces-" + "-".join(str(p) for p in sorted(provinces))


def generate_scenario(
    out: Path,
    *,
    provinces: Sequence[int] | None = DEFAULT_PROVINCES,
    subscribers: int = 100_000,
    days: int = DEFAULT_DAYS,
    seed: int = 20200101,
    start: date = SCENARIO_START,
    force: bool = False,
) -> ScenarioSummary:
    """Generate one synthetic world and write every agency's store, the roster, the PKI and a manifest.

    ``provinces=None`` is the national domain. Rerunning with the same parameters rewrites identical table
    contents (the PKI is kept when still valid). An ``out`` that is not empty and is not this same scenario
    raises ScenarioExistsError unless ``force``, which replaces the scenario's files (nothing else in ``out``).
    """
    began = time.perf_counter()
    if subscribers < 1:
        raise ValueError(f"subscribers must be at least 1, got {subscribers}")
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days must be between 1 and {MAX_DAYS}, got {days}")
    domain = None if provinces is None else tuple(sorted({int(p) for p in provinces}))
    registry = load_registry(domain)
    params: dict[str, Any] = {
        "provinces": "all" if domain is None else list(domain),
        "subscribers": subscribers,
        "days": days,
        "seed": seed,
        "start": start.isoformat(),
    }
    out = Path(out)
    _prepare(out, params, force=force)

    population_rng, mobility_rng, epidemic_rng, cases_rng, telecom_rng, tickets_rng, health_rng = np.random.default_rng(
        seed
    ).spawn(7)
    world = simulate(
        registry,
        subscribers,
        days,
        population_rng=population_rng,
        mobility_rng=mobility_rng,
        epidemic_rng=epidemic_rng,
    )
    epicentre = registry.codes // 100 == epicentre_prefecture(int(registry.codes[world.seed_district]))
    rows_list = line_list(world.epidemic, world.night_location, epicentre, cases_rng)

    agencies_dir = out / "agencies"
    agencies_dir.mkdir(parents=True, exist_ok=True)
    (out / "audit").mkdir(exist_ok=True)
    digest = hashlib.sha256(registry.hash.encode())
    rows: dict[str, dict[str, int]] = {}
    rows.update(_write_carriers(agencies_dir, world, telecom_rng, start, digest))
    for agency_id, cases in zip(HEALTH_NETWORKS, case_records(world, rows_list, health_rng), strict=True):
        rows[agency_id] = write_health(agencies_dir / f"{agency_id}.duckdb", cases, start)
        for chunk in digest_chunks(agency_id, cases):
            digest.update(chunk)
    for agency_id, tickets in zip(TRANSPORT_OPERATORS, ticket_records(world, tickets_rng), strict=True):
        rows[agency_id] = write_transport(agencies_dir / f"{agency_id}.duckdb", tickets, start)
        for chunk in digest_chunks(agency_id, tickets):
            digest.update(chunk)

    name = scenario_name(domain)
    coordinators = _coordinators(domain)
    ids = [BROKER_ID, *CARRIERS, *HEALTH_NETWORKS, *TRANSPORT_OPERATORS, *(c["id"] for c in coordinators)]
    ids += [gateway_id(carrier) for carrier in CARRIERS]
    generate_dev_pki(out / "pki", ids)
    end = start + timedelta(days=days - 1)
    roster = out / "federation.yaml"
    _write_text(roster, _roster_text(name, params["provinces"], registry.hash, start, end, coordinators))

    seed_code = int(registry.codes[world.seed_district])
    content_sha256 = digest.hexdigest()
    manifest = {
        "format": MANIFEST_FORMAT,
        "name": name,
        "params": params,
        "registry_hash": registry.hash,
        "districts": len(registry),
        "seed_district": seed_code,
        "model": _model_constants(),
        "rows": rows,
        "infections": {
            "seeded": world.epidemic.seeded,
            "total": int(np.count_nonzero(world.epidemic.infection_day != epidemic_model.NEVER)),
        },
        "content_sha256": content_sha256,
        # Not covered by content_sha256, so that reruns compare equal on everything else.
        "generated_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
    }
    _write_text(out / "scenario.json", json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return ScenarioSummary(
        out=out,
        federation=roster,
        name=name,
        registry_hash=registry.hash,
        districts=len(registry),
        persons=subscribers,
        days=days,
        seed=seed,
        seed_district=seed_code,
        rows=rows,
        content_sha256=content_sha256,
        seconds=time.perf_counter() - began,
    )


def _write_carriers(
    agencies_dir: Path, world: World, rng: np.random.Generator, start: date, digest: hashlib._Hash
) -> dict[str, dict[str, int]]:
    """Stream every carrier's signalling, day by day, into its store and its spool; hash each carrier in turn.

    The three stores are open together so that each day's events are drawn once and written at once; the spool
    keeps the hash what it was when whole columns were hashed in memory (agencies.SignallingSpool).
    """
    tables = carrier_tables(world)
    spool_root = agencies_dir / ".signalling-spool"
    shutil.rmtree(spool_root, ignore_errors=True)
    stores: list[TelecomStore] = []
    spools = [SignallingSpool(spool_root / agency_id) for agency_id in CARRIERS]
    try:
        for agency_id, carrier in zip(CARRIERS, tables, strict=True):
            stores.append(TelecomStore(agencies_dir / f"{agency_id}.duckdb", carrier, start))
        for chunks in signalling_days(world, rng):
            for store, spool, chunk in zip(stores, spools, chunks, strict=True):
                store.append(chunk)
                spool.append(chunk)
        rows = {agency_id: store.finish() for agency_id, store in zip(CARRIERS, stores, strict=True)}
        stores.clear()
        for agency_id, carrier, spool in zip(CARRIERS, tables, spools, strict=True):
            for block in digest_chunks(agency_id, carrier):
                digest.update(block)
            for block in spool.digest_chunks():
                digest.update(block)
    finally:
        for store in stores:
            store.abandon()
        for spool in spools:
            spool.close()
        shutil.rmtree(spool_root, ignore_errors=True)
    return rows


def _prepare(out: Path, params: Mapping[str, Any], *, force: bool) -> None:
    """Make ``out`` ready: refuse a non-empty directory holding anything but this scenario unless forced."""
    if out.exists() and not out.is_dir():
        raise ScenarioExistsError(f"{out} exists and is not a directory; choose another --out")
    if not out.exists() or not any(out.iterdir()):
        out.mkdir(parents=True, exist_ok=True)
        return
    if _existing_params(out) == params:
        return
    if not force:
        raise ScenarioExistsError(
            f"{out} is not empty and does not hold this scenario ({_describe(params)}); "
            "choose another --out or pass --force to replace the scenario there"
        )
    # A different scenario's stores, audit trail and certificates must not survive into the new one; files
    # that generate_scenario did not write are left alone.
    for name in _OUTPUTS:
        target = out / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()


def _existing_params(out: Path) -> Any:
    try:
        manifest = json.loads((out / "scenario.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest.get("params") if isinstance(manifest, dict) else None


def _describe(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{key} {value}" for key, value in params.items())


def gateway_id(carrier: str) -> str:
    """The id of a carrier's SMS gateway in the generated roster (the only caller of its itinerary service)."""
    return f"{carrier}-gateway"


def _coordinators(domain: tuple[int, ...] | None) -> list[dict[str, Any]]:
    """The national coordinator and one provincial coordinator: Hubei's if in the domain, else the first."""
    province = HUBEI if domain is None or HUBEI in domain else domain[0]
    provincial_id = "hubei-jpc" if province == HUBEI else f"jpc-{province}"
    return [
        {"id": NATIONAL_COORDINATOR, "role": "national"},
        {"id": provincial_id, "role": "provincial", "jurisdiction": province},
    ]


def _roster_text(
    name: str,
    provinces: Any,
    registry_hash: str,
    start: date,
    end: date,
    coordinators: list[dict[str, Any]],
) -> str:
    nodes = []
    kinds = [("telecom", CARRIERS), ("health", HEALTH_NETWORKS), ("transport", TRANSPORT_OPERATORS)]
    port = BROKER_PORT
    for kind, agency_ids in kinds:
        for agency_id in agency_ids:
            port += 1
            policy = _POLICIES[kind]
            nodes.append(
                {
                    "id": agency_id,
                    "kind": kind,
                    "address": f"127.0.0.1:{port}",
                    "store": f"agencies/{agency_id}.duckdb",
                    "cert": f"pki/{agency_id}.pem",
                    "key": f"pki/{agency_id}.key",
                    "audit_log": f"audit/{agency_id}.jsonl",
                    "policy": {
                        "allowed_queries": list(policy["allowed_queries"]),
                        "max_window_days": policy["max_window_days"],
                        "min_contributors": policy["min_contributors"],
                        "allowed_coordinators": [],
                        "allowed_roles": ["national", "provincial"],
                        **({"itinerary": {"window_days": 14, "min_stay_hours": 4}} if kind == "telecom" else {}),
                        # Noise on: ρ 1.0 per data day at the broker's 0.05 per round is twenty releases per day.
                        "privacy": {"noise": "discrete-gaussian", "rho_per_day": 1.0, "max_trips_per_day": 4},
                    },
                }
            )
    document = {
        "version": 1,
        "name": name,
        "domain": {"provinces": provinces, "registry_hash": registry_hash},
        "data": {"start": start.isoformat(), "end": end.isoformat()},
        "pki": {"ca": "pki/ca.pem"},
        "broker": {
            "id": BROKER_ID,
            "address": f"127.0.0.1:{BROKER_PORT}",
            "cert": f"pki/{BROKER_ID}.pem",
            "key": f"pki/{BROKER_ID}.key",
            "audit_log": f"audit/{BROKER_ID}.jsonl",
            "round_timeout_s": 60,
            "disclosure": {"mobility_k": 15, "cases_k": 3},
            "privacy": {"rho_per_round": 0.05},
        },
        "nodes": nodes,
        "coordinators": [{**c, "cert": f"pki/{c['id']}.pem", "key": f"pki/{c['id']}.key"} for c in coordinators],
        "gateways": [
            {
                "id": gateway_id(carrier),
                "kind": "gateway",
                "carrier": carrier,
                "cert": f"pki/{gateway_id(carrier)}.pem",
                "key": f"pki/{gateway_id(carrier)}.key",
            }
            for carrier in CARRIERS
        ],
    }
    header = (
        f"# fedbroker federation roster for the synthetic scenario {name!r} (fedbroker scenario generate).\n"
        "# Paths are relative to this file. Every agency kind has three agencies and requires three\n"
        "# contributors: with two, each could subtract its own part from the released sum (docs/security.md).\n"
    )
    return header + yaml.safe_dump(document, sort_keys=False, default_flow_style=None, allow_unicode=True)


def _model_constants() -> dict[str, Any]:
    """Every upper-case numeric constant of the model modules, for the manifest."""
    constants: dict[str, Any] = {}
    for module in (timeline_model, world_model, epidemic_model, records_model):
        for key, value in vars(module).items():
            if key.isupper() and not key.startswith("_") and isinstance(value, int | float | tuple | np.integer):
                if isinstance(value, np.integer):
                    value = int(value)
                constants[f"{module.__name__.rsplit('.', 1)[-1]}.{key}"] = (
                    list(value) if isinstance(value, tuple) else value
                )
    return constants


def _write_text(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)
