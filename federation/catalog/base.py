"""What every query kind is made of: parameters as data, a round plan, a join with disclosure control, and
its restriction to a provincial jurisdiction (docs/protocol.md, "Query kinds").

A kind is a :class:`QueryKind` subclass in its own module of this package, registered by one line in
``federation/catalog/__init__.py``. The broker, every adapter and the CLI consult the same instance: the broker
runs :meth:`QueryKind.rounds`, each adapter checks the round it is asked for against the same plan, the CLI builds
its flags from :attr:`QueryKind.params`, and ``DescribeFederation`` returns them.

Parameter values travel as strings, exactly as the coordinator signed them; defaults are never written into the
signed params, :meth:`QueryKind.values` applies them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from federation.catalog.aggregates import (
    AGGREGATES,
    LAYOUT_PARAM,
    PROVINCE_PARAM,
    border_parts,
    vector_length,
    widen,
)
from federation.catalog.disclosure import round_counts
from federation.catalog.result import Cell, QueryResult
from federation.errors import InvalidQuery, UnknownDistrict
from federation.queries import Query
from federation.registry import Registry
from federation.vocabulary import DISCLOSURE_KINDS

PARAM_TYPES = ("int", "float", "choice", "districts", "date", "region")
_DISTRICT = re.compile(r"\d{6}")
_WHOLE = re.compile(r"[0-9]+")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")

#: District code 0 stands for "outside the province" in a provincial coordinator's rows.
OUTSIDE = 0
OUTSIDE_NAME = "outside the province"


@dataclass(frozen=True)
class Param:
    """One parameter of a query kind, as data.

    ``name`` is the key in the signed params (snake_case); the CLI flag is ``--name-with-dashes``. ``default`` is
    the string a missing value means (None: no default, the parameter is optional or ``required``).
    ``minimum``/``maximum`` bound int and float values (inclusive; ``above`` makes the minimum exclusive).
    """

    name: str
    type: str
    help: str
    default: str | None = None
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    above: bool = False
    required: bool = False

    def __post_init__(self) -> None:
        if self.type not in PARAM_TYPES:
            raise TypeError(f"param {self.name}: type {self.type!r} is not one of {PARAM_TYPES}")
        if self.type == "choice" and not self.choices:
            raise TypeError(f"param {self.name}: a choice needs its choices")

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def parse(self, text: str) -> Any:
        """The typed value of ``text``; InvalidQuery naming the flag and the fix otherwise.

        int -> int, float -> float, choice -> str, districts -> ascending distinct tuple of int codes,
        date -> datetime.date, region -> str of 2, 4 or 6 digits.
        """
        shown = repr(text if len(text) <= 40 else text[:37] + "...")
        if self.type == "choice":
            if text not in self.choices:
                raise InvalidQuery(f"{self.flag} {shown} is not one of {', '.join(self.choices)}")
            return text
        if self.type == "int":
            if not _WHOLE.fullmatch(text) or not self._in_range(int(text)):
                raise InvalidQuery(f"{self.flag} {shown} must be a whole number {self._range()}")
            return int(text)
        if self.type == "float":
            try:
                value = float(text)
            except ValueError:
                value = math.nan
            if not (math.isfinite(value) and self._in_range(value)):
                raise InvalidQuery(f"{self.flag} {shown} must be a number {self._range()}")
            return value
        if self.type == "date":
            return parse_date(self.flag, text)
        if self.type == "region":
            if not (text.isascii() and text.isdigit() and len(text) in (2, 4, 6)):
                raise InvalidQuery(
                    f"{self.flag} {shown} must be a region code prefix of 2 digits (province, e.g. 42), "
                    "4 (prefecture, e.g. 4201) or 6 (district, e.g. 420102)"
                )
            return text
        return parse_districts(self.flag, text)

    def _in_range(self, value: float) -> bool:
        low = self.minimum is None or (value > self.minimum if self.above else value >= self.minimum)
        return low and (self.maximum is None or value <= self.maximum)

    def _range(self) -> str:
        low, high = self.minimum, self.maximum
        if low is not None and high is not None:
            return f"from {low:g} to {high:g}"
        if low is not None:
            return f"{'above' if self.above else 'at least'} {low:g}"
        return f"at most {high:g}" if high is not None else ""


def parse_date(flag: str, text: str) -> date:
    if not _DATE.fullmatch(text):
        raise InvalidQuery(f"{flag} {text[:40]!r} is not a date; write it as YYYY-MM-DD")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidQuery(f"{flag} {text!r} is not a valid calendar date; write it as YYYY-MM-DD") from None


def parse_districts(flag: str, text: str) -> tuple[int, ...]:
    codes = [part.strip() for part in text.split(",")]
    bad = [c for c in codes if not _DISTRICT.fullmatch(c)]
    if bad:
        raise InvalidQuery(
            f"{flag} takes comma-separated six-digit GB/T 2260 codes, e.g. 420102,420103; bad: "
            + ", ".join(repr(b[:12]) for b in bad[:5])
        )
    return tuple(sorted({int(c) for c in codes}))


DISTRICTS = Param("districts", "districts", "comma-separated district codes the answer lists (default: all)")


@dataclass(frozen=True)
class Scope:
    """Whose eyes a result is built for: the whole domain (``province`` None), or one province's districts."""

    province: int | None = None

    def inside(self, registry: Registry) -> NDArray[np.bool_]:
        """Boolean mask over the registry's districts that this scope may see."""
        if self.province is None:
            return np.ones(len(registry), dtype=np.bool_)
        return np.asarray(registry.province_codes == self.province)

    def sees(self, code: int) -> bool:
        """Whether an area code is inside the scope: a district (6 digits), prefecture (4) or province (2)
        code, or :data:`OUTSIDE`."""
        if self.province is None or code == OUTSIDE:
            return True
        province = code // 10000 if code >= 100_000 else code // 100 if code >= 1000 else code
        return province == self.province


