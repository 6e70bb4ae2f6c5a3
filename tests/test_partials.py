"""Daily partials: on every engine, a window answered from partials equals the raw definition and the oracle;
any change to the raw data they cover sends the answer back to the raw tables until the next refresh."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from adapters import partials
from adapters.aggregates import AggregateRequest, compute_aggregate
from adapters.backends import Store
from adapters.backends.duckdb_store import DuckDBStore
from fedbroker.cli import main
from tests import oracle
from tests.backends import ENGINES, as_backend
from tests.test_aggregates import DAY0, DOMAIN, build_random_stores

B, D = 110102, 420103
WINDOWS = [(DAY0, DAY0 + dt.timedelta(days=9)), (DAY0 + dt.timedelta(days=2), DAY0 + dt.timedelta(days=6))]


@pytest.fixture(scope="module", params=ENGINES)
def stores(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, ...]]:
    path = tmp_path_factory.mktemp("partials")
    telecom, health, transport = build_random_stores(path)
    backends = tuple(
        as_backend(con, kind, request.param, path)
        for con, kind in ((telecom, "telecom"), (health, "health"), (transport, "transport"))
    )
    yield backends
    for store in backends:
        store.close()


def _requests(start: dt.date, end: dt.date) -> list[AggregateRequest]:
    sub = np.array([B, D], dtype=np.int32)
    return [
        AggregateRequest("telecom.presence", DOMAIN, start, end, {}),
        AggregateRequest("telecom.trips", DOMAIN, start, end, {}),
        AggregateRequest("telecom.trips", sub, start, end, {}),
        AggregateRequest("health.cases", DOMAIN, start, end, {}),
        AggregateRequest("transport.trips", DOMAIN, start, end, {"mode": "all"}),
        AggregateRequest("transport.trips", DOMAIN, start, end, {"mode": "rail"}),
    ]


def _oracle(store: Store, request: AggregateRequest) -> np.ndarray:
    start, end = request.start, request.end
    assert start is not None and end is not None
    if request.name == "telecom.presence":
        return oracle.oracle_presence(store, request.domain, start, end)
    if request.name == "telecom.trips":
        return oracle.oracle_trips(store, request.domain, start, end)
    if request.name == "health.cases":
        return oracle.oracle_cases(store, request.domain, start, end)
    return oracle.oracle_transport_trips(store, request.domain, start, end, request.params["mode"])


def test_partials_equal_raw_and_oracle(stores: tuple[Store, ...]) -> None:
    telecom, health, transport = stores
    by_kind = {"telecom": telecom, "health": health, "transport": transport}
    for kind, store in by_kind.items():
        assert not any(partials.fresh(store, name) for name in partials.PARTIALS)
        built = partials.refresh(store, kind)
        assert built and all(rows > 0 for rows in built.values()), built
    # Spark pays about a second of job set-up per statement: one window there, both elsewhere.
    for start, end in WINDOWS[1:] if telecom.dialect == "spark" else WINDOWS:
        for request in _requests(start, end):
            store = by_kind[request.name.split(".")[0]]
            assert partials.fresh(store, request.name), request.name
            from_partials = partials.answer_from_partials(
                store, request.name, request.domain, start, end, request.params
            )
            raw = compute_aggregate(store, request, use_partials=False)
            assert np.array_equal(from_partials, raw), (request.name, dict(request.params), start, end)
            assert np.array_equal(compute_aggregate(store, request), raw)
            assert np.array_equal(raw, _oracle(store, request)), request.name
            assert raw.sum() > 0, request.name
    # No partials for window-distinct or per-request aggregates: roamers keep raw scans.
    assert not partials.fresh(telecom, "telecom.roamers") and not partials.fresh(telecom, "telecom.residents")


def test_changed_raw_data_falls_back_to_raw(tmp_path: Path) -> None:
    telecom, _, _ = build_random_stores(tmp_path)
    store = DuckDBStore.wrap(telecom)
    partials.refresh(store, "telecom")
    start, end = WINDOWS[1]
    trips = AggregateRequest("telecom.trips", DOMAIN, start, end, {})
    assert partials.fresh(store, "telecom.trips")
    # A cell moved to another district: same row count, different content.
    telecom.execute(
        "UPDATE cells SET district = CASE district WHEN 110101 THEN 110102 ELSE 110101 END "
        "WHERE cell_id = (SELECT min(cell_id) FROM cells)"
    )
    assert not partials.fresh(store, "telecom.trips") and not partials.fresh(store, "telecom.presence")
    assert np.array_equal(compute_aggregate(store, trips), oracle.oracle_trips(telecom, DOMAIN, start, end))
    partials.refresh(store, "telecom")
    assert partials.fresh(store, "telecom.trips")
    # An appended event inside the window.
    telecom.execute("INSERT INTO signalling VALUES (1, TIMESTAMP '2024-03-04 12:00:00', 3)")
    assert not partials.fresh(store, "telecom.trips")
    assert np.array_equal(compute_aggregate(store, trips), oracle.oracle_trips(telecom, DOMAIN, start, end))


def test_store_refresh_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    telecom, health, _ = build_random_stores(tmp_path)
    telecom.close()
    health.close()
    assert main(["store", "refresh", str(tmp_path / "h.duckdb")]) == 0
    out = capsys.readouterr().out
    assert "partial_cases" in out and "health" in out
    assert main(["store", "refresh", str(tmp_path / "missing.duckdb")]) == 2
