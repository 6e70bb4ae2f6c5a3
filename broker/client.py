"""The coordinator's client: sign a query, send it to the broker over mutual TLS, follow its progress."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from federation.config import FederationConfig
from federation.errors import ConfigError, NodeUnavailable
from federation.identity import Identity
from federation.queries import Query
from federation.rpc import error_from_rpc
from federation.tls import channel_credentials, channel_options
from federation.v1 import broker_pb2, broker_pb2_grpc, common_pb2

ProgressFn = Callable[[broker_pb2.Progress], None]


@dataclass(frozen=True)
class Answer:
    """A released result as the coordinator holds it."""

    query: dict[str, Any]
    columns: list[str]
    rows: list[list[Any]]
    suppressed: int
    contributors: dict[str, dict[str, list[str]]]
    notes: list[str]
    #: Further tables of kinds with several, each ``{"name", "columns", "rows", "suppressed"}``.
    tables: list[dict[str, Any]] = field(default_factory=list)
    #: Per round: {"round", "aggregate", "noise", "sigma", "rho_spent", "rho_left"} (σ of each cell of its sum).
    privacy: list[dict[str, Any]] = field(default_factory=list)

    def to_json_dict(self) -> dict[str, Any]:
        document = {
            "query": self.query,
            "columns": self.columns,
            "rows": self.rows,
            "suppressed": self.suppressed,
            "contributors": self.contributors,
            "notes": self.notes,
            "privacy": self.privacy,
        }
        if self.tables:
            document["tables"] = self.tables
        return document

    @classmethod
    def from_json_dict(cls, document: dict[str, Any]) -> Answer:
        """The answer a :meth:`to_json_dict` document describes (e.g. a saved ``answer.json``)."""
        return cls(
            query=document["query"],
            columns=document["columns"],
            rows=document["rows"],
            suppressed=document["suppressed"],
            contributors=document["contributors"],
            notes=document.get("notes", []),
            tables=document.get("tables", []),
            privacy=document.get("privacy", []),
        )

    def table(self, name: str | None = None) -> dict[str, Any]:
        """A table by name: None (or the kind's name) is the main table, else a further one (KeyError if the kind
        has none of that name). Each is ``{"name", "columns", "rows", "suppressed"}``."""
        if name is None or name == self.kind:
            return {"name": self.kind, "columns": self.columns, "rows": self.rows, "suppressed": self.suppressed}
        for table in self.tables:
            if table["name"] == name:
                return table
        raise KeyError(f"{self.kind} has no table {name!r}; it has {', '.join(self.table_names)}")

    @property
    def kind(self) -> str:
        return str(self.query["kind"])

    @property
    def table_names(self) -> list[str]:
        """The main table (named after the kind) first, then the further ones."""
        return [self.kind, *(t["name"] for t in self.tables)]

    @property
    def canonical_query(self) -> bytes:
        """The signed query's canonical bytes (sorted keys, no spaces, UTF-8), re-encoded from ``query``."""
        return json.dumps(self.query, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    @property
    def query_sha256(self) -> str:
        """Hex sha256 of the signed query's canonical bytes: the id every saved file of this answer carries."""
        return hashlib.sha256(self.canonical_query).hexdigest()

    def to_json(self) -> str:
        """The whole answer as JSON (the ``--format json`` document)."""
        return json.dumps(self.to_json_dict(), ensure_ascii=False, indent=2)

    def to_arrow(self, name: str | None = None) -> Any:
        """One table as a ``pyarrow.Table`` (suppressed cells are nulls); the schema metadata carries the signed
        query (``fedbroker.query``) and its sha256. Needs the ``arrow`` extra (pyarrow)."""
        try:
            import pyarrow as pa
        except ImportError:
            raise ConfigError("to_arrow needs pyarrow: pip install 'fedbroker[arrow]'") from None
        table = self.table(name)
        columns = {c: [row[i] for row in table["rows"]] for i, c in enumerate(table["columns"])}
        metadata = {
            "fedbroker.query": self.canonical_query.decode("utf-8"),
            "fedbroker.query_sha256": self.query_sha256,
            "fedbroker.table": table["name"],
            "fedbroker.suppressed": str(table["suppressed"]),
        }
        return pa.table({c: pa.array(v) for c, v in columns.items()}, metadata=metadata)

    def to_pandas(self, name: str | None = None) -> Any:
        """One table as a ``pandas.DataFrame`` with nullable dtypes (suppressed cells are ``<NA>``, integers stay
        integers). Needs the ``pandas`` extra."""
        try:
            import pandas as pd
            import pyarrow as pa
        except ImportError:
            raise ConfigError("to_pandas needs pandas and pyarrow: pip install 'fedbroker[pandas]'") from None
        mapping = {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype(), pa.string(): pd.StringDtype()}
        return self.to_arrow(name).to_pandas(types_mapper=mapping.get)


def coordinator_identity(federation: FederationConfig, coordinator_id: str) -> Identity:
    coordinator = federation.coordinator(coordinator_id)
    if coordinator.key is None:
        raise ConfigError(f"{federation.path}: coordinator {coordinator_id} has no key file; add coordinators[].key")
    return Identity.load(coordinator.id, coordinator.cert, coordinator.key, federation.ca)


def sign_query(identity: Identity, query: Query) -> common_pb2.SignedQuery:
    canonical = query.canonical()
    return common_pb2.SignedQuery(
        canonical=canonical, coordinator_id=identity.node_id, signature=identity.sign(canonical)
    )


def answer_from_pb(result: broker_pb2.QueryResult) -> Answer:
    rows = _rows(result.rows)
    contributors = {c.round: {"contributed": list(c.contributed), "missing": list(c.missing)} for c in result.coverage}
    return Answer(
        query=json.loads(result.query),
        columns=list(result.columns),
        rows=rows,
        suppressed=int(result.suppressed),
        contributors=contributors,
        notes=list(result.notes),
        tables=[
            {"name": t.name, "columns": list(t.columns), "rows": _rows(t.rows), "suppressed": int(t.suppressed)}
            for t in result.tables
        ],
        privacy=[
            {
                "round": p.round,
                "aggregate": p.aggregate,
                "noise": p.noise,
                "sigma": p.sigma,
                "rho_spent": p.rho_spent,
                "rho_left": p.rho_left,
            }
            for p in result.privacy
        ],
    )


def _rows(rows: Any) -> list[list[Any]]:
    return [[_value(cell) for cell in row.cells] for row in rows]


def _value(cell: broker_pb2.Cell) -> Any:
    if cell.suppressed:
        return None
    which = cell.WhichOneof("value")
    return getattr(cell, which) if which else None


async def run_query(
    federation: FederationConfig,
    coordinator_id: str,
    query: Query,
    *,
    broker_address: str | None = None,
    on_progress: ProgressFn | None = None,
    timeout_s: float = 300.0,
) -> Answer:
    """Sign ``query`` as ``coordinator_id``, run it at the broker and return the released answer."""
    identity = coordinator_identity(federation, coordinator_id)
    signed = sign_query(identity, query)
    broker = federation.broker
    async with grpc.aio.secure_channel(
        broker_address or broker.address, channel_credentials(identity), options=channel_options(broker.id)
    ) as channel:
        stub = broker_pb2_grpc.BrokerStub(channel)
        result: broker_pb2.QueryResult | None = None
        try:
            async for event in stub.RunQuery(broker_pb2.RunQueryRequest(query=signed), timeout=timeout_s):
                if event.HasField("progress"):
                    if on_progress is not None:
                        on_progress(event.progress)
                else:
                    result = event.result
        except grpc.aio.AioRpcError as error:
            raise error_from_rpc(error, node=broker.id) from None
    if result is None:
        raise NodeUnavailable(f"the broker {broker.id} closed the stream without a result; see its log")
    return answer_from_pb(result)


async def fetch_budget(
    federation: FederationConfig, coordinator_id: str, *, broker_address: str | None = None, timeout_s: float = 60.0
) -> broker_pb2.FederationBudget:
    """Every agency's privacy-budget ledger totals, as each agency reports them through the broker."""
    identity = coordinator_identity(federation, coordinator_id)
    broker = federation.broker
    async with grpc.aio.secure_channel(
        broker_address or broker.address, channel_credentials(identity), options=channel_options(broker.id)
    ) as channel:
        stub = broker_pb2_grpc.BrokerStub(channel)
        try:
            budget: broker_pb2.FederationBudget = await stub.Budget(
                broker_pb2.FederationBudgetRequest(), timeout=timeout_s
            )
        except grpc.aio.AioRpcError as error:
            raise error_from_rpc(error, node=broker.id) from None
    return budget
