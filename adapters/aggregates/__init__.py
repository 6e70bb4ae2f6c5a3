"""The agency-side aggregates: what an adapter computes inside its own store before masking it.

One request names an aggregate, the domain (ascending six-digit district codes: the vector index), an inclusive
whole-day window and a few string parameters. :func:`compute_aggregate` validates it and returns a ``uint64``
vector (n = len(domain), days = (end - start).days + 1; rows outside the domain or the window are ignored):

=====================  ==============  ===================================  ======================================
aggregate              length          index                                params
=====================  ==============  ===================================  ======================================
``telecom.presence``   n * days        d_idx * days + day_idx               —
``telecom.residents``  n               d_idx                                — (no window; one given is ignored)
``telecom.trips``      n * n           o_idx * n + d_idx                    —
``telecom.roamers``    n * days        d_idx * days + day_idx               ``home_prefix``: 2, 4 or 6 digits
``telecom.arrivals``   n               d_idx                                ``home_prefix``: 2, 4 or 6 digits
``telecom.exposure``   n * 2           d_idx * 2 + (0 exposed, 1 present)   ``risk_districts``: codes, ascending
``health.cases``       n * 3           d_idx * 3 + s_idx                    —
``health.confirmed_    n * days * 2    (d_idx * days + day_idx) * 2 + o     ``date``: report (default), onset
daily``                                (o: 0 local, 1 imported)
``health.clusters``    n * days        d_idx * days + day_idx               —
``health.cluster_      n               d_idx                                —
cases``
``transport.trips``    n * n           o_idx * n + d_idx                    ``mode``: all (default), rail, air, coach
=====================  ==============  ===================================  ======================================

A round limited to a provincial coordinator's jurisdiction names ``layout`` and ``province`` among its params
(docs/protocol.md, "Vector layouts"): ``inside`` computes the same statement over the province's districts only
(the domain given to the SQL is theirs), ``border`` and ``inflow`` compute the trips aggregates with origin and
destination positions from :func:`federation.catalog.aggregates.od_frame` (the outside row and column summed by
the store). No whole-domain vector is ever computed for such a round.

The definitions are docs/protocol.md's ("Aggregates"); the lengths and accepted params are the catalog's
(:mod:`federation.catalog.aggregates`), and :data:`SQL` maps every aggregate name to the function computing it
in a DuckDB store: one module per agency kind (the mobility cohorts, arrivals and exposure, in
:mod:`adapters.aggregates.mobility`). The same statements in PostgreSQL's and Spark's dialects are
:data:`adapters.aggregates.postgresql.SQL` and :data:`adapters.aggregates.spark.SQL`. :data:`IMPLEMENTATIONS` is
the one dispatch table, aggregate name -> store dialect -> function, complete for every dialect (checked at
import, so no store can fall through to another aggregate's SQL). A windowed aggregate with fresh daily partials
in the store is summed from them instead (:mod:`adapters.partials`: same answer).
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import duckdb
import numpy as np
import numpy.typing as npt

from adapters import partials
from adapters.aggregates import health, mobility, postgresql, spark, telecom, transport
from adapters.backends import DIALECTS, Store
from adapters.backends.duckdb_store import DuckDBStore
from federation.catalog.aggregates import (
    AGGREGATES,
    LAYOUT_PARAM,
    PROVINCE_PARAM,
    SCOPE_PARAMS,
    AggregateSpec,
    ODFrame,
    aggregate_spec,
    check_layout,
    od_frame,
)
from federation.errors import InvalidQuery, UnknownDistrict
from federation.vocabulary import (
    AGENCY_KINDS,
    CASE_DATES,
    DEFAULT_MAX_TRIPS_PER_DAY,
    MAX_TRIPS_PER_DAY_LIMIT,
    MAX_WINDOW_DAYS,
    TRANSPORT_MODE_CHOICES,
)

__all__ = [
    "AGGREGATES_BY_KIND",
    "IMPLEMENTATIONS",
    "SQL",
    "AggregateRequest",
    "Implementation",
    "compute_aggregate",
    "vector_length",
]


# The national registry has about 2,845 districts; a longer list cannot be a list of distinct districts.
MAX_LISTED_DISTRICTS = 3_000


@dataclass(frozen=True)
class AggregateRequest:
    """One aggregate to compute over an agency's store."""

    name: str  # "telecom.presence" | "telecom.residents" | "telecom.trips" | "telecom.roamers" | ...
    domain: npt.NDArray[np.int32]  # ascending six-digit district codes: the vector index
    start: dt.date | None  # inclusive whole-day window; None for window-free aggregates (residents)
    end: dt.date | None
    # {"mode": "rail"} for transport.trips, {"home_prefix": "4201"} for roamers; a provincial round's "layout"
    # and "province" as well (the domain stays the whole one: the request limits it)
    params: Mapping[str, str]
    max_trips_per_day: int = DEFAULT_MAX_TRIPS_PER_DAY  # contribution bound of the trips aggregates


