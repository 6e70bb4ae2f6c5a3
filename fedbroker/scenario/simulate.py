"""The day loop that couples movement and transmission into one world, on the scenario's timeline."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fedbroker.scenario.epidemic import NEVER, Epidemic
from fedbroker.scenario.timeline import (
    DISTANCING_DAY,
    HOLIDAY_EXODUS_DAY,
    RESTRICTION_DAY,
    RETURN_WAVE_DAY,
    SPRING_FESTIVAL_DAY,
    epicentre_prefecture,
)
from fedbroker.scenario.world import (
    HOMETOWN_GRAVITY_EXPONENT,
    RETURN_WAVE_DAYS,
    DayMoves,
    Gravity,
    Mobility,
    Population,
    TravelRules,
    draw_population,
    urban_districts,
)
from federation.registry import Registry

DEFAULT_SEED_DISTRICT = 420106  # 武昌区, Wuhan


@dataclass(frozen=True)
class World:
    """Everything the agencies' records are drawn from.

    ``night_location`` is (days, persons) int32: each person's district index at the end of each day;
    ``moves[t]`` are day t's district changes; ``seed_district`` is a district index; ``rules`` is how the
    timeline's exodus, restriction and return wave moved people (its ``restricted`` districts are the
    epicentre prefecture).
    """

    registry: Registry
    population: Population
    gravity: Gravity
    rules: TravelRules
    seed_district: int
    night_location: npt.NDArray[np.int32]
    moves: tuple[DayMoves, ...]
    epidemic: Epidemic
    new_infections: tuple[int, ...]

    @property
    def days(self) -> int:
        return int(self.night_location.shape[0])

    def start_location(self, day: int) -> npt.NDArray[np.int32]:
        """Each person's district index at midnight starting ``day``."""
        return self.population.home if day == 0 else self.night_location[day - 1]


def seed_district_of(registry: Registry, population: Population) -> int:
    """Index of 武昌区 if it is in the domain, otherwise of the domain's most populous district."""
    found = registry.contains(np.asarray([DEFAULT_SEED_DISTRICT]))
    if bool(found[0]):
        return int(registry.index_of(np.asarray([DEFAULT_SEED_DISTRICT]))[0])
    return int(np.argmax(np.bincount(population.home, minlength=len(registry))))


def travel_rules(registry: Registry, seed_district: int) -> TravelRules:
    """The timeline's days as movement applies them; the restriction closes the epicentre prefecture.

    The exodus runs from the start of the travel season to New Year's Eve (the day before the Spring
    Festival); the return wave spreads over RETURN_WAVE_DAYS days from RETURN_WAVE_DAY; the restriction is
    not lifted within a scenario (Wuhan's cordon lasted until 8 April 2020, day 98).
    """
    epicentre = epicentre_prefecture(int(registry.codes[seed_district]))
    return TravelRules(
        exodus_days=range(HOLIDAY_EXODUS_DAY, SPRING_FESTIVAL_DAY),
        return_days=(RETURN_WAVE_DAY, RETURN_WAVE_DAY + RETURN_WAVE_DAYS - 1),
        restriction_from=RESTRICTION_DAY,
        restriction_until=int(NEVER),
        distancing_from=DISTANCING_DAY,
        restricted=registry.codes // 100 == epicentre,
        urban=urban_districts(registry),
    )


def hometown_gravity(registry: Registry, population: Population) -> Gravity:
    """Where exodus travellers go: counties (not city districts) outside their own prefecture, flatter gravity."""
    counties = np.where(urban_districts(registry), 0.0, population.mass)
    mass = counties / counties.sum() if counties.sum() > 0 else population.mass
    return Gravity(registry, mass, exponent=HOMETOWN_GRAVITY_EXPONENT, other_prefecture=True)


def simulate(
    registry: Registry,
    persons: int,
    days: int,
    *,
    population_rng: np.random.Generator,
    mobility_rng: np.random.Generator,
    epidemic_rng: np.random.Generator,
) -> World:
    """Draw the population, then move and infect it day by day for ``days`` days."""
    population = draw_population(registry, persons, population_rng)
    gravity = Gravity(registry, population.mass)
    seed_district = seed_district_of(registry, population)
    rules = travel_rules(registry, seed_district)
    mobility = Mobility(population, gravity, hometown_gravity(registry, population), rules)
    epidemic = Epidemic(persons)
    epidemic.seed(np.flatnonzero(population.home == seed_district).astype(np.int32), seed_district, epidemic_rng)

    night_location = np.empty((days, persons), dtype=np.int32)
    moves: list[DayMoves] = []
    new_infections: list[int] = []
    for day in range(days):
        day_moves, exposure = mobility.step(day, ~epidemic.isolated(day), mobility_rng)
        new_infections.append(epidemic.step(day, exposure, len(registry), epidemic_rng))
        night_location[day] = mobility.location
        moves.append(day_moves)
    return World(
        registry=registry,
        population=population,
        gravity=gravity,
        rules=rules,
        seed_district=seed_district,
        night_location=night_location,
        moves=tuple(moves),
        epidemic=epidemic,
        new_infections=tuple(new_infections),
    )
