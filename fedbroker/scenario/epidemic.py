"""Transmission, natural history and the case line list (the model is described in the package docstring).

Days are integers relative to the first day of the window (day 0); seeds may be infected before it. The
dates the model turns on (seeding, distancing) are in :mod:`.timeline`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fedbroker.scenario.timeline import DISTANCING_DAY, IMPORTED_LOOKBACK_DAYS, SEED_INFECTION_DAYS

SEED_INFECTED = 20
# Transmission rate before and after distancing: with about 6.6 infectious days, R0 ≈ 2.6 and, from
# DISTANCING_DAY, R ≈ 0.66 (the reduction the Wuhan measures achieved, Pan et al., JAMA 2020).
BETA_PER_DAY = 0.40
DISTANCING_FACTOR = 0.25
# Incubation period lognormal (Li et al., NEJM 2020: mean 5.2 days): log-mean 1.43, log-sd 0.67.
INCUBATION_LOG_MEAN = 1.43
INCUBATION_LOG_SD = 0.67
PRESYMPTOMATIC_DAYS = 2
ASCERTAINED_SHARE = 0.8
REPORT_DELAY_MIN_DAYS = 2
REPORT_DELAY_POISSON_MEAN = 2.0
REPORT_DELAY_MAX_DAYS = 10
UNREPORTED_INFECTIOUS_DAYS_AFTER_ONSET = 7
SUSPECTED_FIRST_SHARE = 0.3
CONTACTS_PER_CASE_MEAN = 3.0
# A cluster is a chain of transmission within one district, cut after this many generations (the index
# case and two more): an investigation's cluster is a household or a workplace, not a whole city's epidemic.
CLUSTER_GENERATIONS = 3

NEVER = np.int32(2**30)
"""Day value for an event that does not happen (not infected, never reported)."""

CONFIRMED, SUSPECTED, CLOSE_CONTACT = 0, 1, 2
STATUSES = ("confirmed", "suspected", "close_contact")
NO_ONSET = np.int32(-(2**31))
"""Onset day of a close-contact row: written as NULL."""


class Epidemic:
    """Per-person infection timeline: infection, onset, report (isolation) and the infectious interval.

    A person is infectious on days ``infectious_from <= t < infectious_until``: from two days before onset
    (at least one day after infection) until reported, or for a week after onset if never reported. For every
    infection the model also keeps where it happened (``infection_district``, a district index) and who
    caused it (``infector``, a person index; -1 for the seeds), so the line list can say which cases are
    imported and which belong to a cluster.
    """

    def __init__(self, persons: int) -> None:
        self.infection_day = np.full(persons, NEVER, dtype=np.int32)
        self.onset_day = np.full(persons, NEVER, dtype=np.int32)
        self.report_day = np.full(persons, NEVER, dtype=np.int32)
        self.infectious_from = np.full(persons, NEVER, dtype=np.int32)
        self.infectious_until = np.full(persons, NEVER, dtype=np.int32)
        self.infection_district = np.full(persons, -1, dtype=np.int32)
        self.infector = np.full(persons, -1, dtype=np.int32)
        self.seeded = 0

    def seed(self, candidates: npt.NDArray[np.int32], district: int, rng: np.random.Generator) -> None:
        """Infect up to SEED_INFECTED of ``candidates`` (person indices) in ``district`` on days -6 .. 0."""
        chosen = rng.choice(candidates, size=min(SEED_INFECTED, candidates.shape[0]), replace=False)
        days = -rng.integers(0, SEED_INFECTION_DAYS, size=chosen.shape[0], dtype=np.int32)
        persons = np.sort(chosen).astype(np.int32)
        self._infect(persons, days, rng)
        self.infection_district[persons] = district
        self.seeded = int(chosen.shape[0])

    def isolated(self, day: int) -> npt.NDArray[np.bool_]:
        """Persons reported on or before ``day`` (they stay put and no longer transmit)."""
        return self.report_day <= day

    def step(self, day: int, exposure: npt.NDArray[np.int32], districts: int, rng: np.random.Generator) -> int:
        """Infect susceptibles co-located with infectious persons on ``day``; returns the new infections.

        In district d, with I_d infectious and N_d persons present, each susceptible present is infected with
        probability 1 - exp(-β·I_d/N_d), β lowered by DISTANCING_FACTOR from DISTANCING_DAY. Each new
        infection's infector is drawn uniformly among the infectious persons present in its district.
        """
        beta = BETA_PER_DAY * (DISTANCING_FACTOR if day >= DISTANCING_DAY else 1.0)
        infectious = (self.infectious_from <= day) & (day < self.infectious_until)
        present = np.bincount(exposure, minlength=districts)
        sick = np.bincount(exposure[infectious], minlength=districts)
        pressure = 1.0 - np.exp(-beta * sick / np.maximum(present, 1))
        draw = rng.random(exposure.shape[0])
        new = np.flatnonzero((self.infection_day == NEVER) & (draw < pressure[exposure])).astype(np.int32)
        where = exposure[new]
        # Infectious persons grouped by district: infector = the one at a uniform rank within the group.
        spreaders = np.flatnonzero(infectious).astype(np.int32)
        spreaders = spreaders[np.argsort(exposure[spreaders], kind="stable")]
        first = np.cumsum(sick) - sick
        rank = np.floor(rng.random(new.shape[0]) * sick[where]).astype(np.int64)
        self._infect(new, np.full(new.shape[0], day, dtype=np.int32), rng)
        self.infection_district[new] = where
        self.infector[new] = spreaders[first[where] + rank]
        return int(new.shape[0])

    def _infect(self, persons: npt.NDArray[np.int32], days: npt.NDArray[np.int32], rng: np.random.Generator) -> None:
        n = persons.shape[0]
        incubation = np.maximum(
            1, np.rint(rng.lognormal(INCUBATION_LOG_MEAN, INCUBATION_LOG_SD, size=n)).astype(np.int32)
        )
        delay = np.minimum(
            REPORT_DELAY_MIN_DAYS + rng.poisson(REPORT_DELAY_POISSON_MEAN, size=n), REPORT_DELAY_MAX_DAYS
        ).astype(np.int32)
        ascertained = rng.random(n) < ASCERTAINED_SHARE
        onset = days + incubation
        report = np.where(ascertained, onset + delay, NEVER).astype(np.int32)
        self.infection_day[persons] = days
        self.onset_day[persons] = onset
        self.report_day[persons] = report
        self.infectious_from[persons] = np.maximum(days + 1, onset - PRESYMPTOMATIC_DAYS)
        self.infectious_until[persons] = np.where(ascertained, report, onset + UNREPORTED_INFECTIOUS_DAYS_AFTER_ONSET)

    def cluster_roots(self) -> npt.NDArray[np.int32]:
        """Each infected person's cluster root (a person index; -1 for the never infected).

        A person joins the infector's cluster when both were infected in the same district and the
        infector is fewer than CLUSTER_GENERATIONS - 1 generations below the root; otherwise the person
        roots a new cluster. Infectors are always infected on an earlier day, so one pass in day order
        settles every person.
        """
        root = np.full(self.infection_day.shape[0], -1, dtype=np.int32)
        depth = np.zeros(self.infection_day.shape[0], dtype=np.int32)
        infected = np.flatnonzero(self.infection_day != NEVER).astype(np.int32)
        by_day = infected[np.argsort(self.infection_day[infected], kind="stable")]
        days = self.infection_day[by_day]
        for first, last in _runs(days):
            person = by_day[first:last]
            infector = self.infector[person]
            linked = infector >= 0
            safe = np.where(linked, infector, 0)
            linked &= self.infection_district[safe] == self.infection_district[person]
            linked &= depth[safe] < CLUSTER_GENERATIONS - 1
            root[person] = np.where(linked, root[safe], person)
            depth[person] = np.where(linked, depth[safe] + 1, 0)
        return root


def _runs(values: npt.NDArray[np.int32]) -> list[tuple[int, int]]:
    """[first, last) index ranges of the runs of equal values in a sorted array."""
    edges = np.flatnonzero(np.diff(values)) + 1
    bounds = np.concatenate([[0], edges, [values.shape[0]]]).tolist()
    return list(itertools.pairwise(bounds))


@dataclass(frozen=True)
class CaseRows:
    """The line list before it is split between health networks; one entry per row, sorted for case ids.

    ``person`` int32 index; ``status`` int8 index into STATUSES; ``district`` int32 district index;
    ``onset_day`` int32 (NO_ONSET for close contacts); ``report_day`` int32 in [0, days); ``imported``
    bool (never for close contacts); ``cluster_id`` int64, 0 for none (written as NULL).
    """

    person: npt.NDArray[np.int32]
    status: npt.NDArray[np.int8]
    district: npt.NDArray[np.int32]
    onset_day: npt.NDArray[np.int32]
    report_day: npt.NDArray[np.int32]
    imported: npt.NDArray[np.bool_]
    cluster_id: npt.NDArray[np.int64]


def line_list(
    epidemic: Epidemic,
    night_location: npt.NDArray[np.int32],
    epicentre: npt.NDArray[np.bool_],
    rng: np.random.Generator,
) -> CaseRows:
    """Confirmed, suspected and close-contact rows reported within the window.

    ``night_location`` is (days, persons) int32: each person's district at the end of each day, which is
    where a case is reported and where its contacts are traced. ``epicentre`` marks the district indices of
    the outbreak region (the seed district's prefecture), for the imported flag.
    """
    days = night_location.shape[0]

    reported = epidemic.report_day
    confirmed = np.flatnonzero((reported >= 0) & (reported < days)).astype(np.int32)
    c_day = reported[confirmed]

    # Some cases are first reported as suspected, between onset and the day before confirmation.
    ascertained = np.flatnonzero(reported != NEVER).astype(np.int32)
    first_suspected = rng.random(ascertained.shape[0]) < SUSPECTED_FIRST_SHARE
    onset_a = epidemic.onset_day[ascertained]
    wait = np.floor(rng.random(ascertained.shape[0]) * (reported[ascertained] - onset_a)).astype(np.int32)
    s_day_all = onset_a + wait
    keep = first_suspected & (s_day_all >= 0) & (s_day_all < days)
    suspected, s_day = ascertained[keep], s_day_all[keep]

    # Close contacts: a few persons sleeping in the case's district on its report day, not yet reported.
    contacts_per_case = rng.poisson(CONTACTS_PER_CASE_MEAN, size=confirmed.shape[0])
    k_person: list[npt.NDArray[np.int32]] = []
    k_day: list[npt.NDArray[np.int32]] = []
    for day in range(days):
        on_day = c_day == day
        if not np.any(on_day):
            continue
        where = night_location[day]
        by_district = np.argsort(where, kind="stable").astype(np.int32)
        present = np.bincount(where, minlength=int(where.max()) + 1)
        first = np.concatenate([[0], np.cumsum(present)[:-1]])
        index_case = np.repeat(confirmed[on_day], contacts_per_case[on_day])
        district = where[index_case]
        pick = first[district] + np.floor(rng.random(index_case.shape[0]) * present[district]).astype(np.int64)
        contact = by_district[pick]
        fresh = (contact != index_case) & (reported[contact] > day)
        k_person.append(contact[fresh])
        k_day.append(np.full(int(fresh.sum()), day, dtype=np.int32))
    all_contacts = np.concatenate(k_person) if k_person else np.zeros(0, dtype=np.int32)
    all_k_days = np.concatenate(k_day) if k_day else np.zeros(0, dtype=np.int32)
    # A person is traced once: keep the earliest tracing (rows are in day order).
    _, first_trace = np.unique(all_contacts, return_index=True)
    first_trace.sort()
    contact, k_days = all_contacts[first_trace], all_k_days[first_trace]

    person = np.concatenate([confirmed, suspected, contact])
    report_day = np.concatenate([c_day, s_day, k_days]).astype(np.int32)
    status = np.concatenate(
        [
            np.full(confirmed.shape[0], CONFIRMED, dtype=np.int8),
            np.full(suspected.shape[0], SUSPECTED, dtype=np.int8),
            np.full(contact.shape[0], CLOSE_CONTACT, dtype=np.int8),
        ]
    )
    onset = np.where(status == CLOSE_CONTACT, NO_ONSET, epidemic.onset_day[person]).astype(np.int32)
    district = night_location[report_day, person]
    ill = status != CLOSE_CONTACT
    imported = ill & _imported(epidemic, night_location, epicentre, person, district)
    cluster_id = np.where(status == CONFIRMED, _cluster_ids(epidemic, confirmed)[person], 0)
    order = np.lexsort((person, status, report_day))
    return CaseRows(
        person=person[order],
        status=status[order],
        district=district[order].astype(np.int32),
        onset_day=onset[order],
        report_day=report_day[order],
        imported=imported[order],
        cluster_id=cluster_id[order].astype(np.int64),
    )


def _imported(
    epidemic: Epidemic,
    night_location: npt.NDArray[np.int32],
    epicentre: npt.NDArray[np.bool_],
    person: npt.NDArray[np.int32],
    district: npt.NDArray[np.int32],
) -> npt.NDArray[np.bool_]:
    """Per row: infected outside the reporting district, or reported outside the epicentre after a night
    there within IMPORTED_LOOKBACK_DAYS before onset (what the investigation's travel history shows)."""
    days = night_location.shape[0]
    elsewhere = epidemic.infection_district[person] != district
    onset = epidemic.onset_day[person].astype(np.int64)
    back = np.arange(1, IMPORTED_LOOKBACK_DAYS + 1, dtype=np.int64)
    night = onset[:, None] - back[None, :]
    valid = (night >= 0) & (night < days)
    where = night_location[np.clip(night, 0, days - 1), person[:, None]]
    travelled = np.any(valid & epicentre[where], axis=1) & ~epicentre[district]
    result: npt.NDArray[np.bool_] = elsewhere | travelled
    return result


def _cluster_ids(epidemic: Epidemic, confirmed: npt.NDArray[np.int32]) -> npt.NDArray[np.int64]:
    """Per person: the investigation's cluster id (1, 2, ... in order of the root's infection), 0 for none.

    Only clusters with at least two confirmed cases in the line list get an id: a lone case is no cluster.
    """
    root = epidemic.cluster_roots()
    ids = np.zeros(root.shape[0], dtype=np.int64)
    roots, sizes = np.unique(root[confirmed], return_counts=True)
    real = roots[sizes >= 2]
    real = real[np.lexsort((real, epidemic.infection_day[real]))]
    numbered = np.zeros(root.shape[0], dtype=np.int64)
    numbered[real] = np.arange(1, real.shape[0] + 1, dtype=np.int64)
    ids[confirmed] = numbered[root[confirmed]]
    return ids