@dataclass(frozen=True)
class _Checked:
    domain: npt.NDArray[np.int32]  # the districts the SQL indexes: the province's alone for the inside layout
    start: dt.date
    end: dt.date
    days: int  # 0 for window-free aggregates
    params: Mapping[str, str]  # the aggregate's own params (no layout, no province)
    max_trips_per_day: int
    cells: int  # the vector's length
    frame: ODFrame | None = None  # the trips aggregates' border or inflow layout; None: o * n + d over domain


_Compute = Callable[[duckdb.DuckDBPyConnection, _Checked], npt.NDArray[np.uint64]]

#: Aggregate name -> the function computing its vector in the store. Every catalog aggregate has one (checked
#: at import), so a round can never fall through to another aggregate's SQL.
SQL: Mapping[str, _Compute] = MappingProxyType(
    {
        "telecom.presence": lambda con, c: telecom.presence(con, c.domain, c.start, c.end),
        "telecom.residents": lambda con, c: telecom.residents(con, c.domain),
        "telecom.trips": lambda con, c: telecom.trips(con, c.domain, c.start, c.end, c.max_trips_per_day, c.frame),
        "telecom.roamers": lambda con, c: telecom.roamers(con, c.domain, c.start, c.end, c.params["home_prefix"]),
        "telecom.arrivals": lambda con, c: mobility.arrivals(con, c.domain, c.start, c.end, c.params["home_prefix"]),
        "telecom.exposure": lambda con, c: mobility.exposure(
            con, c.domain, c.start, c.end, _district_list(c.params["risk_districts"])
        ),
        "health.cases": lambda con, c: health.cases(con, c.domain, c.start, c.end),
        "health.confirmed_daily": lambda con, c: health.confirmed_daily(
            con, c.domain, c.start, c.end, c.params["date"]
        ),
        "health.clusters": lambda con, c: health.clusters(con, c.domain, c.start, c.end),
        "health.cluster_cases": lambda con, c: health.cluster_cases(con, c.domain, c.start, c.end),
        "transport.trips": lambda con, c: transport.trips(
            con, c.domain, c.start, c.end, c.params["mode"], c.max_trips_per_day, c.frame
        ),
    }
)
for _module, _table in (("adapters.aggregates", SQL), ("postgresql", postgresql.SQL), ("spark", spark.SQL)):
    if set(_table) != set(AGGREGATES):
        raise ImportError(
            f"{_module}.SQL must cover exactly the catalog's aggregates; missing: "
            + ", ".join(sorted(set(AGGREGATES) - set(_table)))
            + "; extra: "
            + ", ".join(sorted(set(_table) - set(AGGREGATES)))
        )

#: (store, checked request) -> the aggregate's vector, computed inside ``store``.
Implementation = Callable[[Store, _Checked], npt.NDArray[np.uint64]]


def _on_duckdb(compute: _Compute) -> Implementation:
    def run(store: Store, checked: _Checked) -> npt.NDArray[np.uint64]:
        assert isinstance(store, DuckDBStore)
        return compute(store.con, checked)

    return run


def _on_store(
    name: str, sql: Mapping[str, postgresql.Compute], bounded: Mapping[str, postgresql.BoundedCompute]
) -> Implementation:
    if name in bounded:
        with_bound = bounded[name]
        return lambda store, c: with_bound(store, c.domain, c.start, c.end, c.params, c.max_trips_per_day, c.frame)
    compute = sql[name]
    return lambda store, c: compute(store, c.domain, c.start, c.end, c.params)


