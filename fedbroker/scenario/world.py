"""Persons, homes and daily movement of the synthetic world (the model is described in the package docstring).

Districts are addressed by their index in the domain registry (ascending code order), persons by their index
``0 .. persons-1`` (person id = index + 1). Times of day are whole seconds after local midnight. When the
holiday exodus, the epicentre restriction and the return wave happen is :mod:`.timeline`'s; how they change
movement is :class:`TravelRules` (built by ``simulate.travel_rules``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from federation.registry import Registry

# Population: lognormal district weights; urban districts (names ending in 区) are denser than counties.
POPULATION_SIGMA = 0.8
URBAN_WEIGHT = 2.5
# Carrier market shares of telecom-a, telecom-b, telecom-c.
CARRIER_SHARES = (0.60, 0.25, 0.15)

# Gravity model: attraction of d seen from o is mass_d * distance_km(o, d) ** -2, with the distance floored so
# that two district seats a few kilometres apart do not absorb all the traffic of a city.
GRAVITY_EXPONENT = 2.0
GRAVITY_MIN_DISTANCE_KM = 5.0
EARTH_RADIUS_KM = 6371.0

# Movement: share of persons at home who start a trip each day; a trip is a same-day return or a stay of one
# or more nights (geometric), departing during the day and returning at a daytime hour.
TRIP_RATE_PER_DAY = 0.04
SAME_DAY_SHARE = 0.4
DEPARTURE_SECONDS = (6 * 3600, 21 * 3600)
SAME_DAY_STAY_SECONDS = (2 * 3600, 8 * 3600)
RETURN_SECONDS = (7 * 3600, 22 * 3600)
NIGHTS_GEOMETRIC_P = 0.5
MAX_NIGHTS = 10
LAST_SECOND_OF_DAY = 86_399

# Holiday exodus: each day of the travel season, this share of the residents of urban districts who are at home
# leaves for a home town (about 30 % over the 15 days; some 5 of Wuhan's 11 million left before the cordon).
# Home towns are counties outside the traveller's own prefecture, drawn by a flatter gravity model (people go
# back to where they come from, not to the nearest big town), and the traveller stays until the return wave,
# coming back on a uniform day of its first RETURN_WAVE_DAYS days.
EXODUS_SHARE_PER_DAY = 0.024
HOMETOWN_GRAVITY_EXPONENT = 1.0
RETURN_WAVE_DAYS = 10
# Travel after the first-level response in every province (distancing): trip rates fall to this share of
# normal until the return wave, then recover part of the way.
DISTANCING_TRAVEL_FACTOR = 0.3
RESUMPTION_TRAVEL_FACTOR = 0.6

_AT_HOME = -1
_GRAVITY_BLOCK_ROWS = 256


@dataclass(frozen=True)
class Population:
    """Who lives where and with which carrier.

    ``home``: int32 district index per person; ``carrier``: int8 carrier index (0, 1, 2) per person;
    ``mass``: float64 expected population share per district (sums to 1), the gravity model's mass.
    """

    home: npt.NDArray[np.int32]
    carrier: npt.NDArray[np.int8]
    mass: npt.NDArray[np.float64]

    @property
    def persons(self) -> int:
        return int(self.home.shape[0])


def draw_population(registry: Registry, persons: int, rng: np.random.Generator) -> Population:
    """Draw district weights, then each person's home district and carrier."""
    urban = urban_districts(registry)
    weight = rng.lognormal(0.0, POPULATION_SIGMA, size=len(registry)) * np.where(urban, URBAN_WEIGHT, 1.0)
    mass = weight / weight.sum()
    home = rng.choice(len(registry), size=persons, p=mass).astype(np.int32)
    carrier = rng.choice(len(CARRIER_SHARES), size=persons, p=CARRIER_SHARES).astype(np.int8)
    return Population(home=home, carrier=carrier, mass=mass)