NATIONAL = Scope()

#: The layouts a kind names for each round it plans: ``inside``, ``border`` and ``inflow`` limit a provincial
#: coordinator's round to its province (federation/catalog/aggregates.py, ``LAYOUTS``); ``domain`` keeps the
#: round over the whole domain for every coordinator (an index over every origin needs every origin's cases
#: and residents). A national coordinator's rounds are always over the whole domain.
ROUND_LAYOUTS = ("domain", "inside", "border", "inflow")


@dataclass(frozen=True)
class RoundPlan:
    """One secure-aggregation round a query needs: which agency kind sums which aggregate over which window,
    with which params, into a vector of ``length`` uint64 cells. Round names are unique within a query.

    A round limited to a province carries ``layout`` and ``province`` among its params (:attr:`layout`)."""

    name: str
    agency_kind: str
    aggregate: str
    start: date | None
    end: date | None
    params: Mapping[str, str]
    length: int

    @property
    def layout(self) -> str | None:
        """The provincial layout of the vector, None for the whole domain."""
        return self.params.get(LAYOUT_PARAM)

    @property
    def province(self) -> int | None:
        """The province the vector is limited to, None for the whole domain."""
        value = self.params.get(PROVINCE_PARAM)
        return None if value is None else int(value)


def plan(
    name: str,
    aggregate: str,
    start: date | None,
    end: date | None,
    registry: Registry,
    scope: Scope = NATIONAL,
    layout: str = "inside",
    **params: str,
) -> RoundPlan:
    """A :class:`RoundPlan` for ``aggregate`` (window dropped for window-free ones): over the registry's domain
    for a national ``scope`` or ``layout="domain"``, else limited to the scope's province in ``layout``."""
    if layout not in ROUND_LAYOUTS:
        raise TypeError(f"round {name}: layout {layout!r} is not one of {ROUND_LAYOUTS}")
    spec = AGGREGATES[aggregate]
    if not spec.windowed:
        start = end = None
    if scope.province is None or layout == "domain":
        length = vector_length(aggregate, len(registry), start, end)
    else:
        inside = int(scope.inside(registry).sum())
        length = vector_length(aggregate, len(registry), start, end, layout, inside)
        params = {**params, LAYOUT_PARAM: layout, PROVINCE_PARAM: str(scope.province)}
    return RoundPlan(name, spec.agency_kind, aggregate, start, end, dict(sorted(params.items())), length)


@dataclass(frozen=True)
class Release:
    """What a kind's :meth:`QueryKind.build` works from: the domain, each round's unmasked sum by round name,
    the small-cell thresholds, the scope of the coordinator who will see the result, and each noisy round's σ
    (the standard deviation bound of every cell of its sum; a round absent from ``sigma`` is exact)."""

    registry: Registry
    sums: Mapping[str, NDArray[np.uint64]]
    mobility_k: int
    cases_k: int
    scope: Scope = field(default_factory=Scope)
    sigma: Mapping[str, float] = field(default_factory=dict)

    def sigma_of(self, round_name: str) -> float:
        """σ of each cell of round ``round_name``'s sum (0.0 for an exact round)."""
        return float(self.sigma.get(round_name, 0.0))

    def counts(self, round_name: str, length: int) -> NDArray[np.int64]:
        """Round ``round_name``'s sum as int64 cells, checked (disclosure.checked_counts): signed and unclipped
        for a noisy round, so that a kind's sums over cells stay unbiased."""
        return round_counts(self.sums, round_name, length, noisy=self.sigma_of(round_name) > 0)


