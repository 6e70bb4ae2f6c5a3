"""``fedbroker.Client``: the coordinator's Python client, sync and async.

::

    from fedbroker import Client

    client = Client.from_roster("fedbroker-work/default/federation.runtime.yaml", coordinator="nhc-national")
    answer = client.importation_risk(end="2020-01-28")          # one method per catalog kind
    frame = answer.to_pandas()                                   # or .to_arrow(), .to_json(), .table("top_origins")
    flows = await client.query_async("flows", start="2020-01-20", end="2020-01-26", source="transport")

Each query is signed with the coordinator's own key (the roster names its certificate and key) and sent to the
broker over mutual TLS. Parameters are the catalog's (``fedbroker query KIND --help`` lists them): Python values
are accepted (dates, numbers, lists of district codes) and signed as the strings the catalog defines. Errors are
the exact :mod:`federation.errors` classes the broker or an agency raised.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import difflib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from broker.client import Answer, ProgressFn, run_query
from federation.catalog import KINDS, Query, new_query
from federation.config import FederationConfig, load_federation
from federation.errors import InvalidQuery


class Client:
    """A coordinator's connection to a federation: ``query``/``query_async`` and one method per kind."""

    def __init__(
        self,
        federation: FederationConfig,
        coordinator: str,
        *,
        broker_address: str | None = None,
        timeout_s: float = 300.0,
        on_progress: ProgressFn | None = None,
    ) -> None:
        federation.coordinator(coordinator)  # ConfigError naming the known coordinators otherwise
        self.federation = federation
        self.coordinator = coordinator
        self.broker_address = broker_address
        self.timeout_s = timeout_s
        self.on_progress = on_progress

    @classmethod
    def from_roster(cls, path: str | Path, coordinator: str, **options: Any) -> Client:
        """A client for the federation of the roster file ``path`` (``federation.runtime.yaml`` after
        ``fedbroker up --ephemeral``), signing as ``coordinator``."""
        return cls(load_federation(Path(path)), coordinator, **options)

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(KINDS)

    def prepare(self, kind: str, *, start: Any = None, end: Any = None, **params: Any) -> Query:
        """The query ``query`` would sign: defaults filled, validated by the catalog (InvalidQuery otherwise)."""
        entry = KINDS.get(kind) or KINDS.get(kind.replace("_", "-"))
        if entry is None:
            close = difflib.get_close_matches(kind.replace("_", "-"), list(KINDS), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise InvalidQuery(f"unknown query kind {kind!r}{hint} known kinds: {', '.join(KINDS)}")
        known = {p.name for p in entry.params}
        for name in params:
            if name not in known:
                close = difflib.get_close_matches(name, sorted(known), n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise InvalidQuery(
                    f"{entry.name} has no parameter {name!r}{hint}; it takes: {', '.join(sorted(known)) or 'none'}"
                )
        return new_query(
            entry.name,
            start=_day(start, "start"),
            end=_day(end, "end") or self.federation.data_end,
            params={k: _signed(v) for k, v in params.items() if v is not None},
            coordinator=self.coordinator,
            data_start=self.federation.data_start,
        )

    async def query_async(self, kind: str, *, start: Any = None, end: Any = None, **params: Any) -> Answer:
        """Sign and run one query of ``kind``; the released :class:`~broker.client.Answer`."""
        query = self.prepare(kind, start=start, end=end, **params)
        return await run_query(
            self.federation,
            self.coordinator,
            query,
            broker_address=self.broker_address,
            on_progress=self.on_progress,
            timeout_s=self.timeout_s,
        )

    def query(self, kind: str, *, start: Any = None, end: Any = None, **params: Any) -> Answer:
        """:meth:`query_async`, run to completion (not from inside a running event loop)."""
        return asyncio.run(self.query_async(kind, start=start, end=end, **params))

    if TYPE_CHECKING:
        # One generated method per catalog kind (``importation_risk`` and ``importation_risk_async``...).
        def __getattr__(self, name: str) -> Callable[..., Any]: ...


def _day(value: Any, name: str) -> dt.date | None:
    if value is None or isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise InvalidQuery(f"{name} {str(value)[:40]!r} is not a date; write it as YYYY-MM-DD") from None


def _signed(value: Any) -> str:
    """A parameter value as the catalog signs it."""
    if isinstance(value, bool):
        raise InvalidQuery("a query parameter is never a boolean; pass the string the catalog lists")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, int | float | str):
        return str(value)
    if isinstance(value, Iterable) and not isinstance(value, Mapping):
        return ",".join(str(v) for v in value)
    raise InvalidQuery(f"cannot sign a parameter of type {type(value).__name__}; pass a string, number or list")


def _kind_methods(name: str) -> tuple[Callable[..., Answer], Callable[..., Any]]:
    entry = KINDS[name]
    flags = "\n".join(
        f"    {p.name}: {p.help}" + (f" (default {p.default})" if p.default else "") for p in entry.params
    )
    doc = f"{entry.summary}.\n\nParameters (besides start and end):\n{flags}\n"

    def sync(self: Client, *, start: Any = None, end: Any = None, **params: Any) -> Answer:
        return self.query(name, start=start, end=end, **params)

    async def run_async(self: Client, *, start: Any = None, end: Any = None, **params: Any) -> Answer:
        return await self.query_async(name, start=start, end=end, **params)

    sync.__doc__ = run_async.__doc__ = doc
    return sync, run_async


for _name in KINDS:
    _method = _name.replace("-", "_")
    _sync, _async = _kind_methods(_name)
    _sync.__name__, _async.__name__ = _method, f"{_method}_async"
    setattr(Client, _method, _sync)
    setattr(Client, f"{_method}_async", _async)