def great_circle_km(
    lon1: npt.NDArray[np.float64],
    lat1: npt.NDArray[np.float64],
    lon2: npt.NDArray[np.float64],
    lat2: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """Haversine distance in km between points given in decimal degrees (broadcasting)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dlat = p2 - p1
    dlon = np.radians(lon2) - np.radians(lon1)
    h = np.sin(dlat / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlon / 2) ** 2
    distance: npt.NDArray[np.float64] = 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))
    return distance


class Gravity:
    """Destination sampler: P(d | o) ∝ mass_d · max(dist(o, d), 5 km)^-exponent for d ≠ o.

    With ``other_prefecture`` the destinations are further restricted to districts outside o's prefecture
    (code // 100), except for an origin whose prefecture is the whole domain. The per-origin cumulative
    distributions are stored as one flat array in which row ``o`` is shifted by ``o``; a uniform ``u`` for an
    origin ``o`` is then looked up as ``o + u`` with one ``searchsorted`` for every traveller at once.
    """

    def __init__(
        self,
        registry: Registry,
        mass: npt.NDArray[np.float64],
        *,
        exponent: float = GRAVITY_EXPONENT,
        other_prefecture: bool = False,
    ) -> None:
        self._lon = registry.lon
        self._lat = registry.lat
        n = len(registry)
        self.districts = n
        if n < 2:
            self._flat_cdf = np.zeros(0, dtype=np.float64)
            return
        cdf = np.empty((n, n), dtype=np.float64)
        # Row blocks keep the temporaries small: the national n×n matrix alone is 65 MB.
        for first in range(0, n, _GRAVITY_BLOCK_ROWS):
            rows = np.arange(first, min(first + _GRAVITY_BLOCK_ROWS, n))
            distance = great_circle_km(
                self._lon[rows, None], self._lat[rows, None], self._lon[None, :], self._lat[None, :]
            )
            attraction = mass[None, :] * np.maximum(distance, GRAVITY_MIN_DISTANCE_KM) ** -exponent
            attraction[np.arange(rows.shape[0]), rows] = 0.0
            if other_prefecture:
                prefecture = registry.codes // 100
                elsewhere = np.where(prefecture[rows, None] != prefecture[None, :], attraction, 0.0)
                # A prefecture with nowhere else to go in the domain falls back to every other district.
                has_elsewhere = elsewhere.sum(axis=1) > 0
                attraction[has_elsewhere] = elsewhere[has_elsewhere]
            block = np.cumsum(attraction, axis=1)
            block /= block[:, -1:]
            block[:, -1] = 1.0
            cdf[rows] = block + rows[:, None]
        self._flat_cdf = cdf.ravel()

    def sample(self, origins: npt.NDArray[np.int32], rng: np.random.Generator) -> npt.NDArray[np.int32]:
        """One destination index per origin index (never the origin itself); int32."""
        if self.districts < 2 or origins.size == 0:
            return origins.copy()
        shifted = origins.astype(np.float64) + rng.random(origins.shape[0])
        flat = np.searchsorted(self._flat_cdf, shifted, side="right")
        destination = np.clip(flat - origins.astype(np.int64) * self.districts, 0, self.districts - 1)
        # o + u can round up to o + 1 in float64 (probability ~1e-13); keep the "never the origin" promise.
        same = destination == origins
        destination[same] = (origins[same] + 1) % self.districts
        result: npt.NDArray[np.int32] = destination.astype(np.int32)
        return result

    def distance_km(
        self, origins: npt.NDArray[np.int32], destinations: npt.NDArray[np.int32]
    ) -> npt.NDArray[np.float64]:
        """Great-circle distance in km between pairs of district indices."""
        return great_circle_km(self._lon[origins], self._lat[origins], self._lon[destinations], self._lat[destinations])


@dataclass(frozen=True)
class DayMoves:
    """The district changes of one day, sorted by (person, second).

    ``person`` int32 index; ``second`` int32 seconds after midnight at which the person is first in
    ``destination``; ``origin``/``destination`` int32 district indices (always different).
    """

    person: npt.NDArray[np.int32]
    second: npt.NDArray[np.int32]
    origin: npt.NDArray[np.int32]
    destination: npt.NDArray[np.int32]

    @property
    def count(self) -> int:
        return int(self.person.shape[0])


@dataclass(frozen=True)
class TravelRules:
    """The timeline as the movement model applies it: day indices and the districts each event concerns.

    Days are scenario day indices (0 = the first day of data). ``exodus_days`` is the half-open range of days on
    which urban residents leave for home towns; exodus travellers return on a day of ``return_days`` (inclusive
    range) at a daytime hour. From ``restriction_from`` until ``restriction_until`` (exclusive) nobody leaves or
    enters a ``restricted`` district: no trip starts from or towards one, and a return that would cross the
    border waits until the restriction ends. From ``distancing_from`` the trip rate is lower everywhere.
    ``urban`` marks the districts whose residents take part in the exodus (names ending in 区).
    """

    exodus_days: range
    return_days: tuple[int, int]
    restriction_from: int
    restriction_until: int
    distancing_from: int
    restricted: npt.NDArray[np.bool_]
    urban: npt.NDArray[np.bool_]

    @classmethod
    def none(cls, districts: int) -> TravelRules:
        """No exodus, no restriction, normal travel every day (the world before the timeline existed)."""
        never = 2**30
        nowhere = np.zeros(districts, dtype=np.bool_)
        return cls(range(0), (never, never), never, never, never, nowhere, nowhere)

    def restricted_on(self, day: int) -> bool:
        return self.restriction_from <= day < self.restriction_until

    def travel_factor(self, day: int) -> float:
        """Share of the normal trip rate on ``day``: lower from distancing, partly back from the return wave."""
        if day < self.distancing_from:
            return 1.0
        return DISTANCING_TRAVEL_FACTOR if day < self.return_days[0] else RESUMPTION_TRAVEL_FACTOR


def urban_districts(registry: Registry) -> npt.NDArray[np.bool_]:
    """True for districts whose name ends in 区 (city districts rather than counties)."""
    return np.fromiter((name.endswith("区") for name in registry.names), dtype=np.bool_, count=len(registry))


class Mobility:
    """Day-by-day movement state: where everyone is and when travellers return home."""

    def __init__(
        self,
        population: Population,
        gravity: Gravity,
        hometowns: Gravity | None = None,
        rules: TravelRules | None = None,
    ) -> None:
        self.home = population.home
        self.gravity = gravity
        self.hometowns = hometowns if hometowns is not None else gravity
        self.rules = rules if rules is not None else TravelRules.none(gravity.districts)
        self.location = population.home.copy()
        self._return_day = np.full(population.persons, _AT_HOME, dtype=np.int32)
        self._return_second = np.zeros(population.persons, dtype=np.int32)

    def step(
        self, day: int, may_leave: npt.NDArray[np.bool_], rng: np.random.Generator
    ) -> tuple[DayMoves, npt.NDArray[np.int32]]:
        """Move everyone through ``day``; returns the day's moves and each person's exposure district.

        ``may_leave`` marks persons allowed to start a trip (isolated cases are not). The exposure district
        is where a person spends the day: the destination of a same-day trip, otherwise where they sleep.
        After the call, ``location`` holds every person's district at the end of the day.
        """
        rules = self.rules
        closed = rules.restricted_on(day)
        returning = np.flatnonzero(self._return_day == day).astype(np.int32)
        if closed:
            # A traveller on the wrong side of the cordon stays there until it is lifted.
            held = rules.restricted[self.home[returning]] | rules.restricted[self.location[returning]]
            self._return_day[returning[held]] = rules.restriction_until
            returning = returning[~held]
        ret_second = self._return_second[returning]
        ret_origin = self.location[returning]
        self.location[returning] = self.home[returning]
        self._return_day[returning] = _AT_HOME

        at_home = self._return_day == _AT_HOME
        at_home[returning] = False
        free = at_home & may_leave
        if closed:
            free &= ~rules.restricted[self.home]
        # With a single district there is nowhere to go; the draw still happens so the stream stays aligned.
        rate = TRIP_RATE_PER_DAY * rules.travel_factor(day) if self.gravity.districts >= 2 else 0.0
        draw = rng.random(int(self.home.shape[0]))
        starters = np.flatnonzero(free & (draw < rate)).astype(np.int32)
        n = starters.shape[0]
        destination = self.gravity.sample(self.home[starters], rng)
        departure = rng.integers(*DEPARTURE_SECONDS, size=n, dtype=np.int32)
        same_day = rng.random(n) < SAME_DAY_SHARE
        back = np.minimum(departure + rng.integers(*SAME_DAY_STAY_SECONDS, size=n, dtype=np.int32), 86_340)
        nights = np.minimum(rng.geometric(NIGHTS_GEOMETRIC_P, size=n), MAX_NIGHTS).astype(np.int32)
        later_return = rng.integers(*RETURN_SECONDS, size=n, dtype=np.int32)
        if closed:
            go = ~rules.restricted[destination]
            starters, destination, departure = starters[go], destination[go], departure[go]
            same_day, back, nights, later_return = same_day[go], back[go], nights[go], later_return[go]

        leavers, hometown, leave_second = self._exodus(day, free & (draw >= rate), rng)

        overnight = starters[~same_day]
        self.location[overnight] = destination[~same_day]
        self._return_day[overnight] = day + nights[~same_day]
        self._return_second[overnight] = later_return[~same_day]

        exposure = self.location.copy()
        exposure[starters[same_day]] = destination[same_day]

        day_trippers = starters[same_day]
        person = np.concatenate([returning, starters, day_trippers, leavers])
        second = np.concatenate([ret_second, departure, back[same_day], leave_second])
        origin = np.concatenate([ret_origin, self.home[starters], destination[same_day], self.home[leavers]])
        dest = np.concatenate([self.home[returning], destination, self.home[day_trippers], hometown])
        order = np.lexsort((second, person))
        moves = DayMoves(
            person=person[order],
            second=second[order].astype(np.int32),
            origin=origin[order],
            destination=dest[order],
        )
        return moves, exposure

    def _exodus(
        self, day: int, candidates: npt.NDArray[np.bool_], rng: np.random.Generator
    ) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32], npt.NDArray[np.int32]]:
        """Urban residents leaving for a home town on ``day``: (persons, home towns, departure seconds).

        Leavers move at once (``location`` is their home town) and are due back on a day of the return wave.
        """
        rules = self.rules
        if day not in rules.exodus_days or self.gravity.districts < 2:
            empty = np.zeros(0, dtype=np.int32)
            return empty, empty, empty
        draw = rng.random(int(self.home.shape[0]))
        leavers = np.flatnonzero(candidates & rules.urban[self.home] & (draw < EXODUS_SHARE_PER_DAY)).astype(np.int32)
        hometown = self.hometowns.sample(self.home[leavers], rng)
        departure = rng.integers(*DEPARTURE_SECONDS, size=leavers.shape[0], dtype=np.int32)
        first, last = rules.return_days
        due = np.maximum(rng.integers(first, last + 1, size=leavers.shape[0], dtype=np.int32), day + 1)
        back_at = rng.integers(*RETURN_SECONDS, size=leavers.shape[0], dtype=np.int32)
        if rules.restricted_on(day):
            go = ~rules.restricted[hometown]
            leavers, hometown, departure, due, back_at = leavers[go], hometown[go], departure[go], due[go], back_at[go]
        self.location[leavers] = hometown
        self._return_day[leavers] = due
        self._return_second[leavers] = back_at
        return leavers, hometown, departure