def domain_counts(release: Release, plan: RoundPlan) -> NDArray[np.int64]:
    """A round's exact counts in its aggregate's whole-domain layout (int64, flat): a round limited to the
    province has 0 in every cell it did not compute (outside the province). A ``border`` round has no such
    form: read it with :func:`border_counts`."""
    counts = release.counts(plan.name, plan.length)
    if plan.layout is None:
        return counts
    return widen(counts, plan.layout, release.scope.inside(release.registry))


def border_counts(release: Release, plan: RoundPlan) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """A trips round as (origin × destination (n, n), each district's trips to anywhere outside the province
    (n,), each district's trips from anywhere outside (n,)), int64 over the registry's districts. A ``border``
    round fills the inside × inside block and the inside districts' border totals (0 elsewhere); a round over
    the whole domain gives its matrix and the border totals of ``release.scope`` summed from it."""
    registry, scope = release.registry, release.scope
    n = len(registry)
    inside = scope.inside(registry)
    if plan.layout is None:
        trips = release.counts(plan.name, plan.length).reshape(n, n)
        return trips, trips[:, ~inside].sum(axis=1), trips[~inside, :].sum(axis=0)
    if plan.layout != "border":
        raise ValueError(f"round {plan.name} is in the {plan.layout} layout, not border")
    inner, leaving, arriving = border_parts(release.counts(plan.name, plan.length), int(inside.sum()))
    trips = np.zeros((n, n), dtype=np.int64)
    trips[np.ix_(inside, inside)] = inner
    out, into = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    out[inside], into[inside] = leaving, arriving
    return trips, out, into


