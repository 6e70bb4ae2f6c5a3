"""The district registry: committed data, content hash, subsets and vectorised lookups."""

from __future__ import annotations

import hashlib
from importlib import resources

import numpy as np
import pytest

from federation.errors import InvalidQuery, UnknownDistrict
from federation.registry import CSV_HEADER, Registry, load_registry, province_codes_all

# Pinned on purpose: any change to districts.csv must be deliberate (rebuild + PROVENANCE.md + this line),
# because every node compares this hash before it takes part in a round.
FULL_REGISTRY_SHA256 = "c58323794865ad99a857e07fa225d6ba513b8c9c1a2331a16135bf033dd80851"

# Mainland China including the South China Sea islands (Zengmu Ansha ~3.9°N), in decimal degrees.
LON_RANGE = (73.0, 136.0)
LAT_RANGE = (3.0, 54.0)


def csv_lines() -> list[str]:
    text = resources.files("federation").joinpath("data", "districts.csv").read_text(encoding="utf-8")
    return text.splitlines()


def sha256_of_lines(lines: list[str]) -> str:
    return hashlib.sha256(("\n".join(lines) + "\n").encode("utf-8")).hexdigest()


def test_count_is_plausible_and_matches_csv() -> None:
    registry = load_registry()
    rows = csv_lines()[1:]
    assert 2_800 <= len(registry) <= 2_900
    assert len(registry) == len(rows) == len(registry.names) == registry.lon.shape[0]


def test_codes_are_six_digit_strictly_ascending_and_mainland_only() -> None:
    registry = load_registry()
    assert registry.codes.dtype == np.int32
    assert np.all(np.diff(registry.codes) > 0)
    assert registry.codes.min() >= 110_000 and registry.codes.max() <= 659_999
    assert [line.split(",")[0] for line in csv_lines()[1:]] == [f"{c:06d}" for c in registry.codes]
    assert not set(province_codes_all()) & {71, 81, 82}
    assert len(province_codes_all()) == 31
    assert province_codes_all() == tuple(sorted(set(registry.province_codes.tolist())))


def test_every_district_has_coordinates_in_china() -> None:
    registry = load_registry()
    assert registry.lon.dtype == np.float64 and registry.lat.dtype == np.float64
    assert np.all((registry.lon >= LON_RANGE[0]) & (registry.lon <= LON_RANGE[1]))
    assert np.all((registry.lat >= LAT_RANGE[0]) & (registry.lat <= LAT_RANGE[1]))


def test_known_districts_and_hierarchy() -> None:
    registry = load_registry()
    i = int(registry.index_of([420106])[0])
    assert (registry.names[i], registry.prefectures[i], registry.provinces[i]) == ("武昌区", "武汉市", "湖北省")
    assert 114.0 < registry.lon[i] < 114.6 and 30.3 < registry.lat[i] < 30.8
    assert registry.name_of(420106) == "武昌区 (武汉市, 湖北省)"
    assert registry.name_of(110105) == "朝阳区 (北京市)"
    assert registry.name_of(220104) == "朝阳区 (长春市, 吉林省)"
    # Province-administered county-level city, and prefecture-level cities without county divisions.
    assert registry.prefectures[int(registry.index_of([429004])[0])] == "省直辖县级行政区划"
    assert registry.name_of(429004) == "仙桃市 (湖北省)"
    for code, name in [(441900, "东莞市"), (442000, "中山市"), (460400, "儋州市"), (620200, "嘉峪关市")]:
        assert registry.names[int(registry.index_of([code])[0])] == name


def test_prefecture_and_province_codes() -> None:
    registry = load_registry()
    i = int(registry.index_of([420106])[0])
    assert registry.province_codes[i] == 42 and registry.prefecture_codes[i] == 4201
    assert registry.province_codes.dtype == np.int32 and registry.prefecture_codes.dtype == np.int32


