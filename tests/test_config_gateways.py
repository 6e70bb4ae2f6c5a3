"""Roster gateways (each carrier's SMS gateway) and the carriers' itinerary policy: load, round-trip, refusals."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from federation.config import ItineraryPolicy, dump_federation, load_federation
from federation.errors import ConfigError
from federation.pki import generate_dev_pki
from tests.test_config import COORDINATOR_IDS, NODE_IDS, roster, write

GATEWAY = {"id": "telecom-a-gateway", "kind": "gateway", "carrier": "telecom-a", "cert": "pki/telecom-a-gateway.pem"}


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("gateways")
    generate_dev_pki(directory / "pki", ["broker", *NODE_IDS, *COORDINATOR_IDS, "telecom-a-gateway"])
    return directory


def with_gateway(**policy: Any) -> dict[str, Any]:
    document = copy.deepcopy(roster())
    document["gateways"] = [{**GATEWAY, "key": "pki/telecom-a-gateway.key"}]
    if policy:
        document["nodes"][0]["policy"]["itinerary"] = policy
    return document


def test_gateways_load_and_round_trip(scenario: Path, tmp_path: Path) -> None:
    cfg = load_federation(write(scenario, with_gateway(window_days=7, min_stay_hours=3.5)))
    gateway = cfg.gateway_of("telecom-a")
    assert (gateway.id, gateway.carrier, gateway.cert.name) == (
        "telecom-a-gateway",
        "telecom-a",
        "telecom-a-gateway.pem",
    )
    assert cfg.node("telecom-a").policy.itinerary == ItineraryPolicy(window_days=7, min_stay_hours=3.5)
    assert cfg.node("telecom-b").policy.itinerary == ItineraryPolicy(window_days=14, min_stay_hours=4.0)
    assert cfg.identity("telecom-a-gateway").node_id == "telecom-a-gateway"
    assert "telecom-a-gateway" in cfg.certificates()
    with pytest.raises(ConfigError, match="no gateway with carrier 'telecom-b'"):
        cfg.gateway_of("telecom-b")
    again = load_federation(write(scenario, with_gateway(), "plain.yaml"))
    dump_federation(again, tmp_path / "copy.yaml")
    copied = load_federation(tmp_path / "copy.yaml")
    assert copied.gateways == again.gateways and copied.nodes == again.nodes


def test_a_roster_without_gateways_still_loads(scenario: Path) -> None:
    assert load_federation(write(scenario, roster(), "none.yaml")).gateways == ()


Mutation = Callable[[dict[str, Any]], object]
INVALID: list[tuple[str, Mutation, str]] = [
    ("not a list", lambda d: d.update(gateways={"id": "x"}), r"gateways: expected a list"),
    (
        "wrong kind",
        lambda d: d["gateways"][0].update(kind="node"),
        r"gateways\[0\]\.kind: 'node' is not one of gateway",
    ),
    (
        "carrier not a telecom node",
        lambda d: d["gateways"][0].update(carrier="health-net-1"),
        r"gateways\[0\]\.carrier: 'health-net-1' is not a telecom node",
    ),
    (
        "id taken",
        lambda d: d["gateways"][0].update(id="telecom-b"),
        r"gateways\[0\]\.id: 'telecom-b' is already the id at nodes\[1\]\.id",
    ),
    ("missing carrier", lambda d: d["gateways"][0].pop("carrier"), r"gateways\[0\]\.carrier: missing"),
    (
        "itinerary window too long",
        lambda d: d["nodes"][0]["policy"].update(itinerary={"window_days": 60}),
        r"nodes\[0\]\.policy\.itinerary\.window_days: 60 days is longer than",
    ),
    (
        "itinerary stay not positive",
        lambda d: d["nodes"][0]["policy"].update(itinerary={"min_stay_hours": 0}),
        r"nodes\[0\]\.policy\.itinerary\.min_stay_hours: expected a positive number",
    ),
    (
        "itinerary on a health node",
        lambda d: d["nodes"][2]["policy"].update(itinerary={"window_days": 14}),
        r"nodes\[2\]\.policy\.itinerary: a health node has no itinerary service",
    ),
]


@pytest.mark.parametrize(("mutation", "message"), [(m, msg) for _, m, msg in INVALID], ids=[n for n, _, _ in INVALID])
def test_invalid_gateways_name_the_key(scenario: Path, mutation: Mutation, message: str) -> None:
    document = with_gateway()
    mutation(document)
    path = write(scenario, document, "invalid.yaml")
    with pytest.raises(ConfigError, match=message) as caught:
        load_federation(path)
    assert caught.value.message.startswith(f"{path}: ") and "; " in caught.value.message
