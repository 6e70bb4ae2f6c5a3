"""``python -m bench utility``: how close a noisy answer comes to the exact one, over many noise draws.

Not a timing: an accuracy benchmark of the noise a roster's privacy policy adds. For one query of a generated
scenario, each agency's aggregate is computed once in its own store, exactly as its adapter computes it
(:func:`adapters.aggregates.compute_aggregate`); each run then adds every agency's own share of discrete Gaussian
noise to it with the adapters' sampler and σ (:func:`federation.privacy.release.add_noise`, with the cost the
broker's budget mirror plans for a round of t = the kind's ``min_contributors``), sums the shares mod 2^64 as the
secure round would deliver them, and builds the answer with the kind's own post-processing
(:meth:`federation.catalog.base.QueryKind.release`). The exact answer is the same build over the sums without
noise. No node is started and no ledger is charged: this measures the mechanism, not the protocol (the protocol's
sums equal these, tests/test_demo.py checks it end to end).

Printed per run, against the exact answer:

- ``warning``: importation alerts (noisy, of them also exact, exact), high and medium tier (kept of exact, and
  districts the noise put in a higher tier than the exact one);
- ``importation-risk``: alerts as above, and how many of the exact top-10 destinations by I_d stay in the noisy
  top 10.

``--rho-per-round`` overrides the roster's ``broker.privacy.rho_per_round`` (the broker still lowers it where
an agency's share of the noise would have variance below 1), ``--rho-per-day`` is irrelevant here (no ledger).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import statistics
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from adapters.aggregates import AggregateRequest, compute_aggregate
from adapters.backends import open_backend
from bench._common import print_header, print_table
from broker.budget import BudgetMirror
from federation.catalog import NATIONAL, Release, RoundPlan, kind
from federation.catalog.result import QueryResult
from federation.config import FederationConfig, load_federation
from federation.privacy.release import add_noise
from federation.queries import Query
from federation.registry import Registry, load_registry

KINDS = ("warning", "importation-risk")


def exact_parts(
    config: FederationConfig, registry: Registry, rounds: Sequence[RoundPlan]
) -> dict[str, list[npt.NDArray[np.uint64]]]:
    """Every round's vector at every agency of its kind (uint64, no noise), by round name."""
    parts: dict[str, list[npt.NDArray[np.uint64]]] = {}
    for plan in rounds:
        parts[plan.name] = []
        for node in config.nodes:
            if node.kind != plan.agency_kind:
                continue
            store = open_backend(node.location())
            try:
                parts[plan.name].append(
                    compute_aggregate(
                        store,
                        AggregateRequest(
                            name=plan.aggregate,
                            domain=registry.codes,
                            start=plan.start,
                            end=plan.end,
                            params=dict(plan.params),
                            max_trips_per_day=node.policy.privacy.max_trips_per_day,
                        ),
                    )
                )
            finally:
                store.close()
    return parts


def noisy_release(
    config: FederationConfig,
    registry: Registry,
    query: Query,
    rounds: Sequence[RoundPlan],
    parts: Mapping[str, list[npt.NDArray[np.uint64]]],
    mirror: BudgetMirror,
    *,
    noise: bool,
) -> Release:
    """The release the broker would build: each round's sum over its agencies, each agency's noise share added
    when ``noise``, and σ of every noisy round."""
    sums: dict[str, npt.NDArray[np.uint64]] = {}
    sigma: dict[str, float] = {}
    for plan in rounds:
        agencies = [n for n in config.nodes if n.kind == plan.agency_kind]
        threshold = min(n.policy.min_contributors for n in agencies)
        budget = mirror.plan(
            [n.id for n in agencies], plan.aggregate, plan.start, plan.end, threshold, plan.length, query.end
        )
        total = np.zeros(plan.length, dtype=np.uint64)
        for node, part in zip(agencies, parts[plan.name], strict=True):
            share = part.copy()
            cost = budget.costs[node.id]
            if noise and cost.noisy:
                add_noise(share, cost.party_sigma2)
            np.add(total, share, out=total)
        sums[plan.name] = total
        if noise and any(c.noisy for c in budget.costs.values()):
            sigma[plan.name] = mirror.sigma(budget, [n.id for n in agencies])
    disclosure = config.broker
    return Release(registry, sums, disclosure.mobility_k, disclosure.cases_k, NATIONAL, sigma)


