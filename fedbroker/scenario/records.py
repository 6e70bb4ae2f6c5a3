"""Each agency's raw records, drawn from the world as numpy columns (written to DuckDB by ``agencies``).

Ids: a person's subscriber id, passenger id and case-list person id are all ``person index + 1``; no
federated query joins across agencies, but tests use the shared id to check that the world is coherent.
Timestamps are int64 seconds after the window's first midnight; days are int32 days after it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fedbroker.scenario.epidemic import CaseRows
from fedbroker.scenario.simulate import World
from fedbroker.scenario.world import CARRIER_SHARES, LAST_SECOND_OF_DAY

SECONDS_PER_DAY = 86_400
# Signalling: 1 + Poisson(3) events per person per day at uniform times, plus one event within an hour of
# every arrival so that each district change shows up as a telecom trip.
EXTRA_EVENTS_MEAN = 3.0
ARRIVAL_EVENT_SECONDS = (60, 3600)
# Cells: at least two per district and carrier, more where the carrier has more subscribers.
CELLS_MIN = 2
CELL_ID_BASE = 100_000_000  # cell ids of carrier c are (c + 1) * CELL_ID_BASE + n: unique per carrier

# Tickets: a share of trips is ticketed; mode by great-circle distance with a lognormal perturbation.
TICKETED_SHARE = 0.4
MODE_DISTANCE_NOISE_SIGMA = 0.3
COACH_MAX_KM = 150.0
RAIL_MAX_KM = 800.0
MODES = ("rail", "air", "coach")
RAIL, AIR, COACH = 0, 1, 2
OPERATOR_SHARES = (0.5, 0.3, 0.2)

HEALTH_NETWORK_SHARES = (0.45, 0.35, 0.20)

# Mobile number prefixes (after +86) of the three carriers, shaped on China Mobile, China Unicom and China
# Telecom's real number blocks. A subscriber's number is +86, the prefix (subscriber_id mod the carrier's prefix
# count) and eight digits (subscriber_id × MSISDN_MULTIPLIER mod 10^8): the multiplier is coprime with 10^8, so
# the numbers are unique per carrier for ids below 10^8 and the carriers' prefixes never overlap.
CARRIER_PREFIXES = (
    ("134", "135", "136", "137", "138", "139", "150", "151", "152", "157", "158", "159", "182", "187", "188"),
    ("130", "131", "132", "155", "156", "166", "176", "185", "186"),
    ("133", "153", "173", "177", "180", "181", "189", "199"),
)
MSISDN_MULTIPLIER = 48_271


@dataclass(frozen=True)
class CarrierTables:
    """One carrier's ``cells`` and ``subscribers`` (district columns are six-digit codes)."""

    cell_id: npt.NDArray[np.int64]
    cell_district: npt.NDArray[np.int32]
    subscriber_id: npt.NDArray[np.int64]
    home_district: npt.NDArray[np.int32]
    msisdn: npt.NDArray[np.str_]  # E.164, one per subscriber


@dataclass(frozen=True)
class SignallingChunk:
    """One carrier's signalling events of one day, in time order (int64 columns).

    ``subscriber_id``; ``second`` after the window's first midnight; ``cell_id``. A carrier's signalling is its
    chunks of days 0, 1, ... concatenated; each column's name here is the name ``content_sha256`` hashes it
    under, prefixed ``event_`` (``event_subscriber``, ``event_second``, ``event_cell``).
    """

    subscriber_id: npt.NDArray[np.int64]
    second: npt.NDArray[np.int64]
    cell_id: npt.NDArray[np.int64]

    @property
    def count(self) -> int:
        return int(self.subscriber_id.shape[0])


@dataclass(frozen=True)
class TicketRecords:
    """One transport operator's tickets (``mode`` indexes MODES; origin/destination are codes)."""

    ticket_id: npt.NDArray[np.int64]
    passenger_id: npt.NDArray[np.int64]
    mode: npt.NDArray[np.int8]
    origin: npt.NDArray[np.int32]
    destination: npt.NDArray[np.int32]
    departure_second: npt.NDArray[np.int64]


