"""``python -m bench aggregation``: telecom OD trips from 5 M and 20 M signalling events, three ways.

Synthetic stores (:mod:`bench._synthetic_store`, national domain, 2,849 districts, one 14-day window that
holds every event) are generated once per size. Side by side, interleaved, each a median of the repetitions:

- the adapter's contribution path: :func:`adapters.aggregates.compute_aggregate` for ``telecom.trips`` (its
  SQL in DuckDB, then the scatter into the 8,116,801-cell uint64 vector);
- the bare SQL: the textbook statement (join cells, ``lag()`` over each subscriber's events ordered by
  ``(ts, cell_id)``, keep district changes from the same or the previous day, ``GROUP BY`` origin,
  destination), fetched as numpy;
- naive pandas: the tables already loaded as DataFrames (load time reported apart), then merge cells, sort by
  subscriber, ts, cell_id, ``shift``, filter (district change, previous event on the same or the previous day),
  ``groupby().size()``. pandas comes from the ``bench`` extra
  (``pip install -e '.[bench]'``) or any venv; without it, the pandas line says so.

Every way's OD counts are checked equal. DuckDB uses its default thread count (all cores); pandas one core.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt

from adapters.aggregates import AggregateRequest, compute_aggregate
from adapters.store import open_store
from bench._common import Samples, interleave, package_version, print_header, print_table, seconds
from bench._synthetic_store import WINDOW_DAYS, WINDOW_START, write_store
from federation.registry import load_registry

DEFAULT_EVENTS = (5_000_000, 20_000_000)
QUICK_EVENTS = (1_000_000,)

BARE_SQL = """
SELECT prev_district AS origin, district AS destination, count(*) AS trips
FROM (
    SELECT cells.district, s.ts,
           lag(cells.district) OVER (PARTITION BY s.subscriber_id ORDER BY s.ts, s.cell_id) AS prev_district,
           lag(s.ts) OVER (PARTITION BY s.subscriber_id ORDER BY s.ts, s.cell_id) AS prev_ts
    FROM signalling AS s JOIN cells USING (cell_id)
    WHERE s.ts < $end_excl
)
WHERE prev_district <> district AND prev_ts >= CAST(ts AS DATE) - INTERVAL 1 DAY
GROUP BY ALL
"""

Vector = npt.NDArray[np.uint64]


def _od_vector(codes: npt.NDArray[np.int32], origin: Any, destination: Any, trips: Any) -> Vector:
    """OD counts by district code → the aggregate's layout (index o_idx * n + d_idx)."""
    n = codes.shape[0]
    vector = np.zeros(n * n, dtype=np.uint64)
    positions = np.searchsorted(codes, np.asarray(origin)) * n + np.searchsorted(codes, np.asarray(destination))
    np.add.at(vector, positions, np.asarray(trips, dtype=np.uint64))
    return vector


def _bare_sql(con: duckdb.DuckDBPyConnection, end_excl: dt.datetime) -> dict[str, Any]:
    columns: dict[str, Any] = con.execute(BARE_SQL, {"end_excl": end_excl}).fetchnumpy()
    return columns


def _pandas_trips(pd: Any, events: Any, cells: Any) -> Any:
    """Written as one would first write it in pandas: merge, sort, shift, filter, groupby."""
    located = events.merge(cells, on="cell_id").sort_values(["subscriber_id", "ts", "cell_id"])
    previous_district = located["district"].shift()
    same_subscriber = located["subscriber_id"].shift() == located["subscriber_id"]
    # A trip's earlier event must be on its day or the day before (docs/protocol.md, "Definitions").
    recent = located["ts"].shift() >= located["ts"].dt.normalize() - pd.Timedelta(days=1)
    moved = same_subscriber & recent & (previous_district != located["district"])
    pairs = pd.DataFrame(
        {"origin": previous_district[moved].astype("int64"), "destination": located["district"][moved]}
    )
    return pairs.groupby(["origin", "destination"]).size()


@dataclass
class _Size:
    """One store's measurement: samples per way, the reference vector and the DuckDB → pandas load time."""

    samples: dict[str, Samples]
    reference: Vector
    load_s: float


