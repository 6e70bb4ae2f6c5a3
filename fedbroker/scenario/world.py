"""Persons, homes and daily movement of the synthetic world (the model is described in the package docstring).

Districts are addressed by their index in the domain registry (ascending code order), persons by their index
``0 .. persons-1`` (person id = index + 1). Times of day are whole seconds after local midnight.
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
    urban = np.fromiter((name.endswith("区") for name in registry.names), dtype=np.bool_, count=len(registry))
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
    """Destination sampler: P(d | o) ∝ mass_d · max(dist(o, d), 5 km)^-2 for d ≠ o.

    The per-origin cumulative distributions are stored as one flat array in which row ``o`` is shifted by
    ``o``; a uniform ``u`` for an origin ``o`` is then looked up as ``o + u`` with one ``searchsorted`` for
    every traveller at once.
    """

    def __init__(self, registry: Registry, mass: npt.NDArray[np.float64]) -> None:
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
            attraction = mass[None, :] * np.maximum(distance, GRAVITY_MIN_DISTANCE_KM) ** -GRAVITY_EXPONENT
            attraction[np.arange(rows.shape[0]), rows] = 0.0
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


class Mobility:
    """Day-by-day movement state: where everyone is and when travellers return home."""

    def __init__(self, population: Population, gravity: Gravity) -> None:
        self.home = population.home
        self.gravity = gravity
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
        returning = np.flatnonzero(self._return_day == day).astype(np.int32)
        ret_second = self._return_second[returning]
        ret_origin = self.location[returning]
        self.location[returning] = self.home[returning]
        self._return_day[returning] = _AT_HOME

        at_home = self._return_day == _AT_HOME
        at_home[returning] = False
        # With a single district there is nowhere to go; the draw still happens so the stream stays aligned.
        rate = TRIP_RATE_PER_DAY if self.gravity.districts >= 2 else 0.0
        draw = rng.random(int(self.home.shape[0]))
        starters = np.flatnonzero(at_home & may_leave & (draw < rate)).astype(np.int32)
        n = starters.shape[0]
        destination = self.gravity.sample(self.home[starters], rng)
        departure = rng.integers(*DEPARTURE_SECONDS, size=n, dtype=np.int32)
        same_day = rng.random(n) < SAME_DAY_SHARE
        back = np.minimum(departure + rng.integers(*SAME_DAY_STAY_SECONDS, size=n, dtype=np.int32), 86_340)
        nights = np.minimum(rng.geometric(NIGHTS_GEOMETRIC_P, size=n), MAX_NIGHTS).astype(np.int32)
        later_return = rng.integers(*RETURN_SECONDS, size=n, dtype=np.int32)

        overnight = starters[~same_day]
        self.location[overnight] = destination[~same_day]
        self._return_day[overnight] = day + nights[~same_day]
        self._return_second[overnight] = later_return[~same_day]

        exposure = self.location.copy()
        exposure[starters[same_day]] = destination[same_day]

        day_trippers = starters[same_day]
        person = np.concatenate([returning, starters, day_trippers])
        second = np.concatenate([ret_second, departure, back[same_day]])
        origin = np.concatenate([ret_origin, self.home[starters], destination[same_day]])
        dest = np.concatenate([self.home[returning], destination, self.home[day_trippers]])
        order = np.lexsort((second, person))
        moves = DayMoves(
            person=person[order],
            second=second[order].astype(np.int32),
            origin=origin[order],
            destination=dest[order],
        )
        return moves, exposure
