"""The federation roster (``federation.yaml``): who is in the federation, where, with which certificate.

Read once with ``yaml.safe_load`` into frozen dataclasses and validated at load: a problem raises
ConfigError naming the file, the key path (``nodes[2].policy.max_window_days``) and the fix. Unknown keys
are refused too, so a misspelt policy key never silently falls back to nothing. Paths in the file are
relative to the file's directory (absolute paths are kept); loaded configs hold absolute paths.

Checked at load: the format version, unique node ids (DNS names), kinds and roles, jurisdictions,
positive numbers, ISO dates, host:port addresses, and that the CA and every certificate exist. Private keys
and agency stores are not checked here: on a multi-host federation each host holds only its own key and
store, and the node that needs one fails at start-up with a clear error.

The optional ``gateways`` list names each carrier's SMS gateway (``id``, ``kind: gateway``, ``carrier``: a
telecom node id, ``cert``, optional ``key``): a client identity, the only caller of that carrier's itinerary
service. A telecom node's policy may carry ``itinerary: {window_days, min_stay_hours}`` (default 14 and 4).
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import yaml

from federation.errors import ConfigError
from federation.identity import Identity, is_node_id
from federation.stores import StoreLocation, parse_store
from federation.vocabulary import DEFAULT_MAX_TRIPS_PER_DAY, MAX_TRIPS_PER_DAY_LIMIT

FORMAT_VERSION = 1
NODE_KINDS = ("telecom", "health", "transport")
COORDINATOR_ROLES = ("national", "provincial")
DEFAULT_ROUND_TIMEOUT_S = 60.0
DEFAULT_STAGE_TIMEOUT_S = 30.0
DEFAULT_MOBILITY_K = 15
DEFAULT_CASES_K = 3
GATEWAY_KIND = "gateway"
DEFAULT_ITINERARY_WINDOW_DAYS = 14
DEFAULT_ITINERARY_MIN_STAY_HOURS = 4.0
MAX_ITINERARY_WINDOW_DAYS = 31
NOISE_MECHANISMS = ("discrete-gaussian", "none")
DEFAULT_RHO_PER_DAY = 1.0
DEFAULT_RHO_PER_ROUND = 0.05
_QUERY_NAME = re.compile(r"[a-z][a-z0-9-]*")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_ADDRESS = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(?P<port>[0-9]{1,5})")


@dataclass(frozen=True)
class ItineraryPolicy:
    """A carrier's rules for its subscribers' own itinerary (docs/security.md, "One person's itinerary"): the
    window of whole days ending on the store's last data day, and the shortest stay in a city that counts."""

    window_days: int = DEFAULT_ITINERARY_WINDOW_DAYS
    min_stay_hours: float = DEFAULT_ITINERARY_MIN_STAY_HOURS


@dataclass(frozen=True)
class PrivacyPolicy:
    """An agency's differential-privacy policy (``policy.privacy``; docs/security.md, "Differential privacy").

    ``noise``: ``discrete-gaussian`` (the agency adds its share of distributed discrete Gaussian noise to every
    cell it contributes) or ``none`` (exact sums, for tests and closed exercises). ``rho_per_day``: the zCDP
    budget the agency lets all releases together spend on each data day (and on window-free aggregates).
    ``max_trips_per_day``: the contribution bound of the trips aggregates (trips per person-day).
    ``one_survivor_set``: with ``noise: none``, unmask each aggregate spec for one survivor set only (the first),
    so two exact rounds with different survivors never let the broker subtract one agency's vector
    (``federation/privacy/survivors.py``); ``false`` only for fault-injection tests that retry with other survivors.
    """

    noise: str = "discrete-gaussian"
    rho_per_day: float = DEFAULT_RHO_PER_DAY
    max_trips_per_day: int = DEFAULT_MAX_TRIPS_PER_DAY
    one_survivor_set: bool = True

    @property
    def noisy(self) -> bool:
        return self.noise != "none"


@dataclass(frozen=True)
class PolicyConfig:
    """An adapter's own rules for contributing to a query (docs/security.md). A ``min_contributors`` below 3
    weakens secure aggregation: with 2, each contributor can subtract its own part from the sum; with 1 the
    broker sees this agency's aggregate alone."""

    allowed_queries: tuple[str, ...]
    max_window_days: int
    min_contributors: int
    allowed_coordinators: tuple[str, ...]  # empty: any coordinator in the roster
    allowed_roles: tuple[str, ...]
    itinerary: ItineraryPolicy = ItineraryPolicy()  # telecom nodes only
    privacy: PrivacyPolicy = PrivacyPolicy()


