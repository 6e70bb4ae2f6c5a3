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
``health.cases``       n * 3           d_idx * 3 + s_idx                    —
``transport.trips``    n * n           o_idx * n + d_idx                    ``mode``: all (default), rail, air, coach
=====================  ==============  ===================================  ======================================

The definitions are DESIGN §3's; the SQL lives in one module per agency kind.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import duckdb
import numpy as np
import numpy.typing as npt

from adapters.aggregates import health, telecom, transport
from adapters.store import AGENCY_KINDS
from federation.errors import InvalidQuery, UnknownDistrict

__all__ = [
    "AGGREGATES_BY_KIND",
    "MAX_WINDOW_DAYS",
    "AggregateRequest",
    "compute_aggregate",
    "vector_length",
]

# A hard ceiling, whatever an agency's policy allows: a longer window is a mistake, not a query.
MAX_WINDOW_DAYS = 366


@dataclass(frozen=True)
class AggregateRequest:
    """One aggregate to compute over an agency's store."""

    name: str  # "telecom.presence" | "telecom.residents" | "telecom.trips" | "telecom.roamers" | ...
    domain: npt.NDArray[np.int32]  # ascending six-digit district codes: the vector index
    start: dt.date | None  # inclusive whole-day window; None for window-free aggregates (residents)
    end: dt.date | None
    params: Mapping[str, str]  # {"mode": "rail"} for transport.trips, {"home_prefix": "4201"} for roamers


@dataclass(frozen=True)
class _Spec:
    kind: str
    windowed: bool
    params: tuple[str, ...]  # the parameter names it accepts
    axis: str  # second axis of the vector: "day", "district" (OD), "status" or "" (none)


_SPECS: Mapping[str, _Spec] = MappingProxyType(
    {
        "telecom.presence": _Spec("telecom", True, (), "day"),
        "telecom.residents": _Spec("telecom", False, (), ""),
        "telecom.trips": _Spec("telecom", True, (), "district"),
        "telecom.roamers": _Spec("telecom", True, ("home_prefix",), "day"),
        "health.cases": _Spec("health", True, (), "status"),
        "transport.trips": _Spec("transport", True, ("mode",), "district"),
    }
)

AGGREGATES_BY_KIND: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {kind: tuple(name for name, spec in _SPECS.items() if spec.kind == kind) for kind in AGENCY_KINDS}
)

_TRANSPORT_MODE_CHOICES = ("all", *transport.TRANSPORT_MODES)


@dataclass(frozen=True)
class _Checked:
    domain: npt.NDArray[np.int32]
    start: dt.date
    end: dt.date
    days: int  # 0 for window-free aggregates
    params: Mapping[str, str]


def vector_length(req: AggregateRequest) -> int:
    """Number of uint64 entries :func:`compute_aggregate` returns for this request (validates it first)."""
    spec, checked = _check(req)
    return _length(spec, len(checked.domain), checked.days)


def compute_aggregate(con: duckdb.DuckDBPyConnection, req: AggregateRequest) -> npt.NDArray[np.uint64]:
    """Validate the request and compute its vector in the store (layouts in the module docstring).

    Raises InvalidQuery (an unknown aggregate, parameter, mode or home prefix; a missing or inverted window) or
    UnknownDistrict (a domain that is not ascending six-digit codes).
    """
    spec, c = _check(req)
    if req.name == "telecom.presence":
        vector = telecom.presence(con, c.domain, c.start, c.end)
    elif req.name == "telecom.residents":
        vector = telecom.residents(con, c.domain)
    elif req.name == "telecom.trips":
        vector = telecom.trips(con, c.domain, c.start, c.end)
    elif req.name == "telecom.roamers":
        vector = telecom.roamers(con, c.domain, c.start, c.end, c.params["home_prefix"])
    elif req.name == "health.cases":
        vector = health.cases(con, c.domain, c.start, c.end)
    else:
        vector = transport.trips(con, c.domain, c.start, c.end, c.params["mode"])
    assert vector.shape == (_length(spec, len(c.domain), c.days),)
    return vector


def _length(spec: _Spec, n: int, days: int) -> int:
    if spec.axis == "day":
        return n * days
    if spec.axis == "district":
        return n * n
    if spec.axis == "status":
        return n * len(health.CASE_STATUSES)
    return n


def _check(req: AggregateRequest) -> tuple[_Spec, _Checked]:
    spec = _SPECS.get(req.name)
    if spec is None:
        raise InvalidQuery(f"unknown aggregate {_shown(req.name)}: use one of {', '.join(_SPECS)}")
    domain = _check_domain(req.domain)
    params = _check_params(req.name, spec, req.params)
    if not spec.windowed:
        return spec, _Checked(domain, dt.date.min, dt.date.min, 0, params)
    if req.start is None or req.end is None:
        raise InvalidQuery(f"{req.name} needs a window: give both a start and an end date")
    if req.end < req.start:
        raise InvalidQuery(f"{req.name}: window end {req.end} is before its start {req.start}; swap them")
    days = (req.end - req.start).days + 1
    if days > MAX_WINDOW_DAYS:
        raise InvalidQuery(f"{req.name}: window of {days} days exceeds the limit of {MAX_WINDOW_DAYS}; shorten it")
    return spec, _Checked(domain, req.start, req.end, days, params)


def _check_domain(domain: npt.NDArray[np.int32]) -> npt.NDArray[np.int32]:
    array = np.asarray(domain)
    if array.ndim != 1 or array.size == 0 or not np.issubdtype(array.dtype, np.integer):
        raise InvalidQuery("the domain must be a non-empty one-dimensional array of six-digit district codes")
    if int(array.min()) < 100_000 or int(array.max()) > 999_999:
        raise UnknownDistrict("the domain holds a code that is not a six-digit district code; use registry codes")
    if np.any(np.diff(array) <= 0):
        raise InvalidQuery("the domain must be strictly ascending district codes without repeats (registry order)")
    return array.astype(np.int32, copy=False)


def _check_params(name: str, spec: _Spec, params: Mapping[str, str]) -> Mapping[str, str]:
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
        if mode not in _TRANSPORT_MODE_CHOICES:
            raise InvalidQuery(f"{name}: mode {_shown(mode)} is not one of {', '.join(_TRANSPORT_MODE_CHOICES)}")
    if name == "telecom.roamers":
        prefix = checked.get("home_prefix")
        if prefix is None:
            raise InvalidQuery(f"{name} needs home_prefix: the 2-, 4- or 6-digit code prefix of the home region")
        if not (prefix.isascii() and prefix.isdigit() and len(prefix) in (2, 4, 6)):
            raise InvalidQuery(f"{name}: home_prefix {_shown(prefix)} must be 2, 4 or 6 digits (e.g. 42, 4201, 420102)")
    return MappingProxyType(checked)


def _shown(value: str) -> str:
    """A caller's string quoted for an error message, cut short so a message stays readable."""
    return repr(value if len(value) <= 40 else value[:37] + "...")
