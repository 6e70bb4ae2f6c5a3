"""The deployment guide (docs/deploy.md), followed with every node on its own "host": its own Linux network
namespace with its own private address on a veth link to a switch namespace, its own directory holding the
shared roster files plus only its own key (and, for an agency, its own local file naming its store).

The CA is made with `fedbroker pki init`, each member's key and CSR with `pki request` in its own host
directory, each certificate with `pki sign`. The nodes start with `fedbroker serve ... --local`, the
coordinator runs `fedbroker status` and `fedbroker query` from its own namespace, and the answer is checked
against the oracle over the raw stores. Traffic flows only between the namespaces this test creates. The test
skips, saying why, where namespaces cannot be created (not root, no iproute2, no CAP_SYS_ADMIN).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from federation.config import dump_federation, load_federation
from federation.registry import load_registry
from tests import oracle
from tests.federation_fixtures import oracle_sum
from tests.waiting import wait_for

pytestmark = pytest.mark.slow
TELECOM = ("telecom-a", "telecom-b", "telecom-c")
COORDINATOR = "nhc-national"
SUBNET = "10.231.0"  # private, assigned inside the test's namespaces only
BROKER_PORT, ADAPTER_PORT = 7400, 7401


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=60)


def _why_no_namespaces() -> str | None:
    if os.geteuid() != 0:
        return "creating network namespaces needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN)"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    probe = f"fbprobe{secrets.token_hex(3)}"
    made = _ip("netns", "add", probe)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()}"
    _ip("netns", "del", probe)
    return None


class Hosts:
    """One namespace per member plus a switch namespace with a bridge; each member gets one address."""

    def __init__(self, members: list[str]) -> None:
        tag = secrets.token_hex(2)
        self.switch = f"fb{tag}sw"
        self.namespaces = {member: f"fb{tag}h{i}" for i, member in enumerate(members)}
        self.addresses = {member: f"{SUBNET}.{10 + i}" for i, member in enumerate(members)}
        self._made: list[str] = []
        try:
            self._add(self.switch)
            self._run("-n", self.switch, "link", "add", "br0", "type", "bridge")
            self._run("-n", self.switch, "link", "set", "br0", "up")
            for i, member in enumerate(members):
                ns, host_end, switch_end = self.namespaces[member], f"fb{tag}a{i}", f"fb{tag}b{i}"
                self._add(ns)
                # Both ends are created directly inside the namespaces: nothing appears in the host's own.
                self._run(
                    "link",
                    "add",
                    host_end,
                    "netns",
                    ns,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    switch_end,
                    "netns",
                    self.switch,
                )
                self._run("-n", ns, "addr", "add", f"{self.addresses[member]}/24", "dev", host_end)
                self._run("-n", ns, "link", "set", host_end, "up")
                self._run("-n", ns, "link", "set", "lo", "up")
                self._run("-n", self.switch, "link", "set", switch_end, "master", "br0")
                self._run("-n", self.switch, "link", "set", switch_end, "up")
        except BaseException:
            self.remove()
            raise

    def _add(self, ns: str) -> None:
        self._run("netns", "add", ns)
        self._made.append(ns)

    @staticmethod
    def _run(*args: str) -> None:
        done = _ip(*args)
        if done.returncode != 0:
            raise AssertionError(f"ip {' '.join(args)}: {done.stderr.strip()}")

    def exec(self, member: str, args: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.namespaces[member], *args]

    def remove(self) -> None:
        for ns in reversed(self._made):
            _ip("netns", "del", ns)
        self._made.clear()


def fedbroker(*args: str) -> list[str]:
    return [sys.executable, "-m", "fedbroker", *args]


def _cli(*args: str, cwd: Path | None = None) -> None:
    done = subprocess.run(fedbroker(*args), capture_output=True, text=True, timeout=120, cwd=cwd)
    assert done.returncode == 0, done.stderr


@dataclasses.dataclass
class Deployment:
    hosts: Hosts
    dirs: dict[str, Path]
    scenario: Path
    broker_id: str


@pytest.fixture(scope="module")
def deployment(small_scenario: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    reason = _why_no_namespaces()
    if reason is not None:
        pytest.skip(f"no network namespaces here: {reason}")
    base = load_federation(small_scenario)
    work = tmp_path_factory.mktemp("deploy")
    broker_id = base.broker.id
    members = [broker_id, *TELECOM, COORDINATOR]

    # docs/deploy.md §2: the CA, and every member's key made in its own host directory.
    ca = work / "ca"
    _cli("pki", "init", "--dir", str(ca), "--name", "deployment test CA")
    shared = work / "shared"
    (shared / "pki").mkdir(parents=True)
    dirs = {member: work / "hosts" / member for member in members}
    for member in members:
        _cli("pki", "request", member, "--dir", str(dirs[member] / "keys"))
        _cli(
            "pki",
            "sign",
            str(dirs[member] / "keys" / f"{member}.csr"),
            "--ca-dir",
            str(ca),
            "--out",
            str(shared / "pki" / f"{member}.pem"),
        )
    shutil.copy(ca / "ca.pem", shared / "pki" / "ca.pem")
    shutil.copy(ca / "crl.pem", shared / "pki" / "crl.pem")

    # §1: one roster, identical on every host; keys, stores and audit logs are per host (relative paths).
    hosts = Hosts(members)

    def cert(member_id: str) -> Path:
        return shared / "pki" / f"{member_id}.pem"

    def key(member_id: str) -> Path:  # exists only in the member's own host directory
        return shared / "keys" / f"{member_id}.key"

    def audit(member_id: str) -> Path:
        return shared / "audit" / f"{member_id}.jsonl"

    nodes = tuple(
        dataclasses.replace(
            base.node(n),
            address=f"{hosts.addresses[n]}:{ADAPTER_PORT}",
            store=shared / "stores" / f"{n}.duckdb",  # each agency's local file names its real store
            cert=cert(n),
            key=key(n),
            audit_log=audit(n),
        )
        for n in TELECOM
    )
    coordinator = dataclasses.replace(
        base.coordinator(COORDINATOR),
        cert=shared / "pki" / f"{COORDINATOR}.pem",
        key=shared / "keys" / f"{COORDINATOR}.key",
    )
    roster = dataclasses.replace(
        base,
        ca=shared / "pki" / "ca.pem",
        crl=shared / "pki" / "crl.pem",
        broker=dataclasses.replace(
            base.broker,
            address=f"{hosts.addresses[broker_id]}:{BROKER_PORT}",
            cert=cert(broker_id),
            key=key(broker_id),
            audit_log=audit(broker_id),
        ),
        nodes=nodes,
        coordinators=(coordinator,),
        gateways=(),  # no SMS gateway in this deployment: the itinerary service then has no caller
    )
    dump_federation(roster, shared / "federation.yaml")
    for member in members:
        shutil.copytree(shared, dirs[member], dirs_exist_ok=True)
    # §1: an agency's local file names its own store (here: the scenario's store, read-only).
    for node_id in TELECOM:
        local = {"store": str(base.node(node_id).store)}
        (dirs[node_id] / "local.yaml").write_text(yaml.safe_dump(local))

    processes: list[subprocess.Popen[bytes]] = []
    try:
        # §3: start every node on its own host; adapters first, then the broker.
        for member in [*TELECOM, broker_id]:
            role = ["adapter", "--id", member, "--local", "local.yaml"] if member != broker_id else ["broker"]
            ready = dirs[member] / "ready"
            args = fedbroker("serve", *role, "--config", "federation.yaml", "--ready-file", str(ready))
            args += ["--exit-with-parent", str(os.getpid())]
            with (dirs[member] / "node.log").open("wb") as log:
                processes.append(
                    subprocess.Popen(hosts.exec(member, args), cwd=dirs[member], stdout=log, stderr=subprocess.STDOUT)
                )
            wait_for(functools.partial(_ready_or_exited, ready, processes[-1]))
            assert processes[-1].poll() is None, (dirs[member] / "node.log").read_text()
        yield Deployment(hosts=hosts, dirs=dirs, scenario=small_scenario, broker_id=broker_id)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        hosts.remove()


def _from_coordinator(deployment: Deployment, *args: str) -> subprocess.CompletedProcess[str]:
    home = deployment.dirs[COORDINATOR]
    command = deployment.hosts.exec(COORDINATOR, fedbroker(*args))
    return subprocess.run(command, cwd=home, capture_output=True, text=True, timeout=300)


def test_each_host_holds_only_its_own_key(deployment: Deployment) -> None:
    for member, home in deployment.dirs.items():
        keys = sorted(p.name for p in (home / "keys").glob("*.key"))
        assert keys == [f"{member}.key"]
        assert (home / "federation.yaml").read_bytes() == (
            deployment.dirs[COORDINATOR] / "federation.yaml"
        ).read_bytes()


def _ready_or_exited(ready: Path, process: subprocess.Popen[bytes]) -> bool:
    return ready.exists() or process.poll() is not None


def test_status_from_the_coordinators_host(deployment: Deployment) -> None:
    def serving() -> list[dict[str, object]] | None:
        done = _from_coordinator(deployment, "status", "--federation", "federation.yaml", "--format", "json")
        reports = json.loads(done.stdout) if done.stdout.strip() else []
        return reports if done.returncode == 0 and reports and reports[0]["kinds"] else None

    reports: list[dict[str, Any]] = wait_for(serving)
    assert {r["node_id"] for r in reports} == {deployment.broker_id, *TELECOM}
    assert all(r["health"] == "SERVING" for r in reports)
    addresses = {r["address"].rsplit(":", 1)[0] for r in reports}
    assert all(a.startswith(f"{SUBNET}.") for a in addresses)


def test_a_query_across_the_namespaces_matches_the_oracle(deployment: Deployment) -> None:
    config = load_federation(deployment.scenario)
    day = config.data_end
    done = _from_coordinator(
        deployment,
        "query",
        "population",
        "--federation",
        "federation.yaml",
        "--as",
        COORDINATOR,
        "--start",
        day.isoformat(),
        "--end",
        day.isoformat(),
        "--format",
        "json",
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["contributors"]["presence"]["contributed"] == list(TELECOM)
    codes = load_registry(config.domain.provinces).codes
    expected = oracle_sum(config, "telecom", lambda con: oracle.oracle_presence(con, codes, day, day))
    col = {c: i for i, c in enumerate(answer["columns"])}
    got = {row[col["district"]]: row[col["count"]] for row in answer["rows"] if row[col["count"]]}
    k = config.broker.mobility_k
    want = {int(code): int(v) for code, v in zip(codes, expected, strict=True) if v >= k}
    assert got == want and want
