"""The day loop that couples movement and transmission into one world."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fedbroker.scenario.epidemic import Epidemic
from fedbroker.scenario.world import DayMoves, Gravity, Mobility, Population, draw_population
from federation.registry import Registry

DEFAULT_SEED_DISTRICT = 420106  # 武昌区, Wuhan


@dataclass(frozen=True)
class World:
    """Everything the agencies' records are drawn from.

    ``night_location`` is (days, persons) int32: each person's district index at the end of each day;
    ``moves[t]`` are day t's district changes; ``seed_district`` is a district index.
    """

    registry: Registry
    population: Population
    gravity: Gravity
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
    mobility = Mobility(population, gravity)
    epidemic = Epidemic(persons)
    seed_district = seed_district_of(registry, population)
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
        seed_district=seed_district,
        night_location=night_location,
        moves=tuple(moves),
        epidemic=epidemic,
        new_infections=tuple(new_infections),
    )
