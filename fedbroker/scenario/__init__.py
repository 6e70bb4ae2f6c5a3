"""``fedbroker scenario generate``: one coherent synthetic world behind every agency's raw tables.

One seeded simulation (numpy ``default_rng(seed)``, split into independent streams with ``spawn``) produces
persons, their movements and an epidemic; every agency's records are then *observations of that same world*,
so joint queries over several agencies are consistent with each other and with the truth. Same parameters
and seed give identical table contents (``scenario.json`` carries a ``content_sha256`` over all columns).

**Population** (:mod:`.world`). District weights are lognormal (σ 0.8), ×2.5 for urban districts (names
ending in 区); each of the ``subscribers`` persons draws a home district from them. Each person subscribes to
exactly one carrier: telecom-a/b/c with shares 60/25/15 %.

**Movement.** Each day, 4 % of the persons at home (and not isolated) start a trip to a destination drawn
from a gravity model on the registry's coordinates: P(d | o) ∝ mass_d · max(distance, 5 km)^-2, d ≠ o.
40 % are same-day returns (2–8 h away); the rest stay 1+ nights (geometric, mean 2, at most 10) and come
back at a daytime hour. Departures are between 06:00 and 21:00. Trips start from home only; travellers do
not chain trips. A trip still under way at the end of the window simply has not returned yet.

**Timeline** (:mod:`.timeline`, shared by the epidemic and the movement models). The default scenario runs
60 days from 2020-01-01: the outbreak is seeded in the epicentre on days -6 .. 0, the holiday exodus starts
on day 9 (2020-01-10), travel to and from the epicentre prefecture is restricted from day 22 (2020-01-23),
distancing lowers transmission everywhere from day 23, and the return wave starts on day 40 (2020-02-10).
The epidemic rises, peaks about a week after distancing (reports lag infections by onset and reporting
delays) and declines, so the trend's turning point lies inside the data.

**Epidemic** (:mod:`.epidemic`). 20 persons living in 武昌区 (420106), or the domain's most populous
district if Wuhan is not in the domain, are infected on days -6 .. 0; the epicentre is that district's
prefecture. Each day a susceptible present in district d (where they spend the day: a same-day traveller's
destination, otherwise where they sleep) is infected with probability 1 − exp(−β·I_d/N_d), I_d the
infectious persons present, N_d all persons present, β = 0.4/day (R0 ≈ 2.6) and a quarter of that from the
distancing day (R ≈ 0.66); the infector is one of the I_d, drawn uniformly. Incubation is lognormal (mean
5.2 days, Li et al. 2020); infectiousness starts two days before onset. 80 % of infections are ascertained
and confirmed 2 + Poisson(2) days after onset (at most 10), and are isolated from then on (no longer
infectious, start no new trip); the rest stay infectious for a week after onset and are never reported. In
the default world about 7 persons per thousand are confirmed over the 60 days (far more in Wuhan, whose
districts hold a few hundred persons each).

**Line list.** A confirmed row per ascertained person reported within the window, ``district`` = where the
person sleeps on the report day, which is where an imported case is found. 30 % of them also have an
earlier ``suspected`` row (between onset and the day before confirmation; within the window). For each
confirmed case, Poisson(3) ``close_contact`` rows are traced on its report day among persons sleeping in the
same district who are not yet reported; a person is traced once (earliest). Close contacts have
``onset_date`` NULL (they are not known to be ill). A confirmed or suspected row is ``imported`` when the
person was infected outside the row's district, or the row's district lies outside the epicentre and the
person spent a night in the epicentre within the 14 days before onset (the investigation's travel
history); close contacts are never imported. A cluster is a chain of transmission within one district (the
infector infected in the same district), cut after three generations so that it stays the size of a
household or a workplace; confirmed rows of a cluster with at least two confirmed cases carry its
``cluster_id`` (1, 2, ... in order of the root's infection), all others NULL. Each person is served by one
health network (45/35/20 % between health-net-1, -2 and -3), so a person's rows live in one network and a
cluster's cases may be spread over several.

**Signalling.** Each person has 1 + Poisson(3) events a day at uniform times, at a random cell of the
district they are in at that moment (before a move: the origin; after it: the destination), plus one event
within an hour after every arrival, so every district change is a telecom trip. Cells: per carrier and
district max(2, ⌈√subscribers/2⌉); cell ids are unique per carrier ((carrier + 1)·10⁸ + n). Events are
written in time order.

**Exodus, restriction, return wave** (movement on the timeline's days; :class:`.world.TravelRules`). From the
start of the travel season (day 9, 2020-01-10) to New Year's Eve (day 23), 2.4 % a day of the residents of
city districts (names ending in 区) who are at home leave for a home town: a county outside their own
prefecture, drawn by a flatter gravity model (distance^-1) over county weights. About 30 % of city residents
are away over the holiday, so city presence dips and county presence rises. They come back on a uniform day
of the return wave's first 10 days (days 40 .. 49), so city presence recovers against the pre-outbreak
baseline (days 0 .. 8). From the restriction day (day 22, 2020-01-23) the epicentre prefecture (Wuhan, 4201)
is closed for the rest of the scenario: no trip starts from or into it and a return that would cross its
border waits, so the residents who left in the exodus, the outflow from Wuhan, stay in their destinations
(and carry the epidemic there), and nobody enters or leaves afterwards. Elsewhere the trip rate falls to 30 %
of normal from the distancing day (day 23) and to 60 % from the return wave.

**Tickets.** 40 % of the district changes (outbound and return legs alike) are ticketed, with mode by
great-circle distance times a lognormal perturbation (σ 0.3): coach < 150 km, rail < 800 km, air beyond;
departure on the trip's day, to the minute. Operators transport-a/b/c each sell every mode (50/30/20 %); see
:func:`.records.ticket_records` for why there is no one-operator-per-mode split.

**Writing** (:mod:`.write`). The world (homes, each day's moves, night locations, the epidemic) is simulated
whole; the signalling, nearly all of the rows, is then drawn one day at a time and each day's events go straight
into the three carriers' stores (and a per-column spool for ``content_sha256``), so memory holds one day of
events, not the scenario's: a national world of 1,000,000 persons over 28 days (114 M events) is written in
about two minutes with a peak of 1.4 GiB on two cores (BENCHMARKS.md §8). The draws are the same whichever way
the rows are written, so a seed gives the same tables.

Ids: subscriber, passenger and case-list person ids are all the person's id (index + 1); no federated query
joins across agencies, tests use them to check the world's coherence. Each subscriber has a unique E.164
number (``subscribers.msisdn``) in its carrier's own mobile prefixes (:data:`.records.CARRIER_PREFIXES`), for
the subscriber's own itinerary request.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fedbroker.scenario.write import DEFAULT_PROVINCES, ScenarioExistsError, ScenarioSummary, generate_scenario

__all__ = [
    "DEFAULT_PROVINCES",
    "ScenarioExistsError",
    "ScenarioSummary",
    "add_arguments",
    "generate_scenario",
    "run",
]

_LAZY = {"DEFAULT_PROVINCES", "ScenarioExistsError", "ScenarioSummary", "generate_scenario"}


def __getattr__(name: str) -> Any:
    # The CLI builds its parser from add_arguments; numpy and DuckDB load only when a scenario is generated.
    if name in _LAZY:
        from fedbroker.scenario import write

        return getattr(write, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _province_list(text: str) -> tuple[int, ...]:
    try:
        codes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of province codes such as 42,43") from None
    if not codes:
        raise argparse.ArgumentTypeError("give at least one province code, e.g. 42")
    return codes


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``fedbroker scenario generate`` (README.md, "The command line")."""
    parser.add_argument("--out", type=Path, required=True, help="directory to write the scenario into")
    domain = parser.add_mutually_exclusive_group()
    domain.add_argument(
        "--provinces",
        type=_province_list,
        help="comma-separated two-digit province codes (default: Hubei 42 and its neighbours)",
    )
    domain.add_argument("--national", action="store_true", help="every province of mainland China")
    parser.add_argument("--subscribers", type=_positive, default=100_000, help="persons in the world (default 100000)")
    parser.add_argument("--days", type=_positive, default=60, help="days from 2020-01-01 (default 60)")
    parser.add_argument("--seed", type=int, default=20200101, help="random seed (default 20200101)")
    parser.add_argument("--force", action="store_true", help="replace a different scenario already in --out")


