"""Session fixtures: one small generated scenario (Hubei, a few thousand persons) shared by integration tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.federation_fixtures import EXACT, SMALL_DAYS, SMALL_PROVINCES, SMALL_SEED, SMALL_SUBSCRIBERS, roster_variant

# Test stores are tiny: one shuffle partition saves Spark most of its per-statement job set-up.
os.environ.setdefault("FEDBROKER_SPARK_SHUFFLE_PARTITIONS", "1")


@pytest.fixture(scope="session")
def small_scenario(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """federation.yaml of a small reproducible scenario with exact sums (``noise: none`` on every agency, so
    oracle tests compare bit for bit); tests must not modify its stores."""
    from fedbroker.scenario import generate_scenario

    out = tmp_path_factory.mktemp("scenario") / "hubei"
    generate_scenario(
        out, provinces=list(SMALL_PROVINCES), subscribers=SMALL_SUBSCRIBERS, days=SMALL_DAYS, seed=SMALL_SEED
    )
    return roster_variant(out / "federation.yaml", out / "federation.yaml", privacy=EXACT)