class QueryKind:
    """Base of every query kind. Subclasses set the class attributes and implement :meth:`rounds` and
    :meth:`build`; everything else has a default that a kind may override."""

    name: ClassVar[str]
    summary: ClassVar[str]
    #: Which small-cell threshold its main counts are held to ("mobility" or "cases").
    disclosure: ClassVar[str]
    params: ClassVar[tuple[Param, ...]]
    #: Every aggregate its round plans may use (the scenario derives each agency's allowed kinds from it).
    aggregates: ClassVar[tuple[str, ...]]
    #: A kind whose window is ``window_days`` ending at ``end`` names that param here; None: explicit start.
    trailing_window: ClassVar[str | None] = None
    #: What a query without ``--start`` starts on, for a kind whose :meth:`resolve_window` supplies it (CLI help).
    start_default: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        names = [p.name for p in cls.params]
        if len(set(names)) != len(names):
            raise TypeError(f"query kind {cls.name}: parameter names repeat")
        if cls.disclosure not in DISCLOSURE_KINDS:
            raise TypeError(f"query kind {cls.name}: disclosure must be one of {DISCLOSURE_KINDS}")
        unknown = [a for a in cls.aggregates if a not in AGGREGATES]
        if unknown:
            raise TypeError(f"query kind {cls.name}: unknown aggregates {unknown}")
        if cls.trailing_window is not None and cls.trailing_window not in names:
            raise TypeError(f"query kind {cls.name}: trailing window param {cls.trailing_window!r} is not a param")

    # -- parameters ---------------------------------------------------------------------------------------

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def values(self, query: Query) -> dict[str, Any]:
        """Every parameter's typed value, defaults applied; absent optional ones are None."""
        out: dict[str, Any] = {}
        for p in self.params:
            text = query.params.get(p.name, p.default)
            out[p.name] = None if text is None else p.parse(text)
        return out

    def resolve_window(
        self, start: date | None, end: date, params: dict[str, str], data_start: date | None
    ) -> tuple[date, dict[str, str]]:
        """The start date and params a new query is signed with, from what the coordinator gave.

        A trailing-window kind derives start from its window param (or, given only start, writes the window
        param so the signed query states the window both ways). Otherwise start is required, or the data's first
        day when the kind allows it (override).
        """
        if self.trailing_window is not None:
            p = self.param(self.trailing_window)
            if start is None:
                days = p.parse(params.get(p.name, p.default or ""))
                return end - timedelta(days=days - 1), params
            if p.name not in params:
                params = {**params, p.name: str((end - start).days + 1)}
            return start, params
        if start is None:
            raise InvalidQuery(f"{self.name} needs a start date; pass --start YYYY-MM-DD")
        return start, params

    def validate(self, query: Query) -> None:
        """Refuse unknown, missing or malformed params and a window that contradicts them (InvalidQuery)."""
        allowed = {p.name for p in self.params}
        unknown = sorted(set(query.params) - allowed)
        if unknown:
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            raise InvalidQuery(
                f"unknown params for {self.name}: {', '.join(u[:40] for u in unknown[:5])}{more}; allowed: "
                + (", ".join(sorted(allowed)) or "none")
            )
        missing = [p.flag for p in self.params if p.required and p.name not in query.params]
        if missing:
            raise InvalidQuery(f"{self.name} needs {', '.join(missing)}")
        values = self.values(query)
        if self.trailing_window is not None:
            days = values[self.trailing_window]
            if query.window_days != days:
                flag = self.param(self.trailing_window).flag
                raise InvalidQuery(
                    f"{self.name} window {query.start}..{query.end} is {query.window_days} days but {flag} is "
                    f"{days}; set start to {query.end - timedelta(days=days - 1)}"
                )
        self.check(query, values)

    def check(self, query: Query, values: Mapping[str, Any]) -> None:
        """Kind-specific consistency checks on parsed values (default: none)."""

    def districts(self, query: Query) -> tuple[int, ...] | None:
        """The district codes the answer is restricted to (ascending), or None for the whole domain."""
        raw = query.params.get("districts")
        return None if raw is None else parse_districts("--districts", raw)

    def district_mask(self, query: Query, registry: Registry, scope: Scope | None = None) -> NDArray[np.bool_]:
        """Boolean mask over the domain of the districts the answer may list: the query's filter (or all)
        within ``scope``. UnknownDistrict names any requested code that is not in the domain."""
        wanted = self.districts(query)
        if wanted is None:
            mask = np.ones(len(registry), dtype=np.bool_)
        else:
            codes = registry.codes
            requested = np.asarray(wanted, dtype=np.int64)
            positions = np.searchsorted(codes, requested)
            found = positions < codes.shape[0]
            found[found] = codes[positions[found]] == requested[found]
            if not found.all():
                unknown = ", ".join(str(c) for c in requested[~found][:10])
                raise UnknownDistrict(f"districts {unknown} are not in this federation's domain; check the codes")
            mask = np.zeros(len(registry), dtype=np.bool_)
            mask[positions] = True
        return mask if scope is None else mask & scope.inside(registry)

    # -- rounds, join, release -----------------------------------------------------------------------------

    def rounds(self, query: Query, registry: Registry, scope: Scope) -> tuple[RoundPlan, ...]:
        """The rounds this query needs, in the order the broker runs them, each vector limited to what the
        answer for ``scope`` (the signing coordinator's jurisdiction) needs."""
        raise NotImplementedError

    def build(self, query: Query, release: Release) -> QueryResult:
        """Join the round sums and apply disclosure control, for the release's scope."""
        raise NotImplementedError

    def restrict(self, result: QueryResult, scope: Scope) -> QueryResult:
        """The last guard of a provincial release: drop any row naming a district the scope may not see, in
        every table. A kind builds for its scope already (:meth:`build`); this only enforces it."""
        if scope.province is None:
            return result
        tables = tuple(replace(t, rows=_visible_rows(t.columns, t.rows, scope)) for t in result.tables)
        note = f"restricted to province {scope.province}"
        notes = result.notes if note in result.notes else (*result.notes, note)
        return replace(result, rows=_visible_rows(result.columns, result.rows, scope), tables=tables, notes=notes)

    def release(self, query: Query, release: Release) -> QueryResult:
        """:meth:`build` then :meth:`restrict`: what the coordinator of ``release.scope`` receives."""
        return self.restrict(self.build(query, release), release.scope)


_CODE_COLUMNS = ("district", "origin", "destination", "area")


def _visible_rows(columns: Sequence[str], rows: Sequence[tuple[Cell, ...]], scope: Scope) -> list[tuple[Cell, ...]]:
    at = [columns.index(c) for c in _CODE_COLUMNS if c in columns]
    return [row for row in rows if all(_code_visible(row[i], scope) for i in at)]


def _code_visible(value: Cell, scope: Scope) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and scope.sees(value)
