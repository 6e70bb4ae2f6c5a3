"""The `fedbroker query` command against a running federation: json as docs/protocol.md §9 fixes it, csv, and errors
that name the problem with a non-zero exit."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fedbroker.harness import LocalFederation
from tests.federation_fixtures import own_federation, own_roster

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fed(small_scenario: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    with own_federation(small_scenario, tmp_path_factory.mktemp("run-cli")) as federation:
        yield federation


def fedbroker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fedbroker", *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_query_json_has_the_documented_shape(fed: LocalFederation) -> None:
    done = fedbroker(
        "query", "importation-risk", "--federation", str(fed.config.path), "--as", "nhc-national", "--format", "json"
    )
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert {"query", "columns", "rows", "suppressed", "contributors"} <= set(document)
    assert document["query"]["kind"] == "importation-risk"
    assert document["query"]["end"] == fed.config.data_end.isoformat()
    assert document["columns"][:2] == ["district", "name"]
    assert all(len(row) == len(document["columns"]) for row in document["rows"])
    assert document["contributors"]["confirmed"]["contributed"] == ["health-net-1", "health-net-2", "health-net-3"]
    assert "open" in done.stderr  # the progress display ran


def test_query_csv(fed: LocalFederation) -> None:
    done = fedbroker(
        "query",
        "cases",
        "--federation",
        str(fed.config.path),
        "--as",
        "nhc-national",
        "--format",
        "csv",
        "--start",
        fed.config.data_start.isoformat(),
    )
    assert done.returncode == 0, done.stderr
    rows = list(csv.reader(io.StringIO(done.stdout)))
    assert rows[0] == ["district", "name", "confirmed", "suspected", "close_contact"]
    assert len(rows) > 1


def test_query_error_is_one_clear_line(fed: LocalFederation) -> None:
    done = fedbroker(
        "query",
        "population",
        "--federation",
        str(fed.config.path),
        "--as",
        "nhc-national",
        "--start",
        "2020-01-10",
        "--end",
        "2020-01-05",
    )
    assert done.returncode == 4  # invalid query (federation/errors.py EXIT_CODES)
    assert "InvalidQuery" in done.stderr and "swap them" in done.stderr
    assert "Traceback" not in done.stderr


def test_up_runs_a_federation_until_interrupted(small_scenario: Path, tmp_path: Path) -> None:
    """`fedbroker up --ephemeral` serves every node, answers a query through the runtime roster it writes, and
    stops every node on Ctrl-C."""
    import signal

    roster = own_roster(small_scenario, tmp_path)
    runtime = tmp_path / "federation.runtime.yaml"
    up = subprocess.Popen(
        [sys.executable, "-m", "fedbroker", "up", "--federation", str(roster), "--ephemeral"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert up.stdout is not None
        banner = [up.stdout.readline() for _ in range(2)]
        assert "broker" in banner[0], banner
        assert runtime.exists()
        done = fedbroker(
            "query",
            "cases",
            "--federation",
            str(runtime),
            "--as",
            "nhc-national",
            "--format",
            "json",
            "--start",
            "2020-01-01",
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["contributors"]["cases"]["contributed"] == [
            "health-net-1",
            "health-net-2",
            "health-net-3",
        ]
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(timeout=30)
    # `up` waits for every node it started before it exits, so none may be left now. The nodes name it as
    # their parent on their command line.
    mark = f"--exit-with-parent\0{up.pid}\0"
    leftovers = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline_has(p, mark)]
    assert up.returncode == 0
    assert not leftovers, "nodes left running"


def _cmdline_has(proc: Path, text: str) -> bool:
    try:
        return text.encode() in (proc / "cmdline").read_bytes()
    except OSError:
        return False


def test_exit_code_says_what_went_wrong(fed: LocalFederation) -> None:
    """Each error group has its own exit code (federation/errors.py EXIT_CODES): a script tells them apart."""
    common = ("query", "cases", "--federation", str(fed.config.path), "--start", fed.config.data_start.isoformat())
    unavailable = fedbroker(*common, "--as", "nhc-national", "--broker", "127.0.0.1:9")
    assert unavailable.returncode == 6 and "NodeUnavailable" in unavailable.stderr, unavailable.stderr
    unknown = fedbroker(*common, "--as", "nobody")
    assert unknown.returncode == 3 and "ConfigError" in unknown.stderr, unknown.stderr
    assert fedbroker("query", "cases", "--federation").returncode == 2  # usage
    for done in (unavailable, unknown):
        assert "Traceback" not in done.stderr