def _column(result: QueryResult, name: str) -> dict[int, object]:
    index = result.columns.index(name)
    return {int(str(row[0])): row[index] for row in result.rows}


def compare(kind_name: str, exact: QueryResult, noisy: QueryResult) -> dict[str, int]:
    """The figures of one noisy answer against the exact one (module docstring)."""
    alert_column = "importation_alert" if kind_name == "warning" else "alert"
    exact_alerts = {d for d, a in _column(exact, alert_column).items() if a is True}
    noisy_alerts = {d for d, a in _column(noisy, alert_column).items() if a is True}
    figures = {
        "alerts": len(noisy_alerts),
        "alerts kept": len(noisy_alerts & exact_alerts),
        "exact alerts": len(exact_alerts),
    }
    if kind_name == "warning":
        rank = {"low": 0, "medium": 1, "high": 2}
        exact_tier, noisy_tier = _column(exact, "tier"), _column(noisy, "tier")
        for tier in ("high", "medium"):
            wanted = {d for d, t in exact_tier.items() if t == tier}
            figures[f"{tier} kept"] = sum(noisy_tier[d] == tier for d in wanted)
            figures[f"exact {tier}"] = len(wanted)
        figures["raised"] = sum(rank[str(noisy_tier[d])] > rank[str(t)] for d, t in exact_tier.items())
    else:
        index_of = {
            d: float(v) if isinstance(v, int | float) else 0.0 for d, v in _column(exact, "importation_index").items()
        }
        noisy_index = {
            d: float(v) if isinstance(v, int | float) else 0.0 for d, v in _column(noisy, "importation_index").items()
        }
        top = set(sorted(index_of, key=lambda d: (-index_of[d], d))[:10])
        noisy_top = set(sorted(noisy_index, key=lambda d: (-noisy_index[d], d))[:10])
        figures["top-10 kept"] = len(top & noisy_top)
    return figures


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench utility", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", type=Path, required=True, help="a scenario directory (its federation.yaml)")
    parser.add_argument("--kind", choices=KINDS, default="warning")
    parser.add_argument("--end", type=dt.date.fromisoformat, help="the query's last day (default: the data's last)")
    parser.add_argument("--runs", type=int, default=5, help="noise draws (default 5)")
    parser.add_argument("--rho-per-round", type=float, help="override broker.privacy.rho_per_round")
    args = parser.parse_args(argv)

    config = load_federation(args.scenario / "federation.yaml")
    if args.rho_per_round is not None:
        config = dataclasses.replace(
            config, broker=dataclasses.replace(config.broker, rho_per_round=args.rho_per_round)
        )
    registry = load_registry(config.domain.provinces)
    end = args.end or config.data_end
    query_kind = kind(args.kind)
    start, params = query_kind.resolve_window(
        None if query_kind.trailing_window else config.data_start, end, {}, config.data_start
    )
    query = Query(args.kind, start, end, params, "bench-utility", "0" * 32, "2026-12-01T00:00:00Z")
    query_kind.validate(query)
    rounds = query_kind.rounds(query, registry, NATIONAL)

    print_header("utility", argv)
    print(f"{args.kind} over {start}..{end}, {len(registry)} districts, rho per round {config.broker.rho_per_round:g}")
    began = time.perf_counter()
    parts = exact_parts(config, registry, rounds)
    print(f"aggregates computed in the stores: {time.perf_counter() - began:.1f} s")
    with tempfile.TemporaryDirectory(prefix="fedbroker-bench-utility-") as ledgers:
        mirror = BudgetMirror(config, Path(ledgers))
        exact = query_kind.release(query, noisy_release(config, registry, query, rounds, parts, mirror, noise=False))
        sample = noisy_release(config, registry, query, rounds, parts, mirror, noise=True)
        print("sigma per cell: " + ", ".join(f"{name} {value:.2f}" for name, value in sample.sigma.items()))
        rows = []
        for run in range(1, args.runs + 1):
            release = sample if run == 1 else noisy_release(config, registry, query, rounds, parts, mirror, noise=True)
            rows.append({"run": run, **compare(args.kind, exact, query_kind.release(query, release))})
    names = list(rows[0])
    print_table(names, [[row[n] for n in names] for row in rows])
    if len(rows) > 1:
        print("median: " + ", ".join(f"{n} {statistics.median(row[n] for row in rows):g}" for n in names[1:]))
    return 0