@dataclass(frozen=True)
class CaseRecords:
    """One health network's line list (``status`` indexes epidemic.STATUSES; district is a code)."""

    case_id: npt.NDArray[np.int64]
    person_id: npt.NDArray[np.int64]
    status: npt.NDArray[np.int8]
    district: npt.NDArray[np.int32]
    onset_day: npt.NDArray[np.int32]
    report_day: npt.NDArray[np.int32]
    imported: npt.NDArray[np.bool_]
    cluster_id: npt.NDArray[np.int64]  # 0 = none (NULL)


def _cells_per_district(world: World) -> npt.NDArray[np.int64]:
    """(carriers, districts) int64: how many cells each carrier has in each district."""
    carriers = len(CARRIER_SHARES)
    districts = len(world.registry)
    key = world.population.carrier.astype(np.int64) * districts + world.population.home
    subscribers = np.bincount(key, minlength=carriers * districts)
    cells: npt.NDArray[np.int64] = (
        np.maximum(CELLS_MIN, np.ceil(np.sqrt(subscribers) / 2)).astype(np.int64).reshape(carriers, districts)
    )
    return cells


def carrier_tables(world: World) -> tuple[CarrierTables, ...]:
    """The cells and subscribers of every carrier, in carrier order (telecom-a, -b, -c); no random draws."""
    cells = _cells_per_district(world)
    codes = world.registry.codes
    carrier_of = world.population.carrier
    tables = []
    for c in range(len(CARRIER_SHARES)):
        members = np.flatnonzero(carrier_of == c)
        tables.append(
            CarrierTables(
                # Cells are numbered in district order, so local numbers are simply 0 .. cells-1.
                cell_id=(c + 1) * CELL_ID_BASE + np.arange(int(cells[c].sum()), dtype=np.int64),
                cell_district=np.repeat(codes, cells[c]).astype(np.int32),
                subscriber_id=members.astype(np.int64) + 1,
                home_district=codes[world.population.home[members]].astype(np.int32),
                msisdn=msisdns(c, members.astype(np.int64) + 1),
            )
        )
    return tuple(tables)


def signalling_days(world: World, rng: np.random.Generator) -> Iterator[tuple[SignallingChunk, ...]]:
    """Every carrier's signalling, one day at a time: for day 0, 1, ... a chunk per carrier, in carrier order.

    Only one day's events are alive at a time, so a world of a million persons (about 4 M events a day) streams
    to the stores in a few hundred MB. The draws of a day are made before its chunks are yielded, in the same
    order whatever the caller does with them, so a seed gives the same signalling however it is consumed.
    """
    carriers = len(CARRIER_SHARES)
    cells = _cells_per_district(world)
    first_cell = np.cumsum(cells, axis=1) - cells
    carrier_of = world.population.carrier
    persons = world.population.persons
    everyone = np.arange(persons, dtype=np.int32)
    for day in range(world.days):
        moves = world.moves[day]
        routine = 1 + rng.poisson(EXTRA_EVENTS_MEAN, size=persons)
        person = np.concatenate([np.repeat(everyone, routine), moves.person])
        second = np.concatenate(
            [
                rng.integers(0, SECONDS_PER_DAY, size=int(routine.sum()), dtype=np.int64),
                np.minimum(
                    moves.second + rng.integers(*ARRIVAL_EVENT_SECONDS, size=moves.count), LAST_SECOND_OF_DAY
                ).astype(np.int64),
            ]
        )
        del routine
        # Where was each person at each event: the destination of their last move at or before it, if any
        # (moves are sorted by person and second), otherwise where they woke up.
        location = world.start_location(day)[person]
        if moves.count:
            move_key = moves.person.astype(np.int64) * SECONDS_PER_DAY + moves.second
            event_key = person.astype(np.int64) * SECONDS_PER_DAY + second
            last_move = np.maximum(np.searchsorted(move_key, event_key, side="right") - 1, 0)
            moved = (move_key[last_move] <= event_key) & (moves.person[last_move] == person)
            location = np.where(moved, moves.destination[last_move], location)
            del event_key, last_move, moved

        carrier = carrier_of[person]
        cell = first_cell[carrier, location] + np.floor(rng.random(person.shape[0]) * cells[carrier, location])
        del location
        cell_id = (carrier.astype(np.int64) + 1) * CELL_ID_BASE + cell.astype(np.int64)
        del cell
        # A signalling feed arrives in time order.
        order = np.argsort(second * persons + person, kind="stable")
        person, second, cell_id, carrier = person[order], second[order], cell_id[order], carrier[order]
        del order
        chunks = []
        for c in range(carriers):
            mine = carrier == c
            chunks.append(
                SignallingChunk(
                    subscriber_id=person[mine].astype(np.int64) + 1,
                    second=second[mine] + day * SECONDS_PER_DAY,
                    cell_id=cell_id[mine],
                )
            )
        del person, second, cell_id, carrier
        yield tuple(chunks)


