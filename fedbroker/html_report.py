"""``fedbroker report``: the day's situation as one self-contained HTML file.

Nothing is fetched: no script, no font, no image from anywhere (a Content-Security-Policy of ``default-src
'none'`` says so to the browser); maps and charts are inline SVG drawn from the released answers and the
district registry's coordinates (one point per district: no province outlines are shipped, since no outline
geometry with a licence we can ship is part of the registry). Sections: the importation-risk map and ranking,
the largest flows, Rt curves per area with their intervals (when the federation has the ``trend`` kind), the
risk tiers (``warning``), coverage / suppression / notes of every answer, and the signed queries it rests on.
"""

from __future__ import annotations

import bisect
import datetime as dt
import html
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from broker.client import Answer
from federation.registry import Registry

MAP_W, MAP_H = 720, 520
TIER_COLOURS = {"high": "#c0392b", "medium": "#e67e22", "low": "#27ae60"}
RISK_RAMP = ("#fff5eb", "#fdd0a2", "#fdae6b", "#fd8d3c", "#f16913", "#d94801", "#8c2d04")
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
_CSS = """
body{font:14px/1.45 system-ui,'Noto Sans CJK SC',sans-serif;margin:24px auto;max-width:1180px;color:#222}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
.meta{color:#666}.grid{display:flex;flex-wrap:wrap;gap:16px}.card{border:1px solid #ddd;padding:8px}
table{border-collapse:collapse;font-size:13px}th,td{padding:3px 8px;border-bottom:1px solid #eee;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}pre{background:#f7f7f7;padding:8px;overflow:auto;font-size:12px}
svg text{font:11px system-ui,'Noto Sans CJK SC',sans-serif}.legend span{display:inline-block;width:14px;height:10px}
"""


@dataclass(frozen=True)
class ReportInputs:
    """What a report is made of: the answers (importation-risk required; flows, warning, trend optional)."""

    federation: str
    coordinator: str
    registry: Registry
    importation: Answer
    flows: Answer | None = None
    warning: Answer | None = None
    trend: Answer | None = None


def render_report(inputs: ReportInputs, *, generated: dt.datetime | None = None) -> str:
    """The whole report as one HTML document (UTF-8 text, no external reference)."""
    risk = inputs.importation
    stamp = (generated or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%d %H:%M UTC")
    window = f"{risk.query['start']} .. {risk.query['end']}"
    answers = [a for a in (risk, inputs.flows, inputs.warning, inputs.trend) if a is not None]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="zh-CN"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        f"<title>fedbroker report {html.escape(risk.query['end'])}</title><style>{_CSS}</style></head><body>",
        f"<h1>Epidemic situation, {html.escape(risk.query['end'])}</h1>",
        f'<p class="meta">federation {_e(inputs.federation)} · coordinator {_e(inputs.coordinator)} · '
        f"window {_e(window)} · generated {stamp}</p>",
        "<h2>Importation risk</h2>",
        '<div class="grid">',
        _card(_risk_map(inputs)),
    ]
    if inputs.warning is not None:
        parts.append(_card(_tier_map(inputs)))
    parts.append("</div>")
    parts.append(
        _table(risk, ("district", "name", "province", "importation_index", "inflow", "top_origins", "alert"), 20)
    )
    if inputs.flows is not None:
        parts += ["<h2>Largest flows</h2>", _table(inputs.flows, inputs.flows.columns, 15)]
    if inputs.trend is not None:
        parts += ["<h2>Reproduction number R<sub>t</sub> with 95% intervals</h2>", _rt_charts(inputs.trend)]
    if inputs.warning is not None:
        tiers = [
            c
            for c in ("district", "name", "province", "tier", "new_14d", "cumulative", "tier_since")
            if c in inputs.warning.columns
        ]
        parts += ["<h2>Risk tiers</h2>", _tier_counts(inputs.warning), _table(inputs.warning, tiers, 30, order="tier")]
    parts += ["<h2>Coverage, suppression and notes</h2>", *(_coverage(a) for a in answers)]
    parts += ["<h2>Signed queries this report rests on</h2>"]
    parts += [f'<pre class="query">{_e(json.dumps(a.query, ensure_ascii=False, indent=1))}</pre>' for a in answers]
    parts.append("</body></html>")
    return "\n".join(parts)