def test_full_hash_is_pinned_and_recomputable() -> None:
    registry = load_registry()
    assert registry.hash == FULL_REGISTRY_SHA256
    # Independent of the parser: the committed file is already in canonical form.
    assert csv_lines()[0] == CSV_HEADER
    assert sha256_of_lines(csv_lines()) == FULL_REGISTRY_SHA256
    assert hashlib.sha256(registry.canonical_text().encode("utf-8")).hexdigest() == FULL_REGISTRY_SHA256


def test_subset_has_its_own_stable_hash() -> None:
    hubei = load_registry([42])
    assert hubei.hash != FULL_REGISTRY_SHA256
    assert hubei.hash == load_registry([42, 42]).hash == load_registry().subset(iter([42])).hash
    expected = sha256_of_lines([CSV_HEADER] + [line for line in csv_lines()[1:] if line.startswith("42")])
    assert hubei.hash == expected
    assert load_registry([43, 42]).hash == load_registry([42, 43]).hash != hubei.hash
    # The hash is a function of content: all provinces selected is the full registry.
    assert load_registry(province_codes_all()).hash == FULL_REGISTRY_SHA256


def test_subset_contains_only_its_provinces() -> None:
    full = load_registry()
    hubei = load_registry([42])
    assert np.all(hubei.codes // 10_000 == 42)
    assert len(hubei) == int(np.count_nonzero(full.province_codes == 42))
    assert set(hubei.provinces) == {"湖北省"}
    assert hubei.contains([420106, 429021]).all()
    assert not hubei.contains([110105]).any()


def test_index_of_and_contains_round_trip() -> None:
    registry = load_registry()
    rng = np.random.default_rng(7)
    sample = rng.choice(registry.codes, size=(50, 4))
    positions = registry.index_of(sample)
    assert positions.dtype == np.int64 and positions.shape == sample.shape
    assert np.array_equal(registry.codes[positions], sample)
    assert np.array_equal(registry.index_of(registry.codes), np.arange(len(registry)))
    assert registry.contains(sample.astype(np.uint32)).all()
    mixed = np.array([420106, 420199, -420106, 2**40, 0], dtype=np.int64)
    assert registry.contains(mixed).tolist() == [True, False, False, False, False]
    assert registry.index_of([]).shape == (0,)


def test_unknown_district_names_up_to_five_codes_and_the_domain() -> None:
    hubei = load_registry([42])
    unknown = [110105, 999999, 1, 430102, 420199, 123456, 654321]
    with pytest.raises(UnknownDistrict) as caught:
        hubei.index_of([420106, *unknown, 999999])
    message = str(caught.value)
    for code in unknown[:5]:
        assert str(code) in message
    assert "123456" not in message and "and 2 more" in message
    assert f"{len(hubei)} districts in provinces 42" in message and hubei.hash[:12] in message
    with pytest.raises(UnknownDistrict, match="110105"):
        hubei.name_of(110105)


def test_unknown_province_is_an_invalid_query_listing_valid_codes() -> None:
    with pytest.raises(InvalidQuery) as caught:
        load_registry([42, 99])
    assert not isinstance(caught.value, UnknownDistrict)
    assert "99" in caught.value.message and "11, 12, 13" in caught.value.message
    with pytest.raises(InvalidQuery, match="mainland China only"):
        load_registry([81])
    with pytest.raises(InvalidQuery, match="valid province codes: 42"):
        load_registry([42]).subset([43])
    with pytest.raises(InvalidQuery, match="no provinces"):
        load_registry([])


def test_registry_is_immutable_and_checks_its_hash() -> None:
    registry = load_registry()
    assert load_registry() is registry
    with pytest.raises(ValueError):
        registry.codes[0] = 110_000
    with pytest.raises(ValueError, match="does not match"):
        Registry(
            registry.codes,
            registry.names,
            registry.prefectures,
            registry.provinces,
            registry.lon,
            registry.lat,
            "0" * 64,
        )
