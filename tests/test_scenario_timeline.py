"""The scenario's mobility story: a holiday exodus, a cordon around the epicentre, a return wave.

Checked on the simulated world itself (no stores written): the movement the telecom records are drawn from.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from fedbroker.scenario.simulate import World, simulate
from fedbroker.scenario.timeline import (
    DISTANCING_DAY,
    HOLIDAY_EXODUS_DAY,
    RESTRICTION_DAY,
    RETURN_WAVE_DAY,
    SPRING_FESTIVAL_DAY,
)
from fedbroker.scenario.world import RETURN_WAVE_DAYS, urban_districts
from federation.registry import load_registry

PERSONS = 6_000
DAYS = 60  # 2020-01-01 .. 02-29: the default scenario, past the end of the return wave
RETURN_END = RETURN_WAVE_DAY + RETURN_WAVE_DAYS - 1


@pytest.fixture(scope="module")
def world() -> World:
    registry = load_registry((42, 43))
    population_rng, mobility_rng, epidemic_rng = np.random.default_rng(5).spawn(3)
    return simulate(
        registry,
        PERSONS,
        DAYS,
        population_rng=population_rng,
        mobility_rng=mobility_rng,
        epidemic_rng=epidemic_rng,
    )


def _present(world: World, districts: npt.NDArray[np.intp], day: int) -> int:
    return int(np.isin(world.night_location[day], districts).sum())


def test_the_travel_rules_follow_the_timeline() -> None:
    assert HOLIDAY_EXODUS_DAY < RESTRICTION_DAY <= DISTANCING_DAY < SPRING_FESTIVAL_DAY < RETURN_WAVE_DAY
    assert RETURN_END < DAYS


def test_the_restricted_area_is_the_epicentre_prefecture(world: World) -> None:
    codes = world.registry.codes
    seed_code = int(codes[world.seed_district])
    assert seed_code == 420106
    assert set((codes[world.rules.restricted] // 100).tolist()) == {4201}


def test_nobody_crosses_the_cordon_after_the_restriction_day(world: World) -> None:
    restricted = world.rules.restricted
    first = RESTRICTION_DAY
    crossings_before = sum(int((restricted[m.origin] != restricted[m.destination]).sum()) for m in world.moves[:first])
    assert crossings_before > 100  # the epicentre was connected until then
    for day in range(first, DAYS):
        moves = world.moves[day]
        assert not np.any(restricted[moves.origin] | restricted[moves.destination]), day
    # So whoever is on either side on the restriction day is on the same side on every later day.
    side = restricted[world.night_location[first:]]
    assert np.all(side == side[0])


def test_epicentre_residents_left_before_the_cordon_and_stay_out(world: World) -> None:
    restricted = world.rules.restricted
    home_in = restricted[world.population.home]
    away = home_in & ~restricted[world.night_location[RESTRICTION_DAY]]
    before = home_in & ~restricted[world.night_location[HOLIDAY_EXODUS_DAY - 1]]
    # The exodus multiplies the residents away from the epicentre, and the cordon keeps them out.
    assert away.sum() > 0.15 * home_in.sum()
    assert away.sum() > 5 * max(1, int(before.sum()))
    assert np.array_equal(away, home_in & ~restricted[world.night_location[-1]])


def test_cities_outside_the_epicentre_dip_over_the_holiday_and_recover_after_the_return_wave(world: World) -> None:
    cities = np.flatnonzero(urban_districts(world.registry) & ~world.rules.restricted)
    baseline = np.median([_present(world, cities, day) for day in range(HOLIDAY_EXODUS_DAY)])
    holiday = _present(world, cities, SPRING_FESTIVAL_DAY + 2)
    after = _present(world, cities, RETURN_END + 3)
    assert holiday < 0.85 * baseline
    assert after > 0.95 * baseline
    # Counties gain the home-town visitors meanwhile.
    counties = np.flatnonzero(~urban_districts(world.registry))
    assert _present(world, counties, SPRING_FESTIVAL_DAY) > _present(world, counties, 0)


def test_travel_falls_after_the_restriction_and_partly_recovers(world: World) -> None:
    def trips(first: int, days: int) -> float:
        return float(np.mean([world.moves[first + t].count for t in range(days)]))

    normal = trips(0, HOLIDAY_EXODUS_DAY)
    distancing = trips(SPRING_FESTIVAL_DAY + 1, 5)
    resumed = trips(RETURN_END + 2, 5)
    assert distancing < 0.5 * normal
    assert distancing < resumed < normal