# -- maps ---------------------------------------------------------------------------------------------------------


class _Projection:
    """Equirectangular, scaled by cos(mean latitude), fitted to the map's box with a margin."""

    def __init__(self, registry: Registry) -> None:
        lon, lat = registry.lon, registry.lat
        self.lon0, self.lat1 = float(lon.min()), float(lat.max())
        self.k = math.cos(math.radians(float(lat.mean())))
        width = (float(lon.max()) - self.lon0) * self.k or 1.0
        height = (self.lat1 - float(lat.min())) or 1.0
        self.scale = min((MAP_W - 40) / width, (MAP_H - 40) / height)

    def __call__(self, lon: float, lat: float) -> tuple[float, float]:
        return 20 + (lon - self.lon0) * self.k * self.scale, 20 + (self.lat1 - lat) * self.scale


def _positions(registry: Registry) -> dict[int, tuple[float, float]]:
    project = _Projection(registry)
    return {
        code: project(lon, lat)
        for code, lon, lat in zip(registry.codes.tolist(), registry.lon.tolist(), registry.lat.tolist(), strict=True)
    }


def _risk_map(inputs: ReportInputs) -> str:
    where = _positions(inputs.registry)
    risk = inputs.importation
    at = {c: i for i, c in enumerate(risk.columns)}
    values = {int(r[at["district"]]): float(r[at["importation_index"]]) for r in risk.rows}
    ordered = sorted(v for v in values.values() if v > 0)
    marks = [
        f'<svg id="risk-map" class="map" width="{MAP_W}" height="{MAP_H}" role="img" aria-label="importation risk map">'
    ]
    marks.append(f'<rect width="{MAP_W}" height="{MAP_H}" fill="#f4f7fa"/>')
    if inputs.flows is not None:
        marks += _flow_lines(inputs.flows, where)
    for code, (x, y) in where.items():
        if code not in values:
            marks.append(f'<circle class="district unreleased" cx="{x:.1f}" cy="{y:.1f}" r="1.6" fill="#c8ccd0"/>')
    for code, value in sorted(values.items(), key=lambda kv: kv[1]):
        x, y = where[code]
        colour = RISK_RAMP[_bucket(value, ordered, len(RISK_RAMP))]
        marks.append(
            f'<circle class="district released" cx="{x:.1f}" cy="{y:.1f}" r="{2.5 + min(5.0, math.log1p(value)):.1f}" '
            f'fill="{colour}" stroke="#555" stroke-width="0.3"><title>{code} I={value:.3g}</title></circle>'
        )
    legend = "".join(
        f'<rect x="{20 + 18 * i}" y="{MAP_H - 22}" width="16" height="10" fill="{c}"/>' for i, c in enumerate(RISK_RAMP)
    )
    marks.append(
        legend + f'<text x="{30 + 18 * len(RISK_RAMP)}" y="{MAP_H - 13}">I_d, low → high (grey: not released)</text>'
    )
    marks.append("</svg>")
    return "\n".join(marks)


def _flow_lines(flows: Answer, where: dict[int, tuple[float, float]], top: int = 40) -> list[str]:
    at = {c: i for i, c in enumerate(flows.columns)}
    rows = [r for r in flows.rows if r[at["trips"]] is not None][:top]
    largest = max((int(r[at["trips"]]) for r in rows), default=1)
    lines = []
    for row in rows:
        a, b = where.get(int(row[at["origin"]])), where.get(int(row[at["destination"]]))
        if a is None or b is None:
            continue
        width = 0.5 + 3.5 * int(row[at["trips"]]) / largest
        lines.append(
            f'<line class="flow" x1="{a[0]:.1f}" y1="{a[1]:.1f}" x2="{b[0]:.1f}" y2="{b[1]:.1f}" '
            f'stroke="#2c7fb8" stroke-opacity="0.45" stroke-width="{width:.2f}"/>'
        )
    return lines


