"""The district registry: the county-level divisions of mainland China that every vector is indexed by.

A registry is a table of districts in ascending GB/T 2260 six-digit code order; position ``i`` of every
per-district vector in a round is district ``codes[i]``. The full registry ships as package data
(``federation/data/districts.csv``, provenance in ``federation/data/PROVENANCE.md``); a scenario may use a
subset of provinces, which is then the domain.

**Content hash** (carried by every round; a node with another hash refuses). The canonical serialisation of a
registry is UTF-8 text: the header line ``code,name,prefecture,province,longitude,latitude`` followed by one
line per district in ascending code order, every line ending in ``"\\n"``. A district line is
``f"{code:06d},{name},{prefecture},{province},{longitude:.6f},{latitude:.6f}"`` (decimal degrees, six
decimals, correctly rounded; names never contain ``,``, ``"`` or line breaks). The hash is the lowercase
sha256 hex digest of those bytes. The committed CSV is written in exactly this form, so for the full
registry the hash equals ``sha256sum districts.csv``; a subset's hash is computed the same way over its own
rows. Because the hash is computed from the parsed content, a CRLF checkout does not change it.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources

import numpy as np
import numpy.typing as npt

from federation.errors import InvalidQuery, RegistryMismatch, UnknownDistrict

__all__ = ["CSV_HEADER", "Registry", "load_registry", "province_codes_all"]

CSV_HEADER = "code,name,prefecture,province,longitude,latitude"

# Province-level codes that exist in GB/T 2260 but are outside this (mainland) registry.
_NON_MAINLAND = {71: "Taiwan", 81: "Hong Kong", 82: "Macao"}
_MAX_LISTED_UNKNOWN = 5
_FORBIDDEN_IN_NAMES = (",", '"', "\n", "\r")


def _canonical_text(
    codes: npt.NDArray[np.int32],
    names: Sequence[str],
    prefectures: Sequence[str],
    provinces: Sequence[str],
    lon: npt.NDArray[np.float64],
    lat: npt.NDArray[np.float64],
) -> str:
    """The canonical serialisation described in the module docstring (header + one line per row)."""
    lines = [CSV_HEADER]
    lines.extend(
        f"{int(c):06d},{n},{pf},{pv},{float(x):.6f},{float(y):.6f}"
        for c, n, pf, pv, x, y in zip(codes, names, prefectures, provinces, lon, lat, strict=True)
    )
    return "\n".join(lines) + "\n"


def _frozen(array: npt.NDArray[np.generic]) -> None:
    # The full registry is cached and shared by every caller in the process; a stray in-place write must
    # fail loudly instead of silently changing the domain under a hash that no longer matches.
    array.setflags(write=False)


@dataclass(frozen=True, eq=False)
class Registry:
    """An ordered table of districts; the domain that per-district vectors are indexed by.

    ``codes`` are int32 six-digit GB/T 2260 codes, strictly ascending; ``lon``/``lat`` are float64 decimal
    degrees (one representative point per district, see PROVENANCE.md). Arrays are read-only.
    ``hash`` is the sha256 hex of the canonical serialisation (module docstring); the constructor checks
    it, so a Registry's hash always matches its content. Equality is identity; compare ``hash`` instead.
    """

    codes: npt.NDArray[np.int32]
    names: tuple[str, ...]
    prefectures: tuple[str, ...]
    provinces: tuple[str, ...]
    lon: npt.NDArray[np.float64]
    lat: npt.NDArray[np.float64]
    hash: str
    # int64 copy of ``codes`` for searching: searchsorted on int32 against int64 queries casts every call.
    _search_codes: npt.NDArray[np.int64] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        codes = np.array(self.codes, dtype=np.int32, copy=True)
        lon = np.array(self.lon, dtype=np.float64, copy=True)
        lat = np.array(self.lat, dtype=np.float64, copy=True)
        n = codes.shape[0] if codes.ndim == 1 else -1
        if n < 1:
            raise ValueError("a registry needs a non-empty one-dimensional array of district codes")
        lengths = {len(self.names), len(self.prefectures), len(self.provinces), lon.shape[0], lat.shape[0]}
        if lengths != {n} or lon.ndim != 1 or lat.ndim != 1:
            raise ValueError(f"registry columns differ in length (codes: {n})")
        if codes[0] < 100_000 or codes[-1] > 999_999 or np.any(np.diff(codes) <= 0):
            raise ValueError("registry codes must be six-digit and strictly ascending")
        if not (np.all(np.isfinite(lon)) and np.all(np.isfinite(lat))):
            raise ValueError("registry coordinates must be finite")
        for column in (self.names, self.prefectures, self.provinces):
            for text in column:
                if not text or any(ch in text for ch in _FORBIDDEN_IN_NAMES):
                    raise ValueError(f"registry name {text!r} is empty or contains a separator character")
        search_codes = codes.astype(np.int64)
        for array in (codes, lon, lat, search_codes):
            _frozen(array)
        object.__setattr__(self, "_search_codes", search_codes)
        object.__setattr__(self, "codes", codes)
        object.__setattr__(self, "lon", lon)
        object.__setattr__(self, "lat", lat)
        for name in ("names", "prefectures", "provinces"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        actual = hashlib.sha256(self.canonical_text().encode("utf-8")).hexdigest()
        if self.hash != actual:
            raise ValueError(f"registry hash {self.hash!r} does not match its content (sha256 {actual})")

    @classmethod
    def from_columns(
        cls,
        codes: npt.ArrayLike,
        names: Sequence[str],
        prefectures: Sequence[str],
        provinces: Sequence[str],
        lon: npt.ArrayLike,
        lat: npt.ArrayLike,
    ) -> Registry:
        """Build a registry from columns already in ascending code order, computing its hash."""
        codes_a = np.asarray(codes, dtype=np.int32)
        lon_a = np.asarray(lon, dtype=np.float64)
        lat_a = np.asarray(lat, dtype=np.float64)
        text = _canonical_text(codes_a, names, prefectures, provinces, lon_a, lat_a)
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        return cls(codes_a, tuple(names), tuple(prefectures), tuple(provinces), lon_a, lat_a, digest)

    def __len__(self) -> int:
        return int(self.codes.shape[0])

    def __repr__(self) -> str:
        return f"Registry({self._domain_label()})"

    @property
    def province_codes(self) -> npt.NDArray[np.int32]:
        """Two-digit province code of each district (``code // 10000``), int32, aligned with ``codes``."""
        return (self.codes // 10_000).astype(np.int32)

    @property
    def prefecture_codes(self) -> npt.NDArray[np.int32]:
        """Four-digit prefecture code of each district (``code // 100``), int32, aligned with ``codes``.

        Municipality districts share their municipality's GB/T 2260 grouping (e.g. 1101 for Beijing),
        province-administered county-level cities their ``xx90`` grouping (e.g. 4290 in Hubei).
        """
        return (self.codes // 100).astype(np.int32)

    def canonical_text(self) -> str:
        """The canonical serialisation whose UTF-8 sha256 is ``hash`` (see the module docstring)."""
        return _canonical_text(self.codes, self.names, self.prefectures, self.provinces, self.lon, self.lat)

    def subset(self, provinces: Iterable[int]) -> Registry:
        """The districts of the given two-digit province codes, as a registry with its own hash.

        Raises InvalidQuery for an empty selection or a code that is not a province of this registry.
        """
        wanted: set[int] = set()
        for p in provinces:
            if isinstance(p, bool) or not isinstance(p, int | np.integer):
                raise InvalidQuery(f"province codes must be integers such as 42, got {p!r}")
            wanted.add(int(p))
        valid = set(self._province_set())
        if not wanted:
            raise InvalidQuery(f"no provinces given; valid province codes: {self._province_list()}")
        unknown = sorted(wanted - valid)
        if unknown:
            raise InvalidQuery(self._unknown_province_message(unknown))
        mask = np.isin(self.province_codes, np.fromiter(wanted, dtype=np.int32))
        keep = np.flatnonzero(mask)
        return Registry.from_columns(
            self.codes[keep],
            [self.names[i] for i in keep],
            [self.prefectures[i] for i in keep],
            [self.provinces[i] for i in keep],
            self.lon[keep],
            self.lat[keep],
        )

    def contains(self, codes: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """Whether each code is a district of this registry; bool array of the input's shape."""
        _, found = self._lookup(codes)
        return found

    def index_of(self, codes: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Position of each code in ``codes`` (int64, the input's shape): the vector index of that district.

        Raises UnknownDistrict naming up to five unknown codes and this domain if any code is not in it.
        """
        positions, found = self._lookup(codes)
        if not np.all(found):
            query = np.asarray(codes)
            missing = query[~found].ravel()
            # Keep first-appearance order so the message points at what the caller sent first.
            _, first = np.unique(missing, return_index=True)
            distinct = missing[np.sort(first)]
            listed = ", ".join(str(int(c)) for c in distinct[:_MAX_LISTED_UNKNOWN])
            more = len(distinct) - _MAX_LISTED_UNKNOWN
            suffix = f" and {more} more" if more > 0 else ""
            raise UnknownDistrict(
                f"{len(distinct)} district code(s) not in the registry domain ({self._domain_label()}): "
                f"{listed}{suffix}"
            )
        return positions

    def name_of(self, code: int) -> str:
        """A label for reports: ``"武昌区 (武汉市, 湖北省)"``; parts equal to the name or province are dropped."""
        i = int(self.index_of(np.asarray([code]))[0])
        name, prefecture, province = self.names[i], self.prefectures[i], self.provinces[i]
        parts = []
        # Municipality districts and prefecture cities without counties would otherwise repeat a name, and
        # the "省直辖县级行政区划" grouping is a coding device, not a place a reader recognises.
        if prefecture not in (name, province) and not prefecture.endswith("直辖县级行政区划"):
            parts.append(prefecture)
        if province != name:
            parts.append(province)
        return f"{name} ({', '.join(parts)})" if parts else name

    def _lookup(self, codes: npt.ArrayLike) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
        """Vectorised search: (positions, found), both of the input's shape; positions are 0 where not found."""
        query = np.asarray(codes)
        if query.size == 0:
            return np.zeros(query.shape, dtype=np.int64), np.zeros(query.shape, dtype=np.bool_)
        if query.dtype.kind not in "iu":
            raise InvalidQuery(f"district codes must be integers, got an array of {query.dtype}")
        flat = query.ravel()
        # Out-of-range values are unknown whatever their dtype; clearing them first makes the int64 cast safe.
        in_range = (flat >= 100_000) & (flat <= 999_999)
        if not in_range.all():
            flat = np.where(in_range, flat, 0)
        wanted = flat.astype(np.int64, copy=False)
        positions = np.searchsorted(self._search_codes, wanted).astype(np.int64, copy=False)
        np.minimum(positions, len(self) - 1, out=positions)
        found = in_range & (self._search_codes[positions] == wanted)
        positions[~found] = 0
        return positions.reshape(query.shape), found.reshape(query.shape)

    def _province_set(self) -> list[int]:
        return [int(p) for p in np.unique(self.province_codes)]

    def _province_list(self) -> str:
        return ", ".join(str(p) for p in self._province_set())

    def _domain_label(self) -> str:
        provinces = self._province_set()
        where = f"provinces {self._province_list()}" if len(provinces) <= 8 else f"{len(provinces)} provinces"
        return f"{len(self)} districts in {where}, registry hash {self.hash[:12]}…"

    def _unknown_province_message(self, unknown: list[int]) -> str:
        listed = ", ".join(str(p) for p in unknown)
        hints = []
        outside = [f"{p} {_NON_MAINLAND[p]}" for p in unknown if p in _NON_MAINLAND]
        if outside:
            hints.append(f"the registry covers mainland China only (not included: {', '.join(outside)})")
        if any(p >= 100 for p in unknown):
            hints.append("province codes are the first two digits of a district code (42 for 420106)")
        hint = f"; {'; '.join(hints)}" if hints else ""
        return f"unknown province code(s) {listed}; valid province codes: {self._province_list()}{hint}"


def _parse_csv(text: str) -> Registry:
    """Parse the committed districts.csv (canonical form, see the module docstring) into a Registry."""
    lines = text.splitlines()
    if not lines or lines[0] != CSV_HEADER:
        raise ValueError(f"districts.csv must start with the header {CSV_HEADER!r}")
    codes: list[int] = []
    names: list[str] = []
    prefectures: list[str] = []
    provinces: list[str] = []
    lon: list[float] = []
    lat: list[float] = []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split(",")
        if len(fields) != 6:
            raise ValueError(f"districts.csv line {number}: expected 6 fields, got {len(fields)}")
        codes.append(int(fields[0]))
        names.append(fields[1])
        prefectures.append(fields[2])
        provinces.append(fields[3])
        lon.append(float(fields[4]))
        lat.append(float(fields[5]))
    return Registry.from_columns(codes, names, prefectures, provinces, lon, lat)


@functools.cache
def _load_full() -> Registry:
    text = resources.files("federation").joinpath("data", "districts.csv").read_text(encoding="utf-8")
    return _parse_csv(text)


def load_registry(provinces: Sequence[int] | None = None) -> Registry:
    """The full district registry (loaded once per process), or its subset for the given province codes."""
    full = _load_full()
    return full if provinces is None else full.subset(provinces)


def load_domain(provinces: Sequence[int] | None, registry_hash: str, *, source: str) -> Registry:
    """The domain a roster names (``source``: where it says so), refused with RegistryMismatch when this build's
    registry for those provinces has another content hash: nodes must agree on every vector's index."""
    registry = load_registry(provinces)
    if registry.hash != registry_hash:
        raise RegistryMismatch(
            f"{source}: domain.registry_hash {registry_hash[:12]}… differs from this build's registry "
            f"{registry.hash[:12]}…; regenerate the scenario or upgrade fedbroker"
        )
    return registry


def province_codes_all() -> tuple[int, ...]:
    """The two-digit codes of every province in the full registry, ascending (31 for mainland China)."""
    return tuple(full_code for full_code in _load_full()._province_set())