#: Aggregate name -> dialect -> implementation: the one table a round's aggregate is looked up in.
IMPLEMENTATIONS: Mapping[str, Mapping[str, Implementation]] = MappingProxyType(
    {
        name: MappingProxyType(
            {
                "duckdb": _on_duckdb(SQL[name]),
                "postgresql": _on_store(name, postgresql.SQL, postgresql.BOUNDED),
                "spark": _on_store(name, spark.SQL, spark.BOUNDED),
            }
        )
        for name in SQL
    }
)
assert all(set(by_dialect) == set(DIALECTS) for by_dialect in IMPLEMENTATIONS.values())

AGGREGATES_BY_KIND: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {kind: tuple(name for name, spec in AGGREGATES.items() if spec.agency_kind == kind) for kind in AGENCY_KINDS}
)


def vector_length(req: AggregateRequest) -> int:
    """Number of uint64 entries :func:`compute_aggregate` returns for this request (validates it first)."""
    _, checked = _check(req)
    return checked.cells


def compute_aggregate(
    store: Store | duckdb.DuckDBPyConnection, req: AggregateRequest, *, use_partials: bool = True
) -> npt.NDArray[np.uint64]:
    """Validate the request and compute its vector inside the store (layouts in the module docstring).

    ``store`` is any backend (``adapters.backends``); a bare DuckDB connection is taken as a DuckDB store. The
    vector is summed from the store's daily partials when they are fresh (``adapters.partials``; same answer,
    cost in days x districts) unless ``use_partials`` is False, and computed from the raw tables otherwise.
    Raises InvalidQuery (an unknown aggregate, parameter, mode or home prefix; a missing or inverted window)
    or UnknownDistrict (a domain that is not ascending six-digit codes).
    """
    spec, checked = _check(req)
    if isinstance(store, duckdb.DuckDBPyConnection):
        store = DuckDBStore.wrap(store)
    if use_partials and spec.windowed and partials.fresh(store, spec.name):
        c = checked
        vector = partials.answer_from_partials(
            store, spec.name, c.domain, c.start, c.end, c.params, c.max_trips_per_day, c.frame
        )
    else:
        vector = IMPLEMENTATIONS[spec.name][store.dialect](store, checked)
    expected = checked.cells
    if vector.shape != (expected,):
        raise InvalidQuery(f"{spec.name} computed {vector.shape[0]} cells, its layout has {expected}")
    return vector


def _check(req: AggregateRequest) -> tuple[AggregateSpec, _Checked]:
    spec = aggregate_spec(req.name)
    if not 1 <= req.max_trips_per_day <= MAX_TRIPS_PER_DAY_LIMIT:
        raise InvalidQuery(
            f"max_trips_per_day {req.max_trips_per_day} is outside 1..{MAX_TRIPS_PER_DAY_LIMIT} trips per person-day"
        )
    domain, frame = _limited_domain(spec, _check_domain(req.domain), req.params)
    params = _check_params(spec, {k: v for k, v in req.params.items() if k not in SCOPE_PARAMS})

    def checked(start: dt.date, end: dt.date, days: int) -> _Checked:
        cells = spec.length(len(domain), days) if frame is None else frame.cells
        return _Checked(domain, start, end, days, params, req.max_trips_per_day, cells, frame)

    if not spec.windowed:
        return spec, checked(dt.date.min, dt.date.min, 0)
    if req.start is None or req.end is None:
        raise InvalidQuery(f"{req.name} needs a window: give both a start and an end date")
    if req.end < req.start:
        raise InvalidQuery(f"{req.name}: window end {req.end} is before its start {req.start}; swap them")
    days = (req.end - req.start).days + 1
    if days > MAX_WINDOW_DAYS:
        raise InvalidQuery(f"{req.name}: window of {days} days exceeds the limit of {MAX_WINDOW_DAYS}; shorten it")
    return spec, checked(req.start, req.end, days)


