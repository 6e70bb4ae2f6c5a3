"""Bounds on everything a peer can send a node, and on what a node writes back or logs about it.

Every request is checked against these caps before a handler sees it (:mod:`federation.handlers`), so no
input can make a node allocate, compute or log in proportion to its size. A refusal names the field, its
size and the cap, never the offending value. No gRPC here: the walker reads protobuf descriptors only.

Caps (bytes are UTF-8 bytes for strings):

- repeated fields (participants, survivors, adverts, shares, signatures): at most the roster's number of
  agency nodes (``Bounds.max_members``); map fields (vector params): ``MAX_PARAMS`` entries;
- any string field (ids, aggregate names, dates, hashes, param keys and values): ``MAX_TEXT_BYTES`` (a node
  id is a DNS name of at most 253 bytes);
- any bytes field (round ids, keys, nonces, signatures, shares, ciphertexts): ``MAX_BINARY_BYTES``, except the
  signed query's canonical JSON (``MAX_CANONICAL_QUERY_BYTES``) and a vector chunk (4 MiB);
- the canonical query's JSON nesting: ``MAX_QUERY_JSON_DEPTH`` (the query format needs 2);
- a refusal reason, in the gRPC status and in the audit record: ``MAX_REASON_BYTES``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

MAX_REASON_BYTES = 1024
MAX_TEXT_BYTES = 253
MAX_BINARY_BYTES = 256
MAX_CANONICAL_QUERY_BYTES = 64 * 1024
MAX_QUERY_JSON_DEPTH = 8
MAX_PARAMS = 16
MAX_CHUNK_BYTES = 4 * 1024 * 1024

_TRUNCATED = " ... [truncated]"

#: Caps (bytes or entries) for the fields that need more than the defaults, by full protobuf field name.
FIELD_CAPS: Mapping[str, int] = {
    "federation.v1.SignedQuery.canonical": MAX_CANONICAL_QUERY_BYTES,
    "federation.v1.MaskedInputChunk.data": MAX_CHUNK_BYTES,
    "federation.v1.VectorSpec.params": MAX_PARAMS,
}


@dataclass(frozen=True)
class Bounds:
    """What a node accepts: ``max_members`` entries in a repeated field (the roster's agency nodes), and the
    per-field caps of :data:`FIELD_CAPS`."""

    max_members: int
    field_caps: Mapping[str, int] = field(default_factory=lambda: dict(FIELD_CAPS))


def bounds_problem(message: Message, bounds: Bounds) -> str | None:
    """The first field of ``message`` over its cap, said as "<Type>.<field> has N ...; at most M", or None.

    The description names the field and sizes only, never the value, so it is safe to return and to audit.
    """
    return _walk(message, bounds, message.DESCRIPTOR.name)


def _walk(message: Message, bounds: Bounds, path: str) -> str | None:
    for descriptor, value in message.ListFields():
        name = f"{path}.{descriptor.name}"
        cap = bounds.field_caps.get(descriptor.full_name)
        if descriptor.is_repeated:
            limit = cap if cap is not None else bounds.max_members
            if len(value) > limit:
                return f"{name} has {len(value)} entries; at most {limit} are accepted"
            if _is_map(descriptor):
                items: list[Any] = [*value.keys(), *value.values()]
            else:
                items = list(value)
            problem = _each(items, bounds, name, None)
        else:
            problem = _each([value], bounds, name, cap)
        if problem is not None:
            return problem
    return None


def _each(values: list[Any], bounds: Bounds, name: str, cap: int | None) -> str | None:
    for value in values:
        if isinstance(value, Message):
            problem = _walk(value, bounds, name)
            if problem is not None:
                return problem
        elif isinstance(value, str):
            size = len(value.encode("utf-8"))
            limit = cap if cap is not None else MAX_TEXT_BYTES
            if size > limit:
                return f"{name} is {size} bytes; at most {limit} are accepted"
        elif isinstance(value, bytes):
            limit = cap if cap is not None else MAX_BINARY_BYTES
            if len(value) > limit:
                return f"{name} is {len(value)} bytes; at most {limit} are accepted"
    return None


def _is_map(descriptor: FieldDescriptor) -> bool:
    message_type = descriptor.message_type
    return message_type is not None and message_type.GetOptions().map_entry


def bounded_reason(text: str, limit: int = MAX_REASON_BYTES) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes, ending in a truncation marker when it was cut."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    keep = data[: max(0, limit - len(_TRUNCATED))]
    return keep.decode("utf-8", errors="ignore") + _TRUNCATED


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)


def json_depth(document: bytes) -> int:
    """The deepest nesting of objects and arrays in a JSON text (0 for a scalar), without parsing it.

    Strings are removed first (brackets inside them do not count); the depth is then the maximum running
    sum of opening (+1) and closing (-1) brackets, computed with numpy so a 64 KiB text costs microseconds.
    The text need not be valid JSON; :func:`json.loads` judges that afterwards, within the depth checked.
    """
    skeleton = np.frombuffer(_JSON_STRING.sub(b"", document), dtype=np.uint8)
    steps = np.zeros(skeleton.shape[0], dtype=np.int64)
    steps[(skeleton == ord("{")) | (skeleton == ord("["))] = 1
    steps[(skeleton == ord("}")) | (skeleton == ord("]"))] = -1
    return int(np.cumsum(steps).max(initial=0))
