"""Render a released answer for people (table), spreadsheets (csv) and scripts (json: docs/protocol.md, "Results")."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from broker.client import Answer
from fedbroker.exports import csv_text
from federation.v1 import broker_pb2

SUPPRESSED = "·"  # shown where disclosure control suppressed a cell


def _text(value: Any) -> str:
    if value is None:
        return SUPPRESSED
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, int):
        return str(value)
    return str(value)


def _width(text: str) -> int:
    # CJK characters take two terminal columns.
    return sum(2 if ord(ch) > 0x2E80 else 1 for ch in text)


def _pad(text: str, width: int, right: bool) -> str:
    gap = " " * max(0, width - _width(text))
    return gap + text if right else text + gap


def _grid(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    cells = [[_text(v) for v in row] for row in rows]
    numeric = [all(isinstance(r[i], int | float) or r[i] is None for r in rows) for i in range(len(columns))]
    widths = [max([_width(c), *(_width(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(_pad(c, w, n) for c, w, n in zip(columns, widths, numeric, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(_pad(c, w, n) for c, w, n in zip(r, widths, numeric, strict=True)) for r in cells]
    return lines


def format_grid(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A fixed-width table of ``rows`` under ``columns`` (numbers right-aligned, CJK counted double)."""
    return "\n".join(_grid(columns, rows))


def _shown(rows: Sequence[Any], limit: int | None) -> str:
    return f"{limit} of {len(rows)} rows" if limit and len(rows) > limit else f"{len(rows)} rows"


def format_table(answer: Answer, *, limit: int | None = None) -> str:
    """Fixed-width tables (the main one, then any further ones) with a footer: rows shown, suppressed cells,
    coverage and notes."""
    lines = _grid(answer.columns, answer.rows[:limit] if limit else answer.rows)
    lines.append("")
    lines.append(
        f"{_shown(answer.rows, limit)}; {answer.suppressed} suppressed by disclosure control "
        f"({SUPPRESSED} = suppressed, or a derived value not released)"
    )
    for table in answer.tables:
        rows = table["rows"]
        lines.append("")
        lines.append(f"table {table['name']}: {_shown(rows, limit)}; {table['suppressed']} suppressed")
        lines += _grid(table["columns"], rows[:limit] if limit else rows)
    lines.append("")
    lines += coverage_lines(answer)
    lines += [f"note: {n}" for n in answer.notes]
    return "\n".join(lines)


def coverage_lines(answer: Answer) -> list[str]:
    out = []
    for name, cover in answer.contributors.items():
        line = f"round {name}: {len(cover['contributed'])} contributed ({', '.join(cover['contributed'])})"
        if cover["missing"]:
            line += f"; MISSING {'; '.join(cover['missing'])}"
        out.append(line)
    out += privacy_lines(answer)
    return out


def privacy_lines(answer: Answer) -> list[str]:
    """One line per round: the noise on its sum (σ per cell) and the privacy budget it spent and left."""
    out = []
    for p in answer.privacy:
        if p["noise"] == "none":
            out.append(f"round {p['round']}: exact sums (noise: none)")
            continue
        if not p["rho_spent"]:
            # A window-free sum (residents) released earlier in its period, reused by the broker.
            out.append(
                f"round {p['round']}: discrete Gaussian noise, sigma {p['sigma']:.2f} per cell; reused from its "
                f"period's release, no rho spent, {p['rho_left']:.4g} left"
            )
            continue
        out.append(
            f"round {p['round']}: discrete Gaussian noise, sigma {p['sigma']:.2f} per cell; "
            f"rho {p['rho_spent']:.4g} spent per data day, {p['rho_left']:.4g} left"
        )
    return out


def format_csv(answer: Answer) -> str:
    """The main table as CSV: a suppressed cell is empty and unquoted, text is always quoted (see
    :mod:`fedbroker.exports`); further tables are in the JSON output and in ``--output`` folders."""
    return csv_text(answer.columns, answer.rows)


def format_json(answer: Answer) -> str:
    return json.dumps(answer.to_json_dict(), ensure_ascii=False, indent=2)


def render(answer: Answer, fmt: str, *, limit: int | None = None) -> str:
    if fmt == "json":
        return format_json(answer)
    if fmt == "csv":
        return format_csv(answer)
    return format_table(answer, limit=limit)


def importation_summary(answer: Answer, *, top: int = 10) -> str:
    """The demo's reading of an importation-risk answer: the districts most at risk, alerts first, and where
    their risk comes from."""
    col = {c: i for i, c in enumerate(answer.columns)}
    rows: Sequence[list[Any]] = answer.rows
    alerts = [r for r in rows if r[col["alert"]]]
    q = answer.query
    head = [
        f"Importation risk, {q['start']} .. {q['end']} ({q['params'].get('window_days', '14')} days), "
        f"threshold I_d >= {q['params'].get('threshold', '1.0')}",
        f"{len(rows)} districts released, {len(alerts)} on alert, {answer.suppressed} suppressed (inflow below k)",
        "",
    ]
    shown = Answer(
        query=answer.query,
        columns=answer.columns,
        rows=list(rows[:top]),
        suppressed=answer.suppressed,
        contributors=answer.contributors,
        notes=answer.notes,
        privacy=answer.privacy,
    )
    return "\n".join(head) + format_table(shown)


def tier_summary(answer: Answer, *, top: int = 5) -> str:
    """The demo's reading of a warning answer: how many districts are in each official risk tier, and the
    highest-tier districts with their counts and alarms."""
    col = {c: i for i, c in enumerate(answer.columns)}
    rows: Sequence[list[Any]] = answer.rows
    count = {tier: sum(1 for r in rows if r[col["tier"]] == tier) for tier in ("high", "medium", "low")}
    q = answer.query
    head = [
        f"Risk tiers (February 2020 rule) for the 14 days ending {q['end']}: "
        f"{count['high']} high, {count['medium']} medium, {count['low']} low",
        "",
    ]
    shown = Answer(
        query=answer.query,
        columns=answer.columns,
        rows=[r for r in rows if r[col["tier"]] != "low"][:top],
        suppressed=answer.suppressed,
        contributors=answer.contributors,
        notes=[],
        privacy=answer.privacy,
    )
    return "\n".join(head) + format_table(shown)


def format_budget(budget: broker_pb2.FederationBudget, *, fmt: str = "table") -> str:
    """The ledgers as the agencies report them: per agency, ρ spent and left on each data day it has charged."""
    if fmt == "json":
        document = {
            "agencies": [
                {
                    "node_id": a.node_id,
                    "noise": a.noise,
                    "rho_per_day": a.rho_per_day,
                    "days": {d.day: {"spent": d.spent, "left": max(0.0, a.rho_per_day - d.spent)} for d in a.days},
                }
                for a in budget.agencies
            ],
            "missing": list(budget.missing),
        }
        return json.dumps(document, indent=2)
    lines = []
    for agency in budget.agencies:
        if agency.noise == "none":
            lines.append(f"{agency.node_id}: noise none (exact sums), no budget kept")
            continue
        lines.append(f"{agency.node_id}: rho_per_day {agency.rho_per_day:g}, {len(agency.days)} day(s) charged")
        for day in agency.days:
            left = max(0.0, agency.rho_per_day - day.spent)
            lines.append(f"  {day.day:<12} spent {day.spent:.4g}  left {left:.4g}")
    lines += [f"MISSING {m}" for m in budget.missing]
    return "\n".join(lines)