@dataclass(frozen=True)
class LimitsConfig:
    """What one node holds at once (the ``limits:`` section of a node or of the broker; every key optional).

    ``max_live_rounds`` (adapter): rounds kept in memory, each holding the node's vector until it finishes,
    is aborted or expires; ``max_queries_per_coordinator`` (broker): queries one coordinator may have running;
    ``max_concurrent_rpcs``: calls a node serves at once, beyond which gRPC answers RESOURCE_EXHAUSTED."""

    max_live_rounds: int = 16
    max_queries_per_coordinator: int = 4
    max_concurrent_rpcs: int = 64


@dataclass(frozen=True)
class MetricsConfig:
    """The node's Prometheus endpoint (the ``metrics:`` section; off unless ``port`` is given). Plain HTTP:
    ``host`` defaults to loopback, so only the node's own host can scrape it unless the operator opens it."""

    port: int | None = None
    host: str = "127.0.0.1"


@dataclass(frozen=True)
class NodeConfig:
    id: str
    kind: str
    address: str
    #: The DuckDB file; for a PostgreSQL or Spark store, ``<id>.<engine>`` beside the node's audit log: where
    #: the node's own local files kept "beside the store" go (the store itself is ``store_location``).
    store: Path
    cert: Path
    key: Path
    audit_log: Path
    policy: PolicyConfig
    limits: LimitsConfig = LimitsConfig()
    metrics: MetricsConfig = MetricsConfig()
    #: None: DuckDB at ``store`` (so replacing ``store`` moves a DuckDB node's data, as tests do).
    store_location: StoreLocation | None = None

    def location(self) -> StoreLocation:
        """Where this node's raw tables live (``federation.stores``)."""
        return self.store_location or StoreLocation("duckdb", path=self.store)


@dataclass(frozen=True)
class BrokerConfig:
    id: str
    address: str
    cert: Path
    key: Path
    audit_log: Path
    round_timeout_s: float
    mobility_k: int
    cases_k: int
    #: Deadline of one stage of one round (seconds): a node that does not answer a stage by then is dropped.
    stage_timeout_s: float = 30.0
    limits: LimitsConfig = LimitsConfig()
    metrics: MetricsConfig = MetricsConfig()
    #: zCDP ρ each noisy round spends on each data day it covers (``broker.privacy.rho_per_round``).
    rho_per_round: float = DEFAULT_RHO_PER_ROUND


@dataclass(frozen=True)
class CoordinatorConfig:
    id: str
    role: str
    jurisdiction: int | None  # province code (two digits) of a provincial coordinator
    cert: Path
    key: Path | None  # absent when the coordinator's key lives only on its own machine


@dataclass(frozen=True)
class GatewayConfig:
    """A carrier's SMS gateway: a client identity (no server) and the only caller of that carrier's itinerary
    service. ``carrier`` is the id of a telecom node."""

    id: str
    carrier: str
    cert: Path
    key: Path | None  # absent when the gateway's key lives only on its own machine


@dataclass(frozen=True)
class DomainConfig:
    provinces: tuple[int, ...] | None  # two-digit province codes, ascending; None: every province
    registry_hash: str  # sha256 hex of the domain's district registry


