"""Query specs: canonical encoding, strict parsing with actionable messages, round plans, vector layouts."""

from __future__ import annotations

import json
import re
from datetime import date

import pytest

from federation.catalog import KINDS, NATIONAL, RoundPlan, kind, new_query, parse_query
from federation.catalog.aggregates import vector_length
from federation.errors import InvalidQuery, UnknownDistrict
from federation.queries import Query, query_hash
from federation.registry import Registry

QUERY_KINDS = tuple(KINDS)
REGISTRY = Registry.from_columns(
    [420102, 420103, 420104],
    ["江岸区", "江汉区", "硚口区"],
    ["武汉市", "武汉市", "武汉市"],
    ["湖北省", "湖北省", "湖北省"],
    [114.3, 114.27, 114.26],
    [30.6, 30.6, 30.57],
)


def plan_rounds(query: Query) -> tuple[RoundPlan, ...]:
    return kind(query.kind).rounds(query, REGISTRY, NATIONAL)


NONCE = "0123456789abcdef0123456789abcdef"


def document(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "kind": "population",
        "start": "2020-01-10",
        "end": "2020-01-20",
        "params": {},
        "coordinator": "ncov-national",
        "nonce": NONCE,
        "issued_at": "2026-11-29T05:00:00Z",
    }
    base.update(overrides)
    return base


def encode(doc: dict[str, object]) -> bytes:
    return json.dumps(doc).encode()


def invalid(doc: dict[str, object]) -> str:
    with pytest.raises(InvalidQuery) as info:
        parse_query(encode(doc))
    return info.value.message


def test_canonical_is_sorted_compact_utf8() -> None:
    query = parse_query(encode(document(coordinator="湖北省防控指挥部", params={"districts": "420102"})))
    assert (
        query.canonical()
        == (
            '{"coordinator":"湖北省防控指挥部","end":"2020-01-20","issued_at":"2026-11-29T05:00:00Z","kind":"population",'
            f'"nonce":"{NONCE}","params":{{"districts":"420102"}},"start":"2020-01-10"}}'
        ).encode()
    )


def test_canonical_round_trip_and_key_order_irrelevant() -> None:
    doc = document(kind="flows", params={"source": "transport", "mode": "rail"})
    forward = parse_query(encode(doc))
    reversed_doc = {key: doc[key] for key in reversed(list(doc))}
    backward = parse_query(json.dumps(reversed_doc, indent=2).encode())
    assert forward == backward
    assert forward.canonical() == backward.canonical()
    assert parse_query(forward.canonical()) == forward
    assert parse_query(forward.canonical()).canonical() == forward.canonical()
    assert query_hash(forward.canonical()) == query_hash(backward.canonical())
    assert len(query_hash(forward.canonical())) == 32


def test_window_days() -> None:
    assert parse_query(encode(document())).window_days == 11
    assert parse_query(encode(document(start="2020-01-20"))).window_days == 1


def test_inverted_window_says_swap() -> None:
    message = invalid(document(start="2020-01-20", end="2020-01-10"))
    assert message == "inverted window: start 2020-01-20 is after end 2020-01-10; swap them"


def test_unknown_kind_lists_kinds() -> None:
    message = invalid(document(kind="rt"))
    assert "'rt'" in message
    for name in QUERY_KINDS:
        assert name in message


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"start": "2020/01/10"}, "YYYY-MM-DD"),
        ({"start": "20200110"}, "YYYY-MM-DD"),
        ({"end": "2020-02-30"}, "not a valid calendar date"),
        ({"nonce": "xyz"}, "32 lowercase hex"),
        ({"issued_at": "2026-11-29 05:00:00"}, "ISO-8601 UTC"),
        ({"issued_at": "2026-13-29T05:00:00Z"}, "not a valid time"),
        ({"coordinator": ""}, "coordinator is empty"),
        ({"start": "2019-01-01", "end": "2020-12-31"}, "exceeds the limit"),
        ({"params": {"districts": "4201"}}, "six-digit"),
        ({"params": {"districts": 420102}}, "must be a string"),
        ({"params": ["districts"]}, "'params' must be an object"),
        ({"kind": 3}, "'kind' must be a string"),
        ({"extra": 1}, "unknown keys extra"),
    ],
)
def test_malformed_fields(overrides: dict[str, object], fragment: str) -> None:
    assert fragment in invalid(document(**overrides))


def test_missing_field_named() -> None:
    doc = document()
    del doc["nonce"]
    assert invalid(doc) == "query is missing nonce"


def test_not_json_not_object_duplicate_key() -> None:
    with pytest.raises(InvalidQuery, match="not valid JSON"):
        parse_query(b"{kind")
    with pytest.raises(InvalidQuery, match="JSON object"):
        parse_query(b"[1]")
    with pytest.raises(InvalidQuery, match="not UTF-8"):
        parse_query(b"\xff\xfe")
    raw = encode(document()).replace(b'"kind": "population"', b'"kind": "population", "kind": "cases"')
    with pytest.raises(InvalidQuery, match="'kind' twice"):
        parse_query(raw)


def test_unknown_params_listed_with_allowed() -> None:
    message = invalid(document(kind="cases", params={"mode": "rail"}))
    assert message == "unknown params for cases: mode; allowed: districts"