def msisdns(carrier: int, subscriber_id: npt.NDArray[np.int64]) -> npt.NDArray[np.str_]:
    """The E.164 numbers of carrier ``carrier``'s subscribers (see CARRIER_PREFIXES), one per id."""
    prefixes = np.array(CARRIER_PREFIXES[carrier])
    prefix = prefixes[subscriber_id % len(prefixes)]
    digits = np.char.zfill(((subscriber_id * MSISDN_MULTIPLIER) % 100_000_000).astype(str), 8)
    numbers: npt.NDArray[np.str_] = np.char.add(np.char.add("+86", prefix), digits)
    return numbers


def ticket_records(world: World, rng: np.random.Generator) -> tuple[TicketRecords, ...]:
    """Tickets of every operator (transport-a, -b, -c); each operator sells every mode.

    Operators are ticketing companies, not one per mode: a mode-specific flow summed over single-mode
    operators would be one agency's own figure, which secure aggregation could not hide from the broker.
    """
    person_p, day_p, second_p, origin_p, dest_p = [], [], [], [], []
    for day, moves in enumerate(world.moves):
        ticketed = rng.random(moves.count) < TICKETED_SHARE
        person_p.append(moves.person[ticketed])
        day_p.append(np.full(int(ticketed.sum()), day, dtype=np.int64))
        second_p.append(moves.second[ticketed])
        origin_p.append(moves.origin[ticketed])
        dest_p.append(moves.destination[ticketed])
    person = np.concatenate(person_p)
    origin = np.concatenate(origin_p)
    destination = np.concatenate(dest_p)
    # Departures are sold to the minute.
    second = np.concatenate(second_p).astype(np.int64)
    departure = np.concatenate(day_p) * SECONDS_PER_DAY + second - second % 60

    distance = world.gravity.distance_km(origin, destination)
    perceived = distance * rng.lognormal(0.0, MODE_DISTANCE_NOISE_SIGMA, size=distance.shape[0])
    mode = np.where(perceived < COACH_MAX_KM, COACH, np.where(perceived < RAIL_MAX_KM, RAIL, AIR)).astype(np.int8)
    operator = rng.choice(len(OPERATOR_SHARES), size=person.shape[0], p=OPERATOR_SHARES)
    ticket_id = np.arange(1, person.shape[0] + 1, dtype=np.int64)
    codes = world.registry.codes
    return tuple(
        TicketRecords(
            ticket_id=ticket_id[mine],
            passenger_id=person[mine].astype(np.int64) + 1,
            mode=mode[mine],
            origin=codes[origin[mine]].astype(np.int32),
            destination=codes[destination[mine]].astype(np.int32),
            departure_second=departure[mine],
        )
        for mine in (operator == o for o in range(len(OPERATOR_SHARES)))
    )


def case_records(world: World, rows: CaseRows, rng: np.random.Generator) -> tuple[CaseRecords, ...]:
    """The line list split between health-net-1, health-net-2 and health-net-3.

    Each person is served by one network (drawn once per person), so all rows of a person live in one
    network. Case ids are global row numbers in (report day, status, person) order.
    """
    network_of = rng.choice(len(HEALTH_NETWORK_SHARES), size=world.population.persons, p=HEALTH_NETWORK_SHARES)
    network = network_of[rows.person]
    case_id = np.arange(1, rows.person.shape[0] + 1, dtype=np.int64)
    codes = world.registry.codes
    return tuple(
        CaseRecords(
            case_id=case_id[mine],
            person_id=rows.person[mine].astype(np.int64) + 1,
            status=rows.status[mine],
            district=codes[rows.district[mine]].astype(np.int32),
            onset_day=rows.onset_day[mine],
            report_day=rows.report_day[mine],
            imported=rows.imported[mine],
            cluster_id=rows.cluster_id[mine],
        )
        for mine in (network == n for n in range(len(HEALTH_NETWORK_SHARES)))
    )