def run(args: argparse.Namespace) -> int:
    """Generate the scenario described by ``args``; print a summary. Returns the exit status."""
    from fedbroker.scenario.write import DEFAULT_PROVINCES, ScenarioExistsError, generate_scenario
    from federation.errors import InvalidQuery

    provinces = None if args.national else (args.provinces or DEFAULT_PROVINCES)
    try:
        summary = generate_scenario(
            args.out,
            provinces=provinces,
            subscribers=args.subscribers,
            days=args.days,
            seed=args.seed,
            force=args.force,
        )
    except (ScenarioExistsError, InvalidQuery, ValueError) as error:
        message = error.message if isinstance(error, InvalidQuery) else str(error)
        print(f"fedbroker scenario generate: {message}", file=sys.stderr)
        return 2
    print(
        f"wrote scenario {summary.name!r} to {summary.out}: {summary.districts} districts, "
        f"{summary.persons} persons, {summary.days} days, seed {summary.seed}, "
        f"epidemic seeded in {summary.seed_district} ({summary.seconds:.1f} s)"
    )
    for agency_id, tables in summary.rows.items():
        counts = ", ".join(f"{table} {rows:,}" for table, rows in tables.items())
        print(f"  {agency_id:<13} {counts}")
    print(f"roster: {summary.federation}")
    return 0
