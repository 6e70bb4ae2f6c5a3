"""Query specs: canonical encoding, strict parsing with actionable messages, round plans, vector layouts."""

from __future__ import annotations

import json
import re
from datetime import date

import numpy as np
import pytest

from federation.errors import InvalidQuery, UnknownDistrict
from federation.queries import (
    QUERY_KINDS,
    Query,
    RoundPlan,
    district_filter,
    district_mask,
    flows_source,
    importation_params,
    new_query,
    parse_query,
    plan_rounds,
    query_hash,
    required_round,
    vector_length,
)

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
    for kind in QUERY_KINDS:
        assert kind in message


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"start": "2020/01/10"}, "YYYY-MM-DD"),
        ({"start": "20200110"}, "YYYY-MM-DD"),
        ({"end": "2020-02-30"}, "not a valid date"),
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
    assert "source 'ferry' is unknown" in invalid(document(kind="flows", params={"source": "ferry"}))
    message = invalid(document(kind="flows", params={"mode": "rail"}))
    assert message == "mode=rail applies only to source=transport; drop mode or set source=transport"
    assert "mode 'ship'" in invalid(document(kind="flows", params={"source": "transport", "mode": "ship"}))
    query = parse_query(encode(document(kind="flows")))
    assert flows_source(query) == ("telecom", None)
    query = parse_query(encode(document(kind="flows", params={"source": "transport"})))
    assert flows_source(query) == ("transport", "all")


def risk_doc(**params: str) -> dict[str, object]:
    return document(kind="importation-risk", start="2020-01-07", end="2020-01-20", params=params)


def test_importation_params_defaults_and_validation() -> None:
    query = parse_query(encode(risk_doc()))
    assert importation_params(query) == importation_params(query)
    assert (importation_params(query).window_days, importation_params(query).threshold) == (14, 1.0)
    assert importation_params(query).top == 3
    for bad in ("0", "61", "7.5", "-3", "x"):
        assert "window_days" in invalid(risk_doc(window_days=bad))
    for bad in ("0", "-1", "nan", "inf", "one"):
        assert "threshold" in invalid(risk_doc(threshold=bad))
    assert "top" in invalid(risk_doc(top="0"))
    message = invalid(risk_doc(window_days="7"))
    assert "is 14 days but window_days is 7; set start to 2020-01-14" in message
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
    query = parse_query(encode(document(params={"districts": "420103, 420102,420103"})))
    assert district_filter(query) == (420102, 420103)
    codes = np.array([420102, 420103, 420104], dtype=np.int32)
    assert district_mask(query, codes).tolist() == [True, True, False]
    assert district_mask(parse_query(encode(document())), codes).all()
    query = parse_query(encode(document(params={"districts": "420102,999999,110101"})))
    with pytest.raises(UnknownDistrict, match="999999"):
        district_mask(query, codes)


def test_plan_rounds_per_kind() -> None:
    start, end = date(2020, 1, 10), date(2020, 1, 20)
    assert plan_rounds(parse_query(encode(document()))) == (
        RoundPlan("presence", "telecom", "telecom.presence", start, end, {}),
    )
    assert plan_rounds(parse_query(encode(document(kind="flows")))) == (
        RoundPlan("trips", "telecom", "telecom.trips", start, end, {}),
    )
    flows = parse_query(encode(document(kind="flows", params={"source": "transport", "mode": "air"})))
    assert plan_rounds(flows) == (RoundPlan("trips", "transport", "transport.trips", start, end, {"mode": "air"}),)
    flows = parse_query(encode(document(kind="flows", params={"source": "transport"})))
    assert plan_rounds(flows)[0].params == {"mode": "all"}
    assert plan_rounds(parse_query(encode(document(kind="cases")))) == (
        RoundPlan("cases", "health", "health.cases", start, end, {}),
    )
    risk = parse_query(encode(risk_doc()))
    window = (date(2020, 1, 7), end)
    assert plan_rounds(risk) == (
        RoundPlan("trips", "telecom", "telecom.trips", *window, {}),
        RoundPlan("residents", "telecom", "telecom.residents", None, None, {}),
        RoundPlan("confirmed", "health", "health.cases", *window, {}),
    )


def test_required_round_refuses_invented_rounds() -> None:
    risk = parse_query(encode(risk_doc()))
    start, end = date(2020, 1, 7), date(2020, 1, 20)
    assert required_round(risk, "telecom.residents", None, None, {}).name == "residents"
    assert required_round(risk, "health.cases", start, end, {}).name == "confirmed"
    with pytest.raises(InvalidQuery, match="not required by the signed importation-risk query"):
        required_round(risk, "telecom.presence", start, end, {})
    with pytest.raises(InvalidQuery, match="not required"):
        required_round(risk, "telecom.trips", date(2019, 1, 1), end, {})
    flows = parse_query(encode(document(kind="flows", params={"source": "transport", "mode": "rail"})))
    with pytest.raises(InvalidQuery, match="not required"):
        required_round(flows, "transport.trips", flows.start, flows.end, {"mode": "all"})
    with pytest.raises(InvalidQuery, match="not required"):
        required_round(flows, "telecom.trips", flows.start, flows.end, {})


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
        vector_length("telecom.roamers", 5, start, end)


def test_query_is_a_plain_value() -> None:
    query = Query("cases", date(2020, 1, 1), date(2020, 1, 2), {}, "c", NONCE, "2026-11-29T05:00:00Z")
    assert parse_query(query.canonical()) == query