def _measure(path: Path, codes: npt.NDArray[np.int32], pd: Any, repetitions: int) -> _Size:
    start, end = WINDOW_START, WINDOW_START + dt.timedelta(days=WINDOW_DAYS - 1)
    end_excl = dt.datetime.combine(end + dt.timedelta(days=1), dt.time())
    request = AggregateRequest("telecom.trips", codes, start, end, {})
    results: dict[str, Vector] = {}
    con = open_store(path)
    try:

        def adapter() -> None:
            results["adapter"] = compute_aggregate(con, request)

        def bare() -> None:
            columns = _bare_sql(con, end_excl)
            results["bare"] = _od_vector(codes, columns["origin"], columns["destination"], columns["trips"])

        cases: dict[str, Callable[[], object]] = {"adapter": adapter, "bare": bare}
        load_s = 0.0
        if pd is not None:
            loaded = time.perf_counter()
            event_frame = con.execute("SELECT * FROM signalling WHERE ts < $e", {"e": end_excl}).df()
            cell_frame = con.execute("SELECT * FROM cells").df()
            load_s = time.perf_counter() - loaded

            def naive() -> None:
                trips = _pandas_trips(pd, event_frame, cell_frame)
                origin = trips.index.get_level_values(0).to_numpy()
                destination = trips.index.get_level_values(1).to_numpy()
                results["pandas"] = _od_vector(codes, origin, destination, trips.to_numpy())

            cases["pandas"] = naive
        samples = interleave(cases, repetitions)
    finally:
        con.close()
    for name, vector in results.items():
        if not np.array_equal(vector, results["adapter"]):
            raise AssertionError(f"{name} OD counts differ from the adapter's")
    return _Size(samples, results["adapter"], load_s)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench aggregation", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", help="comma-separated event counts (default 5000000,20000000)")
    parser.add_argument("--repetitions", type=int, default=None, help="timed repetitions (default 5, quick 3)")
    parser.add_argument("--quick", action="store_true", help="1,000,000 events, 3 repetitions")
    parser.add_argument("--workdir", type=Path, help="keep the generated stores here (default: a temp dir)")
    args = parser.parse_args(argv)
    default_sizes = QUICK_EVENTS if args.quick else DEFAULT_EVENTS
    sizes = tuple(int(e) for e in args.events.split(",")) if args.events else default_sizes
    repetitions = args.repetitions or (3 if args.quick else 5)
    try:
        pd: Any = importlib.import_module("pandas")
    except ImportError:
        pd = None
    print_header("aggregation", argv, {"pandas": package_version("pandas") if pd else "not installed"})

    codes = load_registry(None).codes.astype(np.int32)
    rows = []
    with tempfile.TemporaryDirectory(prefix="fedbroker-bench-aggregation-") as scratch:
        workdir = args.workdir or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        for events in sizes:
            path = workdir / f"telecom-{events}.duckdb"
            began = time.perf_counter()
            if not path.exists():
                write_store(path, events)
            generated = time.perf_counter() - began
            size = _measure(path, codes, pd, repetitions)
            label = f"{events:,} events, {int(size.reference.sum()):,} trips"
            adapter_s = size.samples["adapter"].median
            for name, title in (
                ("adapter", "adapter: compute_aggregate"),
                ("bare", "bare SQL (fetchnumpy)"),
                ("pandas", "naive pandas (in memory)"),
            ):
                if name not in size.samples:
                    rows.append([label, title, "not measured: pip install -e '.[bench]'", "", "", ""])
                    continue
                median = size.samples[name].median
                throughput = f"{events / median / 1e6:.2f} M events/s"
                spread = size.samples[name].spread()
                rows.append([label, title, seconds(median), throughput, f"{median / adapter_s:.2f}×", spread])
            note = f"store written in {generated:.1f} s" if generated > 0.5 else "store reused"
            if pd is not None:
                note += f"; DuckDB → pandas load {seconds(size.load_s)} (not in the pandas figure)"
            print(f"  {label}: {note}", flush=True)
    window = f"{WINDOW_START}..{WINDOW_START + dt.timedelta(days=WINDOW_DAYS - 1)} ({WINDOW_DAYS} days)"
    print(f"\nmedian of {repetitions}, interleaved; the window {window} holds every event\n")
    print_table(["store", "way", "median", "throughput", "vs adapter", "min – max"], rows)
    return 0
