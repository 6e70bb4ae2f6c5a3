"""What one noisy release costs and how an agency adds its share of the noise (the adapter's masked-input hook).

Shared by the adapter (which adds and charges) and the broker (which mirrors the charge and reports σ), so both
compute the same numbers from the same roster policy.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import numpy.typing as npt

from federation.config import PrivacyPolicy
from federation.errors import PolicyRefused
from federation.privacy.accounting import (
    charged_window,
    parse_rho,
    party_sigma2,
    release_rho,
    sensitivity_squared,
    window_free_period,
)
from federation.privacy.ledger import ledger_days
from federation.privacy.sampler import discrete_gaussian

__all__ = ["NOISE_BLOCK_CELLS", "ReleaseCost", "add_noise", "release_cost"]

#: Cells sampled per block, so noise for a large vector never needs more than a few blocks' memory at once.
NOISE_BLOCK_CELLS = 1 << 20


@dataclass(frozen=True)
class ReleaseCost:
    """One agency's part in one release: the variance of its noise share and the ρ it charges per ledger key."""

    noisy: bool
    party_sigma2: Fraction  # σ²/t added to each cell by this agency (0 without noise)
    rho: float  # accounted zCDP ρ charged on each of ``days`` (0 without noise)
    days: tuple[
        str, ...
    ]  # ledger keys: the data days the release reads (accounting.charged_window), or ("window-free:YYYY-MM",)


def release_cost(
    node_id: str,
    policy: PrivacyPolicy,
    aggregate: str,
    start: dt.date | None,
    end: dt.date | None,
    rho_text: str,
    threshold: int,
    cells: int,
    query_end: dt.date | None = None,
) -> ReleaseCost:
    """The cost of contributing ``cells`` cells of ``aggregate`` to a round with threshold t and ρ ``rho_text``;
    a window-free aggregate charges the period of ``query_end`` (accounting.window_free_period).

    A noisy policy refuses a round that names no ρ (:class:`PolicyRefused`): without it the agency could not
    know how much noise to add.
    """
    period = None if query_end is None else window_free_period(query_end)
    days = tuple(ledger_days(*charged_window(aggregate, start, end), period=period))
    if not policy.noisy:
        return ReleaseCost(False, Fraction(0), 0.0, days)
    if not rho_text:
        raise PolicyRefused(
            f"{node_id} refused: its policy adds discrete Gaussian noise, and the round names no rho to calibrate "
            "it; the broker must send the rho each release spends"
        )
    rho = parse_rho(rho_text)
    sensitivity2 = sensitivity_squared(aggregate, policy.max_trips_per_day)
    variance = party_sigma2(rho, sensitivity2, threshold)
    return ReleaseCost(True, variance, release_rho(sensitivity2, variance, threshold, cells), days)


def add_noise(vector: npt.NDArray[np.uint64], party_variance: Fraction) -> None:
    """Add an independent exact N_Z(0, party_variance) sample to every cell of ``vector`` in place, mod 2^64.

    A negative sample wraps (x + e mod 2^64), so the masked sum over the survivors carries Σ e exactly and the
    broker reads back signed totals. ``vector`` is 1-D uint64.
    """
    for start in range(0, vector.size, NOISE_BLOCK_CELLS):
        block = vector[start : start + NOISE_BLOCK_CELLS]
        noise = discrete_gaussian(block.size, party_variance)
        np.add(block, noise.view(np.uint64), out=block)