def _tier_map(inputs: ReportInputs) -> str:
    assert inputs.warning is not None
    where = _positions(inputs.registry)
    at = {c: i for i, c in enumerate(inputs.warning.columns)}
    marks = [f'<svg id="tier-map" class="map" width="{MAP_W}" height="{MAP_H}" role="img" aria-label="risk tier map">']
    marks.append(f'<rect width="{MAP_W}" height="{MAP_H}" fill="#f4f7fa"/>')
    for row in inputs.warning.rows:
        code = int(row[at["district"]])
        if code not in where:
            continue
        x, y = where[code]
        tier = str(row[at["tier"]])
        marks.append(
            f'<circle class="district tier-{_e(tier)}" cx="{x:.1f}" cy="{y:.1f}" r="3" '
            f'fill="{TIER_COLOURS.get(tier, "#999")}"><title>{code} {_e(tier)}</title></circle>'
        )
    legend = " ".join(f"{t}" for t in TIER_COLOURS)
    marks.append(f'<text x="20" y="{MAP_H - 13}">tiers: {legend} (red, orange, green)</text></svg>')
    return "\n".join(marks)


def _bucket(value: float, ordered: Sequence[float], n: int) -> int:
    """Quantile bucket 0..n-1 of ``value`` among the positive released values."""
    if not ordered or value <= 0:
        return 0
    below = bisect.bisect_left(ordered, value)  # ``ordered`` is sorted: no pass over every district per district
    return min(n - 1, below * n // len(ordered))


# -- charts and tables ------------------------------------------------------------------------------------------


def _rt_charts(trend: Answer, width: int = 360, height: int = 180) -> str:
    """One small chart per area: R_t mean as a line, its 95 % interval as a band, the line R = 1."""
    at = {c: i for i, c in enumerate(trend.columns)}
    series: dict[str, list[tuple[str, float, float, float]]] = {}
    names: dict[str, str] = {}
    for row in trend.rows:
        mean, low, high = row[at["r_mean"]], row[at["r_lower"]], row[at["r_upper"]]
        if mean is None or low is None or high is None:
            continue
        area = str(row[at["area"]])
        names[area] = str(row[at["name"]])
        series.setdefault(area, []).append((str(row[at["date"]]), float(mean), float(low), float(high)))
    charts = [_rt_chart(area, names[area], sorted(points), width, height) for area, points in series.items()]
    if not charts:
        return "<p>No area had enough cases for an Rt estimate in this window.</p>"
    return '<div class="grid">' + "".join(_card(c) for c in charts) + "</div>"


def _rt_chart(area: str, name: str, points: Sequence[tuple[str, float, float, float]], width: int, height: int) -> str:
    """(date, mean, lower, upper) points as a band, a line and the threshold R = 1."""
    top = max(2.0, max(p[3] for p in points))
    n = max(1, len(points) - 1)

    def x(i: int) -> float:
        return 34 + (width - 44) * i / n

    def y(value: float) -> float:
        return 10 + (height - 34) * (1 - min(value, top) / top)

    upper = [f"{x(i):.1f},{y(p[3]):.1f}" for i, p in enumerate(points)]
    lower = [f"{x(i):.1f},{y(p[2]):.1f}" for i, p in enumerate(points)]
    line = " ".join(f"{x(i):.1f},{y(p[1]):.1f}" for i, p in enumerate(points))
    one = f"{y(1.0):.1f}"
    return (
        f'<svg class="rt-chart" width="{width}" height="{height}" role="img" aria-label="Rt {_e(name)}">'
        f'<polygon class="rt-band" points="{" ".join(upper + lower[::-1])}" fill="#9ecae1" fill-opacity="0.6"/>'
        f'<line x1="34" x2="{width - 10}" y1="{one}" y2="{one}" stroke="#c0392b" stroke-dasharray="4 3"/>'
        f'<polyline class="rt-curve" points="{line}" fill="none" stroke="#08519c" stroke-width="1.6"/>'
        f'<text x="34" y="{height - 8}">{_e(points[0][0])}</text>'
        f'<text x="{width - 80}" y="{height - 8}">{_e(points[-1][0])}</text>'
        f'<text x="4" y="{float(one) + 4:.1f}">1</text><text x="4" y="14">{top:.1f}</text>'
        f'<text x="{width / 2 - 40:.0f}" y="12">{_e(area)} {_e(name)}</text></svg>'
    )


def _tier_counts(warning: Answer) -> str:
    at = warning.columns.index("tier")
    counts = {t: sum(1 for r in warning.rows if r[at] == t) for t in TIER_COLOURS}
    shown = " · ".join(f'<span style="color:{TIER_COLOURS[t]}">{t}: {n}</span>' for t, n in counts.items())
    return f'<p class="tier-counts">{shown}</p>'


def _table(answer: Answer, columns: Sequence[str], limit: int, *, order: str | None = None) -> str:
    at = [answer.columns.index(c) for c in columns if c in answer.columns]
    rows = list(answer.rows)
    if order is not None and order in answer.columns:
        rank = {"high": 0, "medium": 1, "low": 2}
        i = answer.columns.index(order)
        rows.sort(key=lambda r: rank.get(str(r[i]), 3))
    head = "".join(f"<th>{_e(answer.columns[i])}</th>" for i in at)
    body = "".join("<tr>" + "".join(_td(row[i]) for i in at) + "</tr>" for row in rows[:limit])
    more = f'<p class="meta">{len(rows) - limit} more rows in the saved answer</p>' if len(rows) > limit else ""
    table = f'<table class="answer" data-kind="{_e(answer.kind)}"><thead><tr>{head}</tr></thead>'
    return f"{table}<tbody>{body}</tbody></table>{more}"


def _td(value: Any) -> str:
    if value is None:
        return '<td class="n suppressed" title="suppressed by disclosure control">·</td>'
    if isinstance(value, bool):
        return f"<td>{'yes' if value else ''}</td>"
    if isinstance(value, float):
        return f'<td class="n">{value:.4g}</td>'
    if isinstance(value, int):
        return f'<td class="n">{value}</td>'
    return f"<td>{_e(str(value))}</td>"


def _coverage(answer: Answer) -> str:
    rounds = "".join(
        f"<li>round {_e(name)}: {len(c['contributed'])} contributed ({_e(', '.join(c['contributed']))})"
        + (f"; missing {_e('; '.join(c['missing']))}" if c["missing"] else "")
        + "</li>"
        for name, c in answer.contributors.items()
    )
    notes = "".join(f"<li>{_e(n)}</li>" for n in answer.notes)
    return (
        f'<div class="coverage"><b>{_e(answer.kind)}</b>: {len(answer.rows)} rows, {answer.suppressed} suppressed'
        f"<ul>{rounds}{notes}</ul></div>"
    )


def _card(inner: str) -> str:
    return f'<div class="card">{inner}</div>'


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def gather(client: Any, end: dt.date, registry: Registry) -> ReportInputs:
    """Run the report's queries as ``client``'s coordinator: importation-risk for the 14 days ending ``end``, the
    telecom flows of the same window, and ``warning`` and ``trend`` (per province) where the catalog has them."""
    from federation.catalog import KINDS

    importation = client.query("importation-risk", end=end)
    flows = client.query("flows", start=importation.query["start"], end=end, source="telecom")
    warning = client.query("warning", end=end) if "warning" in KINDS else None
    trend = None
    if "trend" in KINDS:
        levels = {p.name for p in KINDS["trend"].params}
        trend = client.query("trend", end=end, **({"level": "province"} if "level" in levels else {}))
    return ReportInputs(
        federation=client.federation.name,
        coordinator=client.coordinator,
        registry=registry,
        importation=importation,
        flows=flows,
        warning=warning,
        trend=trend,
    )