def _limited_domain(
    spec: AggregateSpec, domain: npt.NDArray[np.int32], params: Mapping[str, str]
) -> tuple[npt.NDArray[np.int32], ODFrame | None]:
    """The districts the SQL indexes and the trips frame of a round's layout (docs/protocol.md, "Vector
    layouts"): the whole domain without one; the province's districts for ``inside``; the whole domain placed by
    :func:`od_frame` for ``border`` and ``inflow``."""
    layout, province = params.get(LAYOUT_PARAM), params.get(PROVINCE_PARAM)
    if layout is None and province is None:
        return domain, None
    if layout is None or province is None:
        raise InvalidQuery(f"{spec.name}: a limited round names both {LAYOUT_PARAM} and {PROVINCE_PARAM}")
    check_layout(spec, layout)
    if not (len(province) == 2 and province.isascii() and province.isdigit()):
        raise InvalidQuery(f"{spec.name}: province {_shown(province)} must be a 2-digit province code (e.g. 42)")
    inside = domain // 10_000 == int(province)
    if not inside.any():
        raise UnknownDistrict(f"{spec.name}: province {province} has no district in this domain")
    if layout == "inside":
        return domain[inside], None
    return domain, od_frame(layout, inside)


def _check_domain(domain: npt.NDArray[np.int32]) -> npt.NDArray[np.int32]:
    array = np.asarray(domain)
    if array.ndim != 1 or array.size == 0 or not np.issubdtype(array.dtype, np.integer):
        raise InvalidQuery("the domain must be a non-empty one-dimensional array of six-digit district codes")
    if int(array.min()) < 100_000 or int(array.max()) > 999_999:
        raise UnknownDistrict("the domain holds a code that is not a six-digit district code; use registry codes")
    if np.any(np.diff(array) <= 0):
        raise InvalidQuery("the domain must be strictly ascending district codes without repeats (registry order)")
    return array.astype(np.int32, copy=False)


def _check_params(spec: AggregateSpec, params: Mapping[str, str]) -> Mapping[str, str]:
    name = spec.name
    unknown = sorted(set(params) - set(spec.params))
    if unknown:
        accepted = ", ".join(spec.params) or "none"
        raise InvalidQuery(f"{name} has no parameter {_shown(unknown[0])}; it accepts: {accepted}")
    for key, value in params.items():
        if not isinstance(value, str):
            raise InvalidQuery(f"{name}: parameter {key} must be a string")
    checked = dict(params)
    if name == "transport.trips":
        mode = checked.setdefault("mode", "all")
        if mode not in TRANSPORT_MODE_CHOICES:
            raise InvalidQuery(f"{name}: mode {_shown(mode)} is not one of {', '.join(TRANSPORT_MODE_CHOICES)}")
    if name == "health.confirmed_daily":
        date = checked.setdefault("date", "report")
        if date not in CASE_DATES:
            raise InvalidQuery(f"{name}: date {_shown(date)} is not one of {', '.join(CASE_DATES)}")
    if name == "telecom.exposure":
        listed = checked.get("risk_districts")
        if listed is None:
            raise InvalidQuery(f"{name} needs risk_districts: comma-separated six-digit district codes")
        _district_list(listed, name)
    if name in ("telecom.roamers", "telecom.arrivals"):
        prefix = checked.get("home_prefix")
        if prefix is None:
            raise InvalidQuery(f"{name} needs home_prefix: the 2-, 4- or 6-digit code prefix of the home region")
        if not (prefix.isascii() and prefix.isdigit() and len(prefix) in (2, 4, 6)):
            raise InvalidQuery(f"{name}: home_prefix {_shown(prefix)} must be 2, 4 or 6 digits (e.g. 42, 4201, 420102)")
    return MappingProxyType(checked)


def _district_list(text: str, name: str = "telecom.exposure") -> list[int]:
    """Ascending distinct six-digit codes from ``"420102,420103"``; InvalidQuery naming the first bad one."""
    parts = text.split(",")
    if len(parts) > MAX_LISTED_DISTRICTS:
        raise InvalidQuery(f"{name}: {len(parts)} listed districts exceed the limit of {MAX_LISTED_DISTRICTS}")
    for part in parts:
        if not (len(part) == 6 and part.isascii() and part.isdigit()):
            raise InvalidQuery(f"{name}: {_shown(part)} is not a six-digit district code (e.g. 420102)")
    codes = [int(part) for part in parts]
    if any(b <= a for a, b in itertools.pairwise(codes)):
        raise InvalidQuery(f"{name}: list the districts in ascending order without repeats")
    return codes


def _shown(value: str) -> str:
    """A caller's string quoted for an error message, cut short so a message stays readable."""
    return repr(value if len(value) <= 40 else value[:37] + "...")