@dataclass(frozen=True)
class FederationConfig:
    path: Path
    version: int
    name: str
    domain: DomainConfig
    data_start: datetime.date
    data_end: datetime.date
    ca: Path
    broker: BrokerConfig
    nodes: tuple[NodeConfig, ...]
    coordinators: tuple[CoordinatorConfig, ...]
    #: The CA's revocation list (``pki.crl``), which every node re-reads when it changes; None: no CRL.
    crl: Path | None = None
    gateways: tuple[GatewayConfig, ...] = ()

    def gateway_of(self, carrier: str) -> GatewayConfig:
        """The SMS gateway of the telecom node ``carrier``; ConfigError naming the fix when it has none."""
        for gateway in self.gateways:
            if gateway.carrier == carrier:
                return gateway
        carriers = ", ".join(g.carrier for g in self.gateways) or "none"
        raise ConfigError(
            f"{self.path}: no gateway with carrier {carrier!r} under gateways (carriers with one: {carriers}); "
            "add one, or regenerate the scenario"
        )

    def node(self, node_id: str) -> NodeConfig:
        for node in self.nodes:
            if node.id == node_id:
                return node
        known = ", ".join(node.id for node in self.nodes)
        raise ConfigError(f"{self.path}: no node {node_id!r} under nodes (known: {known})")

    def coordinator(self, coordinator_id: str) -> CoordinatorConfig:
        for coordinator in self.coordinators:
            if coordinator.id == coordinator_id:
                return coordinator
        known = ", ".join(c.id for c in self.coordinators)
        raise ConfigError(f"{self.path}: no coordinator {coordinator_id!r} under coordinators (known: {known})")

    def nodes_of_kind(self, kind: str) -> tuple[NodeConfig, ...]:
        if kind not in NODE_KINDS:
            raise ConfigError(f"{kind!r} is not a node kind; use one of {', '.join(NODE_KINDS)}")
        return tuple(node for node in self.nodes if node.kind == kind)

    def with_addresses(self, addresses: Mapping[str, str]) -> FederationConfig:
        """A copy with the addresses of the broker and nodes replaced by id (e.g. after binding port 0)."""
        servers = {self.broker.id, *(node.id for node in self.nodes)}
        for node_id, address in addresses.items():
            if node_id not in servers:
                raise ConfigError(
                    f"{self.path}: cannot set the address of {node_id!r}: not the broker or a node "
                    f"(known: {', '.join(sorted(servers))})"
                )
            if _ADDRESS.fullmatch(address) is None:
                raise ConfigError(f"address {address!r} for {node_id} is not host:port")
        broker = dataclasses.replace(self.broker, address=addresses.get(self.broker.id, self.broker.address))
        nodes = tuple(dataclasses.replace(n, address=addresses.get(n.id, n.address)) for n in self.nodes)
        return dataclasses.replace(self, broker=broker, nodes=nodes)

    def certificates(self) -> dict[str, Path]:
        """Every member's certificate path by id: broker, nodes and coordinators."""
        return {member_id: member.cert for member_id, member in self._members().items()}

    def identity(self, member_id: str) -> Identity:
        """Load the identity (certificate, key, CA) of the broker, a node or a coordinator by id."""
        members = self._members()
        member = members.get(member_id)
        if member is None:
            raise ConfigError(f"{self.path}: no member {member_id!r} (known: {', '.join(sorted(members))})")
        if member.key is None:
            raise ConfigError(f"{self.path}: {member_id} has no key in the roster; add its key path")
        return Identity.load(member_id, member.cert, member.key, self.ca)

    def _members(self) -> dict[str, BrokerConfig | NodeConfig | CoordinatorConfig | GatewayConfig]:
        members: list[BrokerConfig | NodeConfig | CoordinatorConfig | GatewayConfig] = [self.broker, *self.nodes]
        members += self.coordinators
        members += self.gateways
        return {member.id: member for member in members}


