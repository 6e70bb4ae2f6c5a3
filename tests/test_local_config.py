"""A host's local file (`serve --local`) overrides only its own node's entry of the shared roster."""

from __future__ import annotations

from pathlib import Path

import pytest

from federation.config import apply_local, load_federation
from federation.errors import ConfigError


def test_local_file_overrides_its_own_node_only(small_scenario: Path, tmp_path: Path) -> None:
    base = load_federation(small_scenario)
    local = tmp_path / "telecom-a.local.yaml"
    local.write_text(
        "store: stores/mine.duckdb\n"
        "policy: {allowed_queries: [population], max_window_days: 7, min_contributors: 3}\n"
        "limits: {max_live_rounds: 4}\n"
        "metrics: {port: 9401}\n"
    )
    config = apply_local(base, "telecom-a", local)
    node = config.node("telecom-a")
    assert node.store == tmp_path / "stores" / "mine.duckdb"  # relative to the local file
    assert node.policy.allowed_queries == ("population",) and node.policy.max_window_days == 7
    assert node.limits.max_live_rounds == 4 and node.metrics.port == 9401 and node.metrics.host == "127.0.0.1"
    assert node.key == base.node("telecom-a").key
    assert config.node("telecom-b") == base.node("telecom-b")

    broker_local = tmp_path / "broker.local.yaml"
    broker_local.write_text("limits: {max_queries_per_coordinator: 2}\n")
    assert apply_local(base, base.broker.id, broker_local).broker.limits.max_queries_per_coordinator == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("stroe: x\n", "stroe: unknown key"),
        (
            "policy: {allowed_queries: [population], max_window_days: 0, min_contributors: 3}\n",
            "policy.max_window_days",
        ),
        ("limits: {max_queries_per_coordinator: 2}\n", "limits.max_queries_per_coordinator: unknown key"),
        ("metrics: {port: 70000}\n", "metrics.port"),
    ],
)
def test_local_file_errors_name_the_file_and_key(small_scenario: Path, tmp_path: Path, text: str, message: str) -> None:
    local = tmp_path / "local.yaml"
    local.write_text(text)
    with pytest.raises(ConfigError, match=message) as caught:
        apply_local(load_federation(small_scenario), "telecom-a", local)
    assert str(local) in caught.value.message
