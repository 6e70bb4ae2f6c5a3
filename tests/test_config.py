"""The federation roster: a valid file loads and round-trips; each invalid file names the key and the fix."""

from __future__ import annotations

import copy
import dataclasses
import datetime
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from federation.config import (
    FederationConfig,
    PolicyConfig,
    dump_federation,
    load_federation,
)
from federation.errors import ConfigError
from federation.pki import generate_dev_pki

REGISTRY_HASH = "ab" * 32
NODE_IDS = ["telecom-a", "telecom-b", "health-net-1", "transport-rail"]
COORDINATOR_IDS = ["nhc-national", "hubei-jpc"]


def node(node_id: str, kind: str, port: int) -> dict[str, Any]:
    return {
        "id": node_id,
        "kind": kind,
        "address": f"127.0.0.1:{port}",
        "store": f"agencies/{node_id}.duckdb",
        "cert": f"pki/{node_id}.pem",
        "key": f"pki/{node_id}.key",
        "audit_log": f"audit/{node_id}.jsonl",
        "policy": {
            "allowed_queries": ["population", "flows", "importation-risk"],
            "max_window_days": 31,
            "min_contributors": 3,
            "allowed_coordinators": [],
            "allowed_roles": ["national", "provincial"],
        },
    }


def roster() -> dict[str, Any]:
    """The documented federation.yaml format, as the scenario generator writes it."""
    return {
        "version": 1,
        "name": "hubei-default",
        "domain": {"provinces": [34, 36, 41, 42, 43, 50, 61], "registry_hash": REGISTRY_HASH},
        "data": {"start": "2020-01-01", "end": "2020-01-28"},
        "pki": {"ca": "pki/ca.pem"},
        "broker": {
            "id": "broker",
            "address": "127.0.0.1:7400",
            "cert": "pki/broker.pem",
            "key": "pki/broker.key",
            "audit_log": "audit/broker.jsonl",
            "round_timeout_s": 60,
            "disclosure": {"mobility_k": 15, "cases_k": 3},
        },
        "nodes": [
            node("telecom-a", "telecom", 7401),
            node("telecom-b", "telecom", 7402),
            node("health-net-1", "health", 7403),
            node("transport-rail", "transport", 7404),
        ],
        "coordinators": [
            {"id": "nhc-national", "role": "national", "cert": "pki/nhc-national.pem", "key": "pki/nhc-national.key"},
            {
                "id": "hubei-jpc",
                "role": "provincial",
                "jurisdiction": 42,
                "cert": "pki/hubei-jpc.pem",
                "key": "pki/hubei-jpc.key",
            },
        ],
    }


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with pki/ for every member (stores are deliberately absent)."""
    directory = tmp_path_factory.mktemp("scenario")
    generate_dev_pki(directory / "pki", ["broker", *NODE_IDS, *COORDINATOR_IDS])
    return directory


def write(directory: Path, document: dict[str, Any], name: str = "federation.yaml") -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def test_valid_roster_loads(scenario: Path) -> None:
    cfg = load_federation(write(scenario, roster()))
    assert cfg.path == (scenario / "federation.yaml").absolute()
    assert cfg.name == "hubei-default" and cfg.version == 1
    assert cfg.domain.provinces == (34, 36, 41, 42, 43, 50, 61)
    assert (cfg.data_start, cfg.data_end) == (datetime.date(2020, 1, 1), datetime.date(2020, 1, 28))
    assert cfg.ca == scenario.absolute() / "pki" / "ca.pem"
    assert cfg.broker.round_timeout_s == 60.0 and (cfg.broker.mobility_k, cfg.broker.cases_k) == (15, 3)
    telecom = cfg.node("telecom-a")
    assert telecom.store == scenario.absolute() / "agencies" / "telecom-a.duckdb"  # need not exist
    assert telecom.policy == PolicyConfig(
        allowed_queries=("population", "flows", "importation-risk"),
        max_window_days=31,
        min_contributors=3,
        allowed_coordinators=(),
        allowed_roles=("national", "provincial"),
    )
    assert [n.id for n in cfg.nodes_of_kind("telecom")] == ["telecom-a", "telecom-b"]
    assert cfg.nodes_of_kind("health")[0].id == "health-net-1"
    assert cfg.coordinator("hubei-jpc").jurisdiction == 42
    assert cfg.coordinator("nhc-national").jurisdiction is None
    assert set(cfg.certificates()) == {"broker", *NODE_IDS, *COORDINATOR_IDS}
    assert cfg.certificates()["hubei-jpc"] == scenario.absolute() / "pki" / "hubei-jpc.pem"
    assert cfg.identity("telecom-b").node_id == "telecom-b"


def test_optional_keys_default_and_all_provinces(scenario: Path) -> None:
    document = roster()
    document["domain"]["provinces"] = "all"
    del document["broker"]["round_timeout_s"], document["broker"]["disclosure"]
    del document["nodes"][0]["policy"]["allowed_coordinators"], document["nodes"][0]["policy"]["allowed_roles"]
    del document["coordinators"][0]["key"]
    cfg = load_federation(write(scenario, document, "defaults.yaml"))
    assert cfg.domain.provinces is None
    assert (cfg.broker.round_timeout_s, cfg.broker.mobility_k, cfg.broker.cases_k) == (60.0, 15, 3)
    assert cfg.nodes[0].policy.allowed_coordinators == ()
    assert cfg.nodes[0].policy.allowed_roles == ("national", "provincial")
    assert cfg.coordinator("nhc-national").key is None
    with pytest.raises(ConfigError, match="has no key"):
        cfg.identity("nhc-national")


def test_round_trip_through_another_directory(scenario: Path, tmp_path: Path) -> None:
    cfg = load_federation(write(scenario, roster()))
    for target in (scenario / "copy.yaml", tmp_path / "elsewhere" / "federation.yaml"):
        dump_federation(cfg, target)
        again = load_federation(target)
        assert dataclasses.replace(again, path=cfg.path) == cfg
    # Relative to the target: the copy next to the original reads exactly like it.
    text = (scenario / "copy.yaml").read_text()
    assert "ca: pki/ca.pem" in text and "store: agencies/telecom-a.duckdb" in text
    assert yaml.safe_load(text)["domain"]["provinces"] == [34, 36, 41, 42, 43, 50, 61]


def test_postgresql_and_spark_stores_load_and_round_trip(scenario: Path, tmp_path: Path) -> None:
    document = roster()
    document["nodes"][2]["store"] = "postgresql://health@127.0.0.1:5432/cases?service=net1"
    document["nodes"][0]["store"] = "spark:"
    document["nodes"][0]["spark"] = {"master": "local[2]", "tables": "parquet/telecom-a"}
    cfg = load_federation(write(scenario, document, "engines.yaml"))
    health, telecom = cfg.node("health-net-1"), cfg.node("telecom-a")
    assert health.location().engine == "postgresql" and health.location().url is not None
    assert telecom.location().spark_tables == str(scenario.absolute() / "parquet" / "telecom-a")
    assert telecom.store == scenario.absolute() / "audit" / "telecom-a.spark"  # local files, beside the audit log
    assert cfg.node("telecom-b").location().path == cfg.node("telecom-b").store
    target = tmp_path / "moved" / "federation.yaml"
    dump_federation(cfg, target)
    assert dataclasses.replace(load_federation(target), path=cfg.path) == cfg
    document["nodes"][2]["store"] = "postgresql://health:pw@127.0.0.1:5432/cases"
    with pytest.raises(ConfigError, match=r"nodes\[2\]\.store: the PostgreSQL URL carries a password"):
        load_federation(write(scenario, document, "password.yaml"))


def test_lookups_and_with_addresses(scenario: Path) -> None:
    cfg = load_federation(write(scenario, roster()))
    moved = cfg.with_addresses({"broker": "127.0.0.1:40001", "telecom-b": "127.0.0.1:40002"})
    assert moved.broker.address == "127.0.0.1:40001"
    assert moved.node("telecom-b").address == "127.0.0.1:40002"
    assert moved.node("telecom-a").address == "127.0.0.1:7401"
    assert cfg.broker.address == "127.0.0.1:7400"  # the original is untouched
    with pytest.raises(ConfigError, match=r"no node 'telecom-z'.*known: telecom-a, telecom-b"):
        cfg.node("telecom-z")
    with pytest.raises(ConfigError, match=r"no coordinator 'who'.*known: nhc-national, hubei-jpc"):
        cfg.coordinator("who")
    with pytest.raises(ConfigError, match="not the broker or a node"):
        cfg.with_addresses({"nhc-national": "127.0.0.1:1"})
    with pytest.raises(ConfigError, match="not host:port"):
        cfg.with_addresses({"broker": "localhost"})
    with pytest.raises(ConfigError, match="not a node kind"):
        cfg.nodes_of_kind("bank")


Mutation = Callable[[dict[str, Any]], object]

INVALID: list[tuple[str, Mutation, str]] = [
    ("version", lambda d: d.update(version=2), r"version: 2 is not supported"),
    ("unknown key", lambda d: d["broker"].update(adress="x"), r"broker\.adress: unknown key"),
    ("missing key", lambda d: d["nodes"][1].pop("cert"), r"nodes\[1\]\.cert: missing; add cert under nodes\[1\]"),
    (
        "negative window",
        lambda d: d["nodes"][2]["policy"].update(max_window_days=-3),
        r"nodes\[2\]\.policy\.max_window_days: expected a whole number >= 1, got -3",
    ),
    (
        "bool is not a number",
        lambda d: d["nodes"][0]["policy"].update(min_contributors=True),
        r"nodes\[0\]\.policy\.min_contributors: expected a whole number",
    ),
    (
        "misspelt policy key",
        lambda d: d["nodes"][3]["policy"].update(min_contributor=5),
        r"nodes\[3\]\.policy\.min_contributor: unknown key",
    ),
    ("bad kind", lambda d: d["nodes"][1].update(kind="bank"), r"nodes\[1\]\.kind: 'bank' is not one of telecom"),
    (
        "duplicate id",
        lambda d: d["nodes"][3].update(id="telecom-a"),
        r"nodes\[3\]\.id: 'telecom-a' is already the id at nodes\[0\]\.id",
    ),
    (
        "coordinator reuses the broker id",
        lambda d: d["coordinators"][0].update(id="broker"),
        r"coordinators\[0\]\.id: 'broker' is already the id at broker\.id",
    ),
    (
        "id not a DNS name",
        lambda d: d["nodes"][0].update(id="Telecom_A"),
        r"nodes\[0\]\.id: 'Telecom_A' is not a valid id",
    ),
    (
        "provincial without jurisdiction",
        lambda d: d["coordinators"][1].pop("jurisdiction"),
        r"coordinators\[1\]\.jurisdiction: a provincial coordinator needs a two-digit province code",
    ),
    (
        "three-digit jurisdiction",
        lambda d: d["coordinators"][1].update(jurisdiction=420),
        r"coordinators\[1\]\.jurisdiction: .*two-digit",
    ),
    (
        "jurisdiction outside the domain",
        lambda d: d["coordinators"][1].update(jurisdiction=11),
        r"coordinators\[1\]\.jurisdiction: province 11 is not in domain\.provinces",
    ),
    (
        "national with jurisdiction",
        lambda d: d["coordinators"][0].update(jurisdiction=42),
        r"coordinators\[0\]\.jurisdiction: a national coordinator has no jurisdiction",
    ),
    (
        "bad role",
        lambda d: d["coordinators"][0].update(role="mayor"),
        r"coordinators\[0\]\.role: 'mayor' is not one of",
    ),
    (
        "unknown allowed coordinator",
        lambda d: d["nodes"][0]["policy"].update(allowed_coordinators=["hubei-jcp"]),
        r"nodes\[0\]\.policy\.allowed_coordinators\[0\]: 'hubei-jcp' is not a coordinator in the roster",
    ),
    (
        "bad allowed role",
        lambda d: d["nodes"][1]["policy"].update(allowed_roles=["national", "county"]),
        r"nodes\[1\]\.policy\.allowed_roles\[1\]: 'county' is not one of",
    ),
    ("bad date", lambda d: d["data"].update(start="2020-13-01"), r"data\.start: '2020-13-01' is not a date"),
    ("inverted dates", lambda d: d["data"].update(end="2019-12-31"), r"data\.end: 2019-12-31 is before data\.start"),
    (
        "address without port",
        lambda d: d["broker"].update(address="127.0.0.1"),
        r"broker\.address: '127\.0\.0\.1' is not host:port",
    ),
    (
        "port out of range",
        lambda d: d["nodes"][0].update(address="127.0.0.1:70000"),
        r"nodes\[0\]\.address: .*not host:port",
    ),
    (
        "shared address",
        lambda d: d["nodes"][1].update(address="127.0.0.1:7401"),
        r"nodes\[1\]\.address: 127\.0\.0\.1:7401 is also the address of telecom-a",
    ),
    ("missing CA", lambda d: d["pki"].update(ca="pki/nope.pem"), r"pki\.ca: .*nope\.pem does not exist"),
    (
        "missing certificate",
        lambda d: d["coordinators"][1].update(cert="pki/gone.pem"),
        r"coordinators\[1\]\.cert: .*gone\.pem does not exist",
    ),
    (
        "short registry hash",
        lambda d: d["domain"].update(registry_hash="abc"),
        r"domain\.registry_hash: 'abc' is not a sha256 hex digest",
    ),
    ("bad province", lambda d: d["domain"].update(provinces=[42, 4]), r"domain\.provinces\[1\]: 4 is not a two-digit"),
    (
        "provinces neither list nor all",
        lambda d: d["domain"].update(provinces="most"),
        r"domain\.provinces: expected a list or \"all\"",
    ),
    (
        "zero timeout",
        lambda d: d["broker"].update(round_timeout_s=0),
        r"broker\.round_timeout_s: expected a positive number",
    ),
    (
        "zero k",
        lambda d: d["broker"]["disclosure"].update(cases_k=0),
        r"broker\.disclosure\.cases_k: expected a whole number",
    ),
    ("no nodes", lambda d: d.update(nodes=[]), r"nodes: expected a non-empty list"),
    ("node not a mapping", lambda d: d["nodes"].append("telecom-c"), r"nodes\[4\]: expected a mapping"),
    (
        "bad query name",
        lambda d: d["nodes"][0]["policy"].update(allowed_queries=["population", "Flows!"]),
        r"nodes\[0\]\.policy\.allowed_queries\[1\]: 'Flows!' is not a query name",
    ),
]


@pytest.mark.parametrize(("mutation", "message"), [(m, msg) for _, m, msg in INVALID], ids=[n for n, _, _ in INVALID])
def test_invalid_roster_names_file_and_key(scenario: Path, mutation: Mutation, message: str) -> None:
    document = copy.deepcopy(roster())
    mutation(document)
    path = write(scenario, document, "invalid.yaml")
    with pytest.raises(ConfigError, match=message) as caught:
        load_federation(path)
    assert caught.value.message.startswith(f"{path}: "), caught.value.message
    assert "; " in caught.value.message  # every message carries a fix


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.yaml: cannot read"):
        load_federation(tmp_path / "missing.yaml")
    (tmp_path / "broken.yaml").write_text("nodes: [\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml: not valid YAML"):
        load_federation(tmp_path / "broken.yaml")
    (tmp_path / "date.yaml").write_text("data:\n  start: 2020-13-01\n")
    with pytest.raises(ConfigError, match=r"date\.yaml: not valid YAML \(month must be in 1\.\.12\)"):
        load_federation(tmp_path / "date.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match=r"list\.yaml: the top level: expected a mapping"):
        load_federation(tmp_path / "list.yaml")


def test_loaded_config_is_frozen(scenario: Path) -> None:
    cfg: FederationConfig = load_federation(write(scenario, roster()))
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.name = "other"  # type: ignore[misc]