def test_flows_source_and_mode() -> None:
    assert "--source 'ferry' is not one of" in invalid(document(kind="flows", params={"source": "ferry"}))
    message = invalid(document(kind="flows", params={"mode": "rail"}))
    assert message == "--mode rail applies only to --source transport; drop --mode or set --source transport"
    assert "--mode 'ship'" in invalid(document(kind="flows", params={"source": "transport", "mode": "ship"}))
    flows = KINDS["flows"]
    assert flows.source(parse_query(encode(document(kind="flows")))) == ("telecom", None)  # type: ignore[attr-defined]
    query = parse_query(encode(document(kind="flows", params={"source": "transport"})))
    assert flows.source(query) == ("transport", "all")  # type: ignore[attr-defined]


def risk_doc(**params: str) -> dict[str, object]:
    return document(kind="importation-risk", start="2020-01-07", end="2020-01-20", params=params)


def test_importation_params_defaults_and_validation() -> None:
    values = KINDS["importation-risk"].values(parse_query(encode(risk_doc())))
    assert (values["window_days"], values["threshold"], values["top"]) == (14, 1.0, 3)
    for bad in ("0", "61", "7.5", "-3", "x"):
        assert "--window-days" in invalid(risk_doc(window_days=bad))
    for bad in ("0", "-1", "nan", "inf", "one"):
        assert "--threshold" in invalid(risk_doc(threshold=bad))
    assert "--top" in invalid(risk_doc(top="0"))
    message = invalid(risk_doc(window_days="7"))
    assert "is 14 days but --window-days is 7; set start to 2020-01-14" in message
    query = parse_query(encode(document(kind="importation-risk", start="2020-01-14", params={"window_days": "7"})))
    assert query.window_days == 7


def test_new_query_fills_nonce_time_and_window() -> None:
    query = new_query("importation-risk", start=None, end=date(2020, 1, 20), params={}, coordinator="c")
    assert query.start == date(2020, 1, 7)
    assert re.fullmatch(r"[0-9a-f]{32}", query.nonce)
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", query.issued_at)
    assert parse_query(query.canonical()) == query
    other = new_query("importation-risk", start=None, end=date(2020, 1, 20), params={}, coordinator="c")
    assert other.nonce != query.nonce
    query = new_query(
        "importation-risk", start=None, end=date(2020, 1, 20), params={"window_days": "3"}, coordinator="c"
    )
    assert query.start == date(2020, 1, 18)
    query = new_query("importation-risk", start=date(2020, 1, 11), end=date(2020, 1, 20), params={}, coordinator="c")
    assert query.params == {"window_days": "10"}
    with pytest.raises(InvalidQuery, match="needs a start"):
        new_query("population", start=None, end=date(2020, 1, 20), params={}, coordinator="c")
    with pytest.raises(InvalidQuery, match="inverted window"):
        new_query("cases", start=date(2020, 1, 21), end=date(2020, 1, 20), params={}, coordinator="c")
    with pytest.raises(InvalidQuery, match="known kinds"):
        new_query("rt", start=date(2020, 1, 1), end=date(2020, 1, 20), params={}, coordinator="c")


def test_district_filter_and_mask() -> None:
    population = KINDS["population"]
    query = parse_query(encode(document(params={"districts": "420103, 420102,420103"})))
    assert population.districts(query) == (420102, 420103)
    assert population.district_mask(query, REGISTRY).tolist() == [True, True, False]
    assert population.district_mask(parse_query(encode(document())), REGISTRY).all()
    query = parse_query(encode(document(params={"districts": "420102,999999,110101"})))
    with pytest.raises(UnknownDistrict, match="999999"):
        population.district_mask(query, REGISTRY)


def test_plan_rounds_per_kind() -> None:
    start, end = date(2020, 1, 10), date(2020, 1, 20)
    assert plan_rounds(parse_query(encode(document()))) == (
        RoundPlan("presence", "telecom", "telecom.presence", start, end, {}, 33),
    )
    assert plan_rounds(parse_query(encode(document(kind="flows")))) == (
        RoundPlan("trips", "telecom", "telecom.trips", start, end, {}, 9),
    )
    flows = parse_query(encode(document(kind="flows", params={"source": "transport", "mode": "air"})))
    assert plan_rounds(flows) == (RoundPlan("trips", "transport", "transport.trips", start, end, {"mode": "air"}, 9),)
    flows = parse_query(encode(document(kind="flows", params={"source": "transport"})))
    assert plan_rounds(flows)[0].params == {"mode": "all"}
    assert plan_rounds(parse_query(encode(document(kind="cases")))) == (
        RoundPlan("cases", "health", "health.cases", start, end, {}, 9),
    )
    risk = parse_query(encode(risk_doc()))
    window = (date(2020, 1, 7), end)
    assert plan_rounds(risk) == (
        RoundPlan("trips", "telecom", "telecom.trips", *window, {}, 9),
        RoundPlan("residents", "telecom", "telecom.residents", None, None, {}, 3),
        RoundPlan("confirmed", "health", "health.cases", *window, {}, 9),
    )


def test_vector_length() -> None:
    start, end = date(2020, 1, 10), date(2020, 1, 20)
    assert vector_length("telecom.presence", 5, start, end) == 55
    assert vector_length("telecom.residents", 5, None, None) == 5
    assert vector_length("telecom.trips", 5, start, end) == 25
    assert vector_length("transport.trips", 5, start, end) == 25
    assert vector_length("health.cases", 5, start, end) == 15
    with pytest.raises(InvalidQuery, match="needs a window"):
        vector_length("telecom.presence", 5, None, None)
    with pytest.raises(InvalidQuery, match="unknown aggregate"):
        vector_length("telecom.teleport", 5, start, end)


def test_query_is_a_plain_value() -> None:
    query = Query("cases", date(2020, 1, 1), date(2020, 1, 2), {}, "c", NONCE, "2026-11-29T05:00:00Z")
    assert parse_query(query.canonical()) == query
