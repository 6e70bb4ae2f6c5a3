"""The privacy-budget ledger: ρ spent per data day, persisted as fsynced JSON lines, refused beyond the cap.

Every agency keeps its own (beside its store) and the broker keeps the same accounting for the agencies it
drives, so that it refuses early. One line per charge::

    {"round": "<hex round id>", "aggregate": "telecom.trips", "days": ["2020-01-10", ...], "rho": 0.05}

A window-free aggregate (residents) charges the key ``window-free:<period>`` instead of days, the period being
the calendar month of the signed query's end (``window-free:2020-02``): each agency's budget for it renews per
period, and the broker reuses one release per period (``broker/reuse.py``). The file is appended and
fsynced before the charge counts, and read back whole at start-up, so the spent budget survives restarts; a
torn last line (a crash mid-write) is ignored, which can only under-count a charge whose round never got its
answer, since the answer is sent only after the fsync.

Reservations: a round is *reserved* when it opens (in memory only) and *charged* when its data-derived output
is about to leave (:meth:`BudgetLedger.charge`); a reservation whose round dies first is released. Every check
counts charged plus reserved ρ, so rounds in progress together never exceed the cap, and a restart, which
kills every round in progress, drops every reservation and keeps every charge. The file holds charges only,
in the format above, so ledgers written before reservations existed read back unchanged.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from federation.config import NodeConfig
from federation.errors import BudgetExhausted
from federation.privacy.accounting import WINDOW_FREE

__all__ = ["BudgetLedger", "ledger_days", "ledger_path"]

#: Slack for float sums (a cap of 1.0 must admit twenty charges of 0.05).
_TOLERANCE = 1e-9


def ledger_path(node: NodeConfig) -> Path:
    """An agency's ledger file: ``<store directory>/<node id>.budget.jsonl``, beside its store."""
    return node.store.parent / f"{node.id}.budget.jsonl"


def ledger_days(start: dt.date | None, end: dt.date | None, period: str | None = None) -> list[str]:
    """The ledger keys a release over [start, end] charges: each ISO day; without a window the key
    ``window-free:<period>`` (plain ``window-free`` when no period is given)."""
    if start is None or end is None:
        return [WINDOW_FREE if period is None else f"{WINDOW_FREE}:{period}"]
    return [(start + dt.timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]


class BudgetLedger:
    """ρ spent (charged) and held (reserved by rounds in progress) per ledger key, against one cap per key
    (``rho_per_day``). Thread-safe."""

    def __init__(self, path: Path, *, owner: str, rho_per_day: float) -> None:
        self._path = path
        self._owner = owner
        self._cap = rho_per_day
        self._lock = threading.Lock()
        self._spent: dict[str, float] = defaultdict(float)
        self._held: dict[str, float] = defaultdict(float)
        self._rounds: set[str] = set()  # charged round ids
        self._reserved: dict[str, tuple[tuple[str, ...], float]] = {}  # round id -> (days, rho)
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue  # a torn last line
                self._rounds.add(str(entry["round"]))
                for day in entry["days"]:
                    self._spent[str(day)] += float(entry["rho"])

    @property
    def cap(self) -> float:
        return self._cap

    def spent(self) -> Mapping[str, float]:
        """ρ charged per ledger key so far (a copy; reservations are not spent)."""
        with self._lock:
            return dict(self._spent)

    def reserved(self) -> Mapping[str, float]:
        """ρ held per ledger key by rounds in progress (a copy; keys with nothing held are left out)."""
        with self._lock:
            return {day: rho for day, rho in self._held.items() if rho > _TOLERANCE}

    def left(self, days: Iterable[str]) -> dict[str, float]:
        """ρ that may still be charged per key: the cap less what is charged (reservations not deducted)."""
        with self._lock:
            return {day: max(0.0, self._cap - self._spent.get(day, 0.0)) for day in days}

    def check(self, days: Sequence[str], rho: float) -> None:
        """Raise :class:`BudgetExhausted` naming the days and what is left if ``rho`` does not fit on each day
        beside what is charged and reserved."""
        with self._lock:
            self._check_locked(days, rho)

    def _check_locked(self, days: Sequence[str], rho: float) -> None:
        def used(day: str) -> float:
            return self._spent.get(day, 0.0) + self._held.get(day, 0.0)

        short = [day for day in days if used(day) + rho > self._cap + _TOLERANCE]
        if short:
            shown = ", ".join(self._left_text(day, used(day)) for day in short[:8])
            more = f" and {len(short) - 8} more" if len(short) > 8 else ""
            raise BudgetExhausted(
                f"{self._owner} refused: this release needs rho {rho:.4g} per day, but its privacy budget of "
                f"{self._cap:g} per day is spent or reserved beyond that on {shown}{more}; pick other days, wait "
                "for rounds in progress to end, or for the agencies to raise rho_per_day"
            )

    def _left_text(self, day: str, used: float) -> str:
        held = self._held.get(day, 0.0)
        reserved = f", {held:.4g} of it reserved by rounds in progress" if held > _TOLERANCE else ""
        return f"{day} ({max(0.0, self._cap - used):.4g} left{reserved})"

    def reserve(self, round_id: bytes, days: Sequence[str], rho: float) -> None:
        """Hold ``rho`` on each of ``days`` for a round in progress (memory only), or raise
        :class:`BudgetExhausted`. A round already reserved or charged is left as it is."""
        label = round_id.hex()
        with self._lock:
            if label in self._rounds or label in self._reserved:
                return
            self._check_locked(days, rho)
            self._reserved[label] = (tuple(days), rho)
            for day in days:
                self._held[day] += rho

    def release(self, round_id: bytes) -> None:
        """Drop a round's reservation (its round died before anything data-derived left); no-op once charged."""
        with self._lock:
            self._unhold_locked(round_id.hex())

    def _unhold_locked(self, label: str) -> None:
        held = self._reserved.pop(label, None)
        if held is None:
            return
        days, rho = held
        for day in days:
            self._held[day] -= rho
            if self._held[day] <= _TOLERANCE:
                del self._held[day]

    def charge(self, round_id: bytes, aggregate: str, days: Sequence[str], rho: float, *, enforce: bool = True) -> None:
        """Check and record a charge, fsynced before it returns; the round's reservation, if any, becomes the
        charge (a round whose reservation was released meanwhile is checked afresh). A round id is charged once.
        ``enforce=False`` records without checking: the broker's mirror of a charge the agency already made."""
        label = round_id.hex()
        with self._lock:
            if label in self._rounds:
                return
            own = self._reserved.get(label)
            self._unhold_locked(label)
            try:
                if enforce:
                    self._check_locked(days, rho)
            except BudgetExhausted:
                if own is not None:  # put the reservation back: a refused request changes nothing
                    self._reserved[label] = own
                    for day in own[0]:
                        self._held[day] += own[1]
                raise
            line = json.dumps({"round": label, "aggregate": aggregate, "days": list(days), "rho": rho})
            self._path.parent.mkdir(parents=True, exist_ok=True)
            with self._path.open("a", encoding="utf-8") as handle:
                handle.write(line + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            self._rounds.add(label)
            for day in days:
                self._spent[day] += rho
