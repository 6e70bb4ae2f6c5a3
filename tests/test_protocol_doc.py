"""docs/protocol.md against the code: its worked examples byte for byte, its table of every query kind's
parameters and rounds against the catalog, its raw tables against the stores', and the Itinerary service's RPCs
and message fields against the generated descriptors.

Each example is a fenced block right after a ``<!-- example: NAME -->`` marker; each kind has a table after
``<!-- params: KIND -->`` and one after ``<!-- rounds: KIND -->``; the other tables follow ``<!-- raw-tables -->``,
``<!-- rpcs: Itinerary -->`` and ``<!-- messages: Itinerary -->``. If one of these fails, the code and the
specification disagree: fix whichever is wrong (and say so in the commit), never just the expected bytes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.protobuf.descriptor import FieldDescriptor

from adapters.itinerary.sms import OutboxSender, code_text
from adapters.store import RAW_TABLES
from federation.catalog import KINDS, NATIONAL, Scope, new_query, parse_query
from federation.catalog.aggregates import AGGREGATES, LAYOUTS
from federation.errors import InvalidQuery
from federation.msisdn import mask_msisdn
from federation.queries import Query
from federation.registry import Registry, load_registry
from federation.secagg.keys import encrypt_share
from federation.secagg.messages import advert_message, survivors_message
from federation.secagg.prg import prg
from federation.v1 import itinerary_pb2

PROTOCOL = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
_EXAMPLE = re.compile(r"<!-- example: (?P<name>[a-z0-9-]+) -->\n```[a-z]*\n(?P<body>.*?)\n```", re.DOTALL)
ROUND_ID = bytes(range(16))


def examples() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for match in _EXAMPLE.finditer(PROTOCOL.read_text(encoding="utf-8")):
        assert match["name"] not in found, f"example {match['name']} appears twice"
        found[match["name"]] = match["body"].splitlines()
    return found


@pytest.fixture(scope="module")
def doc() -> dict[str, list[str]]:
    return examples()


def test_every_example_is_checked(doc: dict[str, list[str]]) -> None:
    assert set(doc) == {
        "registry-hashes",
        "canonical-query",
        "registry-bytes",
        "advert",
        "survivors",
        "share-ad",
        "prg",
        "msisdn-mask",
        "sms-outbox",
    }


def test_registry_hashes(doc: dict[str, list[str]]) -> None:
    for line in doc["registry-hashes"]:
        provinces, districts, digest = line.split()
        registry = load_registry(None if provinces == "all" else [int(p) for p in provinces.split(",")])
        assert (len(registry), registry.hash) == (int(districts), digest), line
    # The order provinces are named in does not matter; the subset is one sorted file.
    assert load_registry([43, 42]).hash == load_registry([42, 43]).hash


def test_registry_bytes(doc: dict[str, list[str]]) -> None:
    *rows, serialised, digest_line = doc["registry-bytes"]
    columns = list(zip(*(row.split(",") for row in rows), strict=True))
    registry = Registry.from_columns(
        [int(c) for c in columns[0]],
        list(columns[1]),
        list(columns[2]),
        list(columns[3]),
        [float(x) for x in columns[4]],
        [float(y) for y in columns[5]],
    )
    text = registry.canonical_text().encode("utf-8")
    assert text.hex() == serialised
    assert hashlib.sha256(bytes.fromhex(serialised)).hexdigest() == registry.hash == digest_line.split()[1]


def test_canonical_query(doc: dict[str, list[str]]) -> None:
    canonical_line, digest_line = doc["canonical-query"]
    canonical = canonical_line.encode("utf-8")
    query = parse_query(canonical)
    assert query.canonical() == canonical
    assert hashlib.sha256(canonical).hexdigest() == digest_line.split()[1]


def test_advert_framing(doc: dict[str, list[str]]) -> None:
    canonical = doc["canonical-query"][0].encode("utf-8")
    (framed,) = doc["advert"]
    message = advert_message(ROUND_ID, hashlib.sha256(canonical).digest(), "telecom-a", b"\x11" * 32, b"\x22" * 32)
    assert message.hex() == framed
    assert len(message) == 160


def test_survivors_framing(doc: dict[str, list[str]]) -> None:
    (framed,) = doc["survivors"]
    assert survivors_message(ROUND_ID, ["telecom-c", "telecom-a", "telecom-b"]).hex() == framed


def test_share_associated_data(doc: dict[str, list[str]]) -> None:
    """A share made by the code opens with an independent AES-GCM given the documented associated data."""
    (associated,) = doc["share-ad"]
    key = bytes(range(100, 116))
    plaintext = bytes(range(48))
    share = encrypt_share(key, ROUND_ID, "telecom-a", "telecom-b", plaintext)
    assert len(share.nonce) == 12 and len(share.ciphertext) == 64
    assert AESGCM(key).decrypt(share.nonce, share.ciphertext, bytes.fromhex(associated)) == plaintext


def test_prg_known_answer(doc: dict[str, list[str]]) -> None:
    (line,) = doc["prg"]
    match = re.fullmatch(r"PRG\(([0-9a-f]{32}), (\d+)\) = ((?:[0-9a-f]{16} ?)+)", line)
    assert match is not None, line
    seed, count, values = bytes.fromhex(match[1]), int(match[2]), match[3].split()
    got = prg(seed, count)
    assert [f"{int(v):016x}" for v in got] == values
    # Independently: the cells are the little-endian reading of the AES-128-CTR keystream from counter 0.
    keystream = Cipher(algorithms.AES(seed), modes.CTR(bytes(16))).encryptor().update(bytes(8 * count))
    assert got.astype("<u8").tobytes() == keystream


# -- query kinds -------------------------------------------------------------------------------------------------


def table_after(marker: str) -> list[list[str]]:
    """The body rows of the markdown table right after ``<!-- marker -->``, as lists of stripped cells."""
    text = PROTOCOL.read_text(encoding="utf-8")
    at = text.find(f"<!-- {marker} -->\n")
    assert at >= 0, f"docs/protocol.md has no <!-- {marker} --> table: add the kind's section (see section 5)"
    lines = text[at:].splitlines()[1:]
    rows = []
    for line in lines[2:]:  # header and separator
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def _code(cell: str) -> str:
    return cell.strip().strip("`")


@pytest.mark.parametrize("name", sorted(KINDS))
def test_each_kind_documents_its_params(name: str) -> None:
    entry = KINDS[name]
    rows = table_after(f"params: {name}")
    assert [_code(r[0]) for r in rows] == [p.name for p in entry.params]
    for row, param in zip(rows, entry.params, strict=True):
        assert row[1] == param.type, (name, param.name)
        assert _code(row[2]) == (param.default if param.default is not None else "—"), (name, param.name)
        for choice in param.choices:
            assert f"`{choice}`" in row[3], (name, param.name, choice)


# Params a generic sample cannot give: a district list, and dates that must precede the window.
_SAMPLES: dict[str, dict[str, str]] = {
    "exposure": {"risk_districts": "420102,420106"},
    "return-to-work": {"baseline_start": "2020-01-01", "baseline_end": "2020-01-05", "cases_start": "2020-01-01"},
}


def _sample_queries(name: str) -> list[Query]:
    """Queries of kind ``name`` over every combination of its choice params (absent included)."""
    entry = KINDS[name]
    end = dt.date(2020, 1, 20)
    options: list[list[tuple[str, str] | None]] = [[(key, value)] for key, value in _SAMPLES.get(name, {}).items()]
    for param in entry.params:
        if param.name in _SAMPLES.get(name, {}):
            continue
        if param.type == "choice":
            options.append([None, *((param.name, c) for c in param.choices)])
        elif param.required:
            sample = {"date": end.isoformat(), "region": "42"}.get(param.type, param.default or str(param.minimum))
            options.append([(param.name, sample)])
    queries = []
    for combination in itertools.product(*options):
        params = dict(item for item in combination if item is not None)
        start = None if entry.trailing_window else end - dt.timedelta(days=6)
        try:
            queries.append(new_query(name, start=start, end=end, params=params, coordinator="nhc-national"))
        except InvalidQuery:
            continue
    assert queries, f"no valid {name} query could be built to check its rounds"
    return queries


@pytest.mark.parametrize("name", sorted(KINDS))
def test_each_kind_documents_its_rounds(name: str) -> None:
    registry = load_registry([42])
    national = {
        (plan.name, plan.agency_kind, plan.aggregate, plan.start is None)
        for query in _sample_queries(name)
        for plan in KINDS[name].rounds(query, registry, NATIONAL)
    }
    # The layout each round has for a provincial coordinator (docs/protocol.md, "Vector layouts").
    provincial = {
        (plan.name, plan.agency_kind, plan.aggregate, plan.start is None, plan.layout or "whole domain")
        for query in _sample_queries(name)
        for plan in KINDS[name].rounds(query, registry, Scope(42))
    }
    rows = table_after(f"rounds: {name}")
    documented = {(_code(r[0]), r[1], _code(r[2]), r[3].startswith("none"), _code(r[5])) for r in rows}
    assert documented == provincial
    assert {row[:4] for row in documented} == national


def test_vector_layouts_are_the_catalogs() -> None:
    documented = {_code(name): (_code(cells), _code(index)) for name, cells, index, _ in table_after("layouts")}
    assert set(documented) == set(LAYOUTS)
    limited = {_code(r[0]): {_code(c) for c in r[1].split(",")} for r in table_after("limited-layouts")}
    assert limited == {name: set(spec.limited) for name, spec in AGGREGATES.items()}


# -- raw tables and the itinerary service ----------------------------------------------------------------------


def test_raw_tables_are_the_stores_tables() -> None:
    documented = {(_code(kind), _code(table)): _code(columns) for kind, table, columns in table_after("raw-tables")}
    assert documented == {
        (kind, table): ", ".join(f"{name} {sql_type}" for name, sql_type in columns)
        for kind, tables in RAW_TABLES.items()
        for table, columns in tables.items()
    }


def test_msisdn_masking(doc: dict[str, list[str]]) -> None:
    for line in doc["msisdn-mask"]:
        number, masked = line.split(" ", 1)
        assert mask_msisdn(number) == masked, line


def test_sms_outbox_line(doc: dict[str, list[str]], tmp_path: Path) -> None:
    (line,) = doc["sms-outbox"]
    outbox = tmp_path / "sms" / "outbox.jsonl"
    OutboxSender(outbox).send(
        "telecom-a", "+8613800000000", code_text("telecom-a", "042817", ttl_min=5, window_days=14)
    )
    assert outbox.read_text(encoding="utf-8") == line + "\n"


_ITINERARY = itinerary_pb2.DESCRIPTOR.services_by_name["Itinerary"]
_SCALARS = {
    FieldDescriptor.TYPE_STRING: "string",
    FieldDescriptor.TYPE_INT32: "int32",
    FieldDescriptor.TYPE_BOOL: "bool",
    FieldDescriptor.TYPE_DOUBLE: "double",
}


def test_itinerary_rpcs_are_the_services() -> None:
    documented = [
        (_code(rpc), _code(request), _code(answer.split(":")[0]))
        for rpc, request, answer, _ in table_after("rpcs: Itinerary")
    ]
    assert documented == [(m.name, m.input_type.name, m.output_type.name) for m in _ITINERARY.methods]


def _proto_type(field: FieldDescriptor) -> str:
    """The field's type as a .proto file spells it (the scalar types the Itinerary messages use)."""
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        assert field.message_type is not None
        base = field.message_type.name
    else:
        base = _SCALARS[field.type]
    return f"repeated {base}" if field.is_repeated else base


def test_itinerary_messages_are_the_protos() -> None:
    """Every field of every Itinerary message, with its number and type, and nothing else."""
    documented = [
        (_code(message), _code(field), int(number), _code(kind))
        for message, field, number, kind, _ in table_after("messages: Itinerary")
    ]
    messages = [
        itinerary_pb2.DESCRIPTOR.message_types_by_name[name]
        for name in ("CodeRequest", "CodeSent", "ItineraryRequest", "ItineraryAnswer", "City")
    ]
    assert set(itinerary_pb2.DESCRIPTOR.message_types_by_name) == {m.name for m in messages}
    assert documented == [(m.name, f.name, f.number, _proto_type(f)) for m in messages for f in m.fields]