def load_federation(path: Path) -> FederationConfig:
    """Read and validate a ``federation.yaml``; ConfigError names the file, the key and the fix."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot read the federation roster ({exc.strerror}); check the path, or generate a scenario "
            "with fedbroker scenario generate"
        ) from exc
    try:
        document = yaml.safe_load(text)
    except (yaml.YAMLError, ValueError) as exc:  # ValueError: an unquoted impossible date like 2020-13-01
        raise ConfigError(f"{path}: not valid YAML ({exc}); fix the syntax at the place named") from exc
    return _Reader(path).federation(document)


def apply_local(cfg: FederationConfig, member_id: str, path: Path) -> FederationConfig:
    """``cfg`` with the entry of ``member_id`` (a node, or the broker) overridden by a host's local file.

    The local file is what stays on the node's own host (``docs/deploy.md``): for a node ``store``, ``key``,
    ``audit_log``, ``policy``, ``limits``, ``metrics``; for the broker ``key``, ``audit_log``, ``limits``,
    ``metrics``. Every key is optional; paths are relative to the local file. ConfigError names the file and key.
    """
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the local file ({exc.strerror}); check --local") from exc
    except (yaml.YAMLError, ValueError):
        raise ConfigError(f"{path}: not valid YAML; fix the syntax") from None
    reader = _Reader(path)
    if member_id == cfg.broker.id:
        local = reader.section(document, "", (), ("key", "audit_log", "limits", "metrics"))
        broker = cfg.broker
        changes: dict[str, Any] = {k: reader.path(local[k], k) for k in ("key", "audit_log") if k in local}
        if "limits" in local:
            changes["limits"] = reader.limits(local["limits"], "limits", ("max_queries_per_coordinator",))
        if "metrics" in local:
            changes["metrics"] = reader.metrics(local["metrics"], "metrics")
        return dataclasses.replace(cfg, broker=dataclasses.replace(broker, **changes))
    cfg.node(member_id)  # ConfigError naming the known ids for an id not in the roster
    local = reader.section(document, "", (), ("store", "key", "audit_log", "policy", "limits", "metrics"))
    changes = {k: reader.path(local[k], k) for k in ("store", "key", "audit_log") if k in local}
    if "policy" in local:
        changes["policy"] = reader.policy(local["policy"], "policy", tuple(c.id for c in cfg.coordinators))
    if "limits" in local:
        changes["limits"] = reader.limits(local["limits"], "limits", ("max_live_rounds",))
    if "metrics" in local:
        changes["metrics"] = reader.metrics(local["metrics"], "metrics")
    nodes = tuple(dataclasses.replace(n, **changes) if n.id == member_id else n for n in cfg.nodes)
    return dataclasses.replace(cfg, nodes=nodes)


def dump_federation(cfg: FederationConfig, path: Path) -> None:
    """Write ``cfg`` in the ``federation.yaml`` format, paths relative to ``path``'s directory, so that
    ``load_federation(path)`` gives back ``cfg`` (with ``path``)."""
    base = path.absolute().parent

    def rel(target: Path) -> str:
        return os.path.relpath(target, base)

    document: dict[str, Any] = {
        "version": cfg.version,
        "name": cfg.name,
        "domain": {
            "provinces": "all" if cfg.domain.provinces is None else list(cfg.domain.provinces),
            "registry_hash": cfg.domain.registry_hash,
        },
        "data": {"start": cfg.data_start.isoformat(), "end": cfg.data_end.isoformat()},
        "pki": {"ca": rel(cfg.ca), **({} if cfg.crl is None else {"crl": rel(cfg.crl)})},
        "broker": {
            "id": cfg.broker.id,
            "address": cfg.broker.address,
            "cert": rel(cfg.broker.cert),
            "key": rel(cfg.broker.key),
            "audit_log": rel(cfg.broker.audit_log),
            "round_timeout_s": cfg.broker.round_timeout_s,
            "stage_timeout_s": cfg.broker.stage_timeout_s,
            "disclosure": {"mobility_k": cfg.broker.mobility_k, "cases_k": cfg.broker.cases_k},
            **_dump_limits(cfg.broker.limits, ("max_queries_per_coordinator", "max_concurrent_rpcs")),
            **_dump_metrics(cfg.broker.metrics),
            "privacy": {"rho_per_round": cfg.broker.rho_per_round},
        },
        "nodes": [
            {
                "id": node.id,
                "kind": node.kind,
                "address": node.address,
                **_dump_store(node, path.absolute().parent),
                "cert": rel(node.cert),
                "key": rel(node.key),
                "audit_log": rel(node.audit_log),
                "policy": {
                    "allowed_queries": list(node.policy.allowed_queries),
                    "max_window_days": node.policy.max_window_days,
                    "min_contributors": node.policy.min_contributors,
                    "allowed_coordinators": list(node.policy.allowed_coordinators),
                    "allowed_roles": list(node.policy.allowed_roles),
                    **_dump_itinerary(node),
                    "privacy": {
                        "noise": node.policy.privacy.noise,
                        "rho_per_day": node.policy.privacy.rho_per_day,
                        "max_trips_per_day": node.policy.privacy.max_trips_per_day,
                        "one_survivor_set": node.policy.privacy.one_survivor_set,
                    },
                },
                **_dump_limits(node.limits, ("max_live_rounds", "max_concurrent_rpcs")),
                **_dump_metrics(node.metrics),
            }
            for node in cfg.nodes
        ],
        "coordinators": [_dump_coordinator(c, rel) for c in cfg.coordinators],
    }
    if cfg.gateways:
        document["gateways"] = [_dump_gateway(g, rel) for g in cfg.gateways]
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(yaml.safe_dump(document, sort_keys=False, default_flow_style=None), encoding="utf-8")
    partial.replace(path)


def _dump_limits(limits: LimitsConfig, keys: tuple[str, ...]) -> dict[str, Any]:
    """``{"limits": {...}}`` with the keys that differ from the defaults, or nothing when none does."""
    default = LimitsConfig()
    changed = {key: getattr(limits, key) for key in keys if getattr(limits, key) != getattr(default, key)}
    return {"limits": changed} if changed else {}


def _dump_metrics(metrics: MetricsConfig) -> dict[str, Any]:
    return {} if metrics.port is None else {"metrics": {"port": metrics.port, "host": metrics.host}}


def _dump_store(node: NodeConfig, base: Path) -> dict[str, Any]:
    value, spark = node.location().roster_value(base)
    return {"store": value} if spark is None else {"store": value, "spark": spark}


def _dump_itinerary(node: NodeConfig) -> dict[str, Any]:
    if node.kind != "telecom":
        return {}
    policy = node.policy.itinerary
    return {"itinerary": {"window_days": policy.window_days, "min_stay_hours": policy.min_stay_hours}}


def _dump_gateway(gateway: GatewayConfig, rel: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": gateway.id, "kind": GATEWAY_KIND, "carrier": gateway.carrier}
    entry["cert"] = rel(gateway.cert)
    if gateway.key is not None:
        entry["key"] = rel(gateway.key)
    return entry


def _dump_coordinator(coordinator: CoordinatorConfig, rel: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": coordinator.id, "role": coordinator.role}
    if coordinator.jurisdiction is not None:
        entry["jurisdiction"] = coordinator.jurisdiction
    entry["cert"] = rel(coordinator.cert)
    if coordinator.key is not None:
        entry["key"] = rel(coordinator.key)
    return entry


class _Reader:
    """Validates one roster document; every error names the file and the key path."""

    def __init__(self, path: Path) -> None:
        self.file = path
        self.base = path.absolute().parent

    def fail(self, key: str, problem: str, fix: str) -> NoReturn:
        raise ConfigError(f"{self.file}: {key}: {problem}; {fix}")

    def section(
        self, value: object, key: str, required: tuple[str, ...], optional: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        where = key or "the top level"
        if not isinstance(value, dict):
            self.fail(where, f"expected a mapping, got {_shown(value)}", "see the format in federation/config.py")
        unknown = [k for k in value if k not in required and k not in optional]
        if unknown:
            self.fail(
                _join(key, str(unknown[0])),
                "unknown key",
                f"remove it or fix its spelling (keys here: {', '.join(required + optional)})",
            )
        missing = [k for k in required if k not in value]
        if missing:
            self.fail(_join(key, missing[0]), "missing", f"add {missing[0]} under {where}")
        return value

    def text(self, value: object, key: str) -> str:
        if not isinstance(value, str) or not value.strip():
            self.fail(key, f"expected a non-empty string, got {_shown(value)}", "write a value")
        return value

    def member_id(self, value: object, key: str) -> str:
        if not isinstance(value, str) or not is_node_id(value):
            self.fail(
                key,
                f"{_shown(value)} is not a valid id",
                "use lowercase letters, digits and inner hyphens, like telecom-a (it is the certificate's SAN)",
            )
        return value

    def integer(self, value: object, key: str, *, minimum: int = 1) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.fail(key, f"expected a whole number >= {minimum}, got {_shown(value)}", "fix the number")
        return value

    def trip_bound(self, value: object, key: str) -> int:
        bound = self.integer(value, key)
        if bound > MAX_TRIPS_PER_DAY_LIMIT:
            self.fail(key, f"{bound} exceeds the limit of {MAX_TRIPS_PER_DAY_LIMIT} trips per person-day", "lower it")
        return bound

    def positive_number(self, value: object, key: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < float("inf"):
            self.fail(key, f"expected a positive number, got {_shown(value)}", "fix the number")
        return float(value)

    def choice(self, value: object, key: str, choices: tuple[str, ...]) -> str:
        if value not in choices:
            self.fail(key, f"{_shown(value)} is not one of {', '.join(choices)}", "use one of those")
        assert isinstance(value, str)
        return value

    def strings(self, value: object, key: str) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            self.fail(key, f"expected a list of strings, got {_shown(value)}", "write a list like [a, b]")
        if len(set(value)) != len(value):
            self.fail(key, "lists a value twice", "remove the duplicate")
        return value

    def date(self, value: object, key: str) -> datetime.date:
        # YAML reads an unquoted 2020-01-01 as a date already; a quoted one arrives as a string.
        if isinstance(value, datetime.date) and not isinstance(value, datetime.datetime):
            return value
        if isinstance(value, str):
            try:
                return datetime.date.fromisoformat(value)
            except ValueError:
                pass
        self.fail(key, f"{_shown(value)} is not a date", 'write an ISO date like "2020-01-01"')

    def address(self, value: object, key: str) -> str:
        match = _ADDRESS.fullmatch(value) if isinstance(value, str) else None
        if match is None or not 1 <= int(match["port"]) <= 65535:
            self.fail(key, f"{_shown(value)} is not host:port", "write it like 127.0.0.1:7401 (port 1-65535)")
        assert isinstance(value, str)
        return value

    def path(self, value: object, key: str, *, must_exist: bool = False) -> Path:
        text = self.text(value, key)
        resolved = Path(os.path.normpath(self.base / Path(text).expanduser()))
        if must_exist and not resolved.is_file():
            self.fail(
                key,
                f"{resolved} does not exist",
                f"fix the path (relative to {self.base}) or generate the PKI (fedbroker scenario generate)",
            )
        return resolved

    def federation(self, document: object) -> FederationConfig:
        top = self.section(
            document,
            "",
            ("version", "name", "domain", "data", "pki", "broker", "nodes", "coordinators"),
            ("gateways",),
        )
        if isinstance(top["version"], bool) or top["version"] != FORMAT_VERSION:
            self.fail(
                "version",
                f"{_shown(top['version'])} is not supported",
                f"this fedbroker reads version {FORMAT_VERSION}",
            )
        domain = self.domain(top["domain"])
        data = self.section(top["data"], "data", ("start", "end"))
        start, end = self.date(data["start"], "data.start"), self.date(data["end"], "data.end")
        if start > end:
            self.fail("data.end", f"{end} is before data.start {start}", "swap or fix the dates")
        pki = self.section(top["pki"], "pki", ("ca",), ("crl",))
        broker = self.broker(top["broker"])
        if not isinstance(top["nodes"], list) or not top["nodes"]:
            self.fail("nodes", "expected a non-empty list of agency nodes", "list at least one node")
        if not isinstance(top["coordinators"], list) or not top["coordinators"]:
            self.fail("coordinators", "expected a non-empty list", "list at least one coordinator")
        coordinators = tuple(
            self.coordinator(entry, f"coordinators[{i}]", domain) for i, entry in enumerate(top["coordinators"])
        )
        coordinator_ids = tuple(c.id for c in coordinators)
        nodes = tuple(self.node(entry, f"nodes[{i}]", coordinator_ids) for i, entry in enumerate(top["nodes"]))
        gateways_list = top.get("gateways", [])
        if not isinstance(gateways_list, list):
            self.fail("gateways", f"expected a list, got {_shown(gateways_list)}", "list the carriers' SMS gateways")
        carriers = tuple(node.id for node in nodes if node.kind == "telecom")
        gateways = tuple(self.gateway(entry, f"gateways[{i}]", carriers) for i, entry in enumerate(gateways_list))
        self.unique(broker, nodes, coordinators, gateways)
        return FederationConfig(
            path=self.file.absolute(),
            version=FORMAT_VERSION,
            name=self.text(top["name"], "name"),
            domain=domain,
            data_start=start,
            data_end=end,
            ca=self.path(pki["ca"], "pki.ca", must_exist=True),
            crl=None if pki.get("crl") is None else self.path(pki["crl"], "pki.crl", must_exist=True),
            broker=broker,
            nodes=nodes,
            coordinators=coordinators,
            gateways=gateways,
        )

    def domain(self, value: object) -> DomainConfig:
        domain = self.section(value, "domain", ("provinces", "registry_hash"))
        registry_hash = domain["registry_hash"]
        if not isinstance(registry_hash, str) or _HEX64.fullmatch(registry_hash) is None:
            self.fail(
                "domain.registry_hash",
                f"{_shown(registry_hash)} is not a sha256 hex digest",
                "write the 64 lowercase hex digits of the domain registry's hash",
            )
        provinces = domain["provinces"]
        if provinces == "all":
            return DomainConfig(provinces=None, registry_hash=registry_hash)
        if not isinstance(provinces, list) or not provinces:
            self.fail(
                "domain.provinces", f'expected a list or "all", got {_shown(provinces)}', 'write e.g. [42, 43] or "all"'
            )
        for i, code in enumerate(provinces):
            if isinstance(code, bool) or not isinstance(code, int) or not 10 <= code <= 99:
                self.fail(
                    f"domain.provinces[{i}]", f"{_shown(code)} is not a two-digit province code", "e.g. 42 for Hubei"
                )
        if len(set(provinces)) != len(provinces):
            self.fail("domain.provinces", "lists a province twice", "remove the duplicate")
        return DomainConfig(provinces=tuple(sorted(provinces)), registry_hash=registry_hash)

    def broker(self, value: object) -> BrokerConfig:
        broker = self.section(
            value,
            "broker",
            ("id", "address", "cert", "key", "audit_log"),
            ("round_timeout_s", "stage_timeout_s", "disclosure", "limits", "metrics", "privacy"),
        )
        disclosure = self.section(broker.get("disclosure", {}), "broker.disclosure", (), ("mobility_k", "cases_k"))
        privacy = self.section(broker.get("privacy", {}), "broker.privacy", (), ("rho_per_round",))
        return BrokerConfig(
            id=self.member_id(broker["id"], "broker.id"),
            address=self.address(broker["address"], "broker.address"),
            cert=self.path(broker["cert"], "broker.cert", must_exist=True),
            key=self.path(broker["key"], "broker.key"),
            audit_log=self.path(broker["audit_log"], "broker.audit_log"),
            round_timeout_s=self.positive_number(
                broker.get("round_timeout_s", DEFAULT_ROUND_TIMEOUT_S), "broker.round_timeout_s"
            ),
            stage_timeout_s=self.positive_number(
                broker.get("stage_timeout_s", DEFAULT_STAGE_TIMEOUT_S), "broker.stage_timeout_s"
            ),
            mobility_k=self.integer(disclosure.get("mobility_k", DEFAULT_MOBILITY_K), "broker.disclosure.mobility_k"),
            cases_k=self.integer(disclosure.get("cases_k", DEFAULT_CASES_K), "broker.disclosure.cases_k"),
            limits=self.limits(broker.get("limits", {}), "broker.limits", ("max_queries_per_coordinator",)),
            metrics=self.metrics(broker.get("metrics", {}), "broker.metrics"),
            rho_per_round=self.positive_number(
                privacy.get("rho_per_round", DEFAULT_RHO_PER_ROUND), "broker.privacy.rho_per_round"
            ),
        )

    def node(self, value: object, key: str, coordinator_ids: tuple[str, ...]) -> NodeConfig:
        node = self.section(
            value,
            key,
            ("id", "kind", "address", "store", "cert", "key", "audit_log", "policy"),
            ("limits", "metrics", "spark"),
        )
        node_id = self.member_id(node["id"], f"{key}.id")
        kind = self.choice(node["kind"], f"{key}.kind", NODE_KINDS)
        if kind != "telecom" and isinstance(node["policy"], dict) and "itinerary" in node["policy"]:
            self.fail(f"{key}.policy.itinerary", f"a {kind} node has no itinerary service", "remove the key")
        location = parse_store(
            self.text(node["store"], f"{key}.store"),
            base=self.base,
            where=f"{self.file}: {key}.store",
            spark=node.get("spark"),
        )
        audit_log = self.path(node["audit_log"], f"{key}.audit_log")
        if location.engine == "duckdb":
            assert location.path is not None
            store, store_location = location.path, None
        else:
            store, store_location = audit_log.with_name(f"{node_id}.{location.engine}"), location
        return NodeConfig(
            id=node_id,
            kind=kind,
            address=self.address(node["address"], f"{key}.address"),
            store=store,
            store_location=store_location,
            cert=self.path(node["cert"], f"{key}.cert", must_exist=True),
            key=self.path(node["key"], f"{key}.key"),
            audit_log=audit_log,
            policy=self.policy(node["policy"], f"{key}.policy", coordinator_ids),
            limits=self.limits(node.get("limits", {}), f"{key}.limits", ("max_live_rounds",)),
            metrics=self.metrics(node.get("metrics", {}), f"{key}.metrics"),
        )

    def metrics(self, value: object, key: str) -> MetricsConfig:
        section = self.section(value, key, (), ("port", "host"))
        port = section.get("port")
        if port is not None:
            port = self.integer(port, f"{key}.port", minimum=0)
            if port > 65535:
                self.fail(f"{key}.port", f"{port} is not a port", "use 1-65535 (0 picks a free one)")
        host = self.text(section.get("host", MetricsConfig.host), f"{key}.host")
        return MetricsConfig(port=port, host=host)

    def limits(self, value: object, key: str, role_keys: tuple[str, ...]) -> LimitsConfig:
        allowed = (*role_keys, "max_concurrent_rpcs")
        section = self.section(value, key, (), allowed)
        default = LimitsConfig()
        numbers = {name: self.integer(section.get(name, getattr(default, name)), f"{key}.{name}") for name in allowed}
        return dataclasses.replace(default, **numbers)

    def policy(self, value: object, key: str, coordinator_ids: tuple[str, ...]) -> PolicyConfig:
        policy = self.section(
            value,
            key,
            ("allowed_queries", "max_window_days", "min_contributors"),
            ("allowed_coordinators", "allowed_roles", "itinerary", "privacy"),
        )
        queries = self.strings(policy["allowed_queries"], f"{key}.allowed_queries")
        for i, query in enumerate(queries):
            if _QUERY_NAME.fullmatch(query) is None:
                self.fail(f"{key}.allowed_queries[{i}]", f"{query!r} is not a query name", "e.g. importation-risk")
        allowed_coordinators = self.strings(policy.get("allowed_coordinators", []), f"{key}.allowed_coordinators")
        for i, coordinator_id in enumerate(allowed_coordinators):
            if coordinator_id not in coordinator_ids:
                self.fail(
                    f"{key}.allowed_coordinators[{i}]",
                    f"{coordinator_id!r} is not a coordinator in the roster",
                    f"use one of {', '.join(coordinator_ids)}, or [] for any",
                )
        roles = self.strings(policy.get("allowed_roles", list(COORDINATOR_ROLES)), f"{key}.allowed_roles")
        for i, role in enumerate(roles):
            self.choice(role, f"{key}.allowed_roles[{i}]", COORDINATOR_ROLES)
        return PolicyConfig(
            allowed_queries=tuple(queries),
            max_window_days=self.integer(policy["max_window_days"], f"{key}.max_window_days"),
            min_contributors=self.integer(policy["min_contributors"], f"{key}.min_contributors"),
            allowed_coordinators=tuple(allowed_coordinators),
            allowed_roles=tuple(roles),
            privacy=self.privacy(policy.get("privacy", {}), f"{key}.privacy"),
            itinerary=self.itinerary(policy.get("itinerary", {}), f"{key}.itinerary"),
        )

    def itinerary(self, value: object, key: str) -> ItineraryPolicy:
        entry = self.section(value, key, (), ("window_days", "min_stay_hours"))
        window_days = self.integer(entry.get("window_days", DEFAULT_ITINERARY_WINDOW_DAYS), f"{key}.window_days")
        if window_days > MAX_ITINERARY_WINDOW_DAYS:
            self.fail(
                f"{key}.window_days",
                f"{window_days} days is longer than the service's limit of {MAX_ITINERARY_WINDOW_DAYS}",
                "use 14 (or 7, as the real service later did)",
            )
        min_stay = self.positive_number(
            entry.get("min_stay_hours", DEFAULT_ITINERARY_MIN_STAY_HOURS), f"{key}.min_stay_hours"
        )
        return ItineraryPolicy(window_days=window_days, min_stay_hours=min_stay)

    def gateway(self, value: object, key: str, carriers: tuple[str, ...]) -> GatewayConfig:
        entry = self.section(value, key, ("id", "kind", "carrier", "cert"), ("key",))
        self.choice(entry["kind"], f"{key}.kind", (GATEWAY_KIND,))
        if entry["carrier"] not in carriers:
            self.fail(
                f"{key}.carrier",
                f"{_shown(entry['carrier'])} is not a telecom node of the roster",
                f"use one of {', '.join(carriers) or '(no telecom nodes)'}",
            )
        return GatewayConfig(
            id=self.member_id(entry["id"], f"{key}.id"),
            carrier=str(entry["carrier"]),
            cert=self.path(entry["cert"], f"{key}.cert", must_exist=True),
            key=None if entry.get("key") is None else self.path(entry["key"], f"{key}.key"),
        )

    def privacy(self, value: object, key: str) -> PrivacyPolicy:
        privacy = self.section(value, key, (), ("noise", "rho_per_day", "max_trips_per_day", "one_survivor_set"))
        one_set = privacy.get("one_survivor_set", True)
        if not isinstance(one_set, bool):
            self.fail(
                f"{key}.one_survivor_set", f"expected true or false, got {_shown(one_set)}", "write true or false"
            )
        return PrivacyPolicy(
            noise=self.choice(privacy.get("noise", "discrete-gaussian"), f"{key}.noise", NOISE_MECHANISMS),
            rho_per_day=self.positive_number(privacy.get("rho_per_day", DEFAULT_RHO_PER_DAY), f"{key}.rho_per_day"),
            max_trips_per_day=self.trip_bound(
                privacy.get("max_trips_per_day", DEFAULT_MAX_TRIPS_PER_DAY), f"{key}.max_trips_per_day"
            ),
            one_survivor_set=one_set,
        )

    def coordinator(self, value: object, key: str, domain: DomainConfig) -> CoordinatorConfig:
        entry = self.section(value, key, ("id", "role", "cert"), ("jurisdiction", "key"))
        role = self.choice(entry["role"], f"{key}.role", COORDINATOR_ROLES)
        jurisdiction = entry.get("jurisdiction")
        if role == "national" and jurisdiction is not None:
            self.fail(f"{key}.jurisdiction", "a national coordinator has no jurisdiction", "remove the key")
        if role == "provincial":
            if isinstance(jurisdiction, bool) or not isinstance(jurisdiction, int) or not 10 <= jurisdiction <= 99:
                self.fail(
                    f"{key}.jurisdiction",
                    f"a provincial coordinator needs a two-digit province code, got {_shown(jurisdiction)}",
                    "e.g. jurisdiction: 42 for Hubei",
                )
            if domain.provinces is not None and jurisdiction not in domain.provinces:
                self.fail(
                    f"{key}.jurisdiction",
                    f"province {jurisdiction} is not in domain.provinces",
                    "add it to domain.provinces or fix the code",
                )
        return CoordinatorConfig(
            id=self.member_id(entry["id"], f"{key}.id"),
            role=role,
            jurisdiction=jurisdiction,
            cert=self.path(entry["cert"], f"{key}.cert", must_exist=True),
            key=None if entry.get("key") is None else self.path(entry["key"], f"{key}.key"),
        )

    def unique(
        self,
        broker: BrokerConfig,
        nodes: tuple[NodeConfig, ...],
        coordinators: tuple[CoordinatorConfig, ...],
        gateways: tuple[GatewayConfig, ...] = (),
    ) -> None:
        ids: dict[str, str] = {broker.id: "broker.id"}
        addresses: dict[str, str] = {broker.address: "broker"}
        members: list[tuple[str, str, str | None]] = [(f"nodes[{i}]", n.id, n.address) for i, n in enumerate(nodes)]
        members += [(f"coordinators[{i}]", c.id, None) for i, c in enumerate(coordinators)]
        members += [(f"gateways[{i}]", g.id, None) for i, g in enumerate(gateways)]
        for key, member_id, address in members:
            if member_id in ids:
                self.fail(f"{key}.id", f"{member_id!r} is already the id at {ids[member_id]}", "ids must be unique")
            ids[member_id] = f"{key}.id"
            if address is not None:
                if address in addresses:
                    self.fail(
                        f"{key}.address", f"{address} is also the address of {addresses[address]}", "use a free port"
                    )
                addresses[address] = member_id


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
