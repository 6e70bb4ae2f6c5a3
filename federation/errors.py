"""The one error tree of fedbroker.

Every failure a node reports is a :class:`FederationError`. Subclasses say what went wrong and carry the
gRPC status they map to and the exit code of the ``fedbroker`` command that meets them; the mapping to
``grpc.StatusCode`` happens at one boundary (:mod:`federation.rpc`), so plain code never imports grpc to raise an
error. Across the wire the class travels too (a ``google.rpc.ErrorInfo`` in the status details,
docs/protocol.md §10), so a client rebuilds the exact subclass a node raised.

::

    FederationError          status               exit  meaning
    ├── InvalidQuery         INVALID_ARGUMENT       4   malformed query, unknown kind, inverted or too long window
    │   ├── UnknownDistrict  INVALID_ARGUMENT       4   a district code not in the domain's registry
    │   └── VectorMismatch   INVALID_ARGUMENT       4   wrong vector length, chunk checksum mismatch
    ├── ConfigError          FAILED_PRECONDITION    3   a config or roster file names a missing key or bad value
    ├── RegistryMismatch     FAILED_PRECONDITION    3   peer uses another district registry (content hash differs)
    ├── RoundError           FAILED_PRECONDITION    7   a secure-aggregation message out of order or inconsistent
    │   ├── RoundAborted     ABORTED                7   fewer than t participants at a stage
    │   ├── RoundReplayed    ALREADY_EXISTS         7   a stale or replayed round id, a second Unmask
    │   └── UnknownRound     NOT_FOUND              7   no such round (expired or never opened)
    ├── IntegrityFault       DATA_LOSS              8   the federation's own fault: a sum whose masks did not cancel,
    │                                                   a rebuilt key that does not match its advert
    ├── AuthenticationFailed UNAUTHENTICATED        5   a bad signature, an unknown peer
    │   └── CodeRejected     UNAUTHENTICATED        5   an itinerary code that is wrong, expired, used or burnt
    ├── PermissionDenied     PERMISSION_DENIED      5   outside a coordinator's jurisdiction or role
    │   └── PolicyRefused    PERMISSION_DENIED      5   an adapter's own policy refuses the query
    ├── ResourceExhausted    RESOURCE_EXHAUSTED     9   a node's cap (live rounds, in-flight queries) is reached
    │   ├── RateLimited      RESOURCE_EXHAUSTED     9   a limit per number reached (itinerary codes per hour)
    │   ├── BudgetExhausted  RESOURCE_EXHAUSTED     9   a release would spend more privacy budget than a day has left
    │   └── IngestBusy       RESOURCE_EXHAUSTED     9   another ingest into the same store is running
    └── NodeUnavailable      UNAVAILABLE            6   a node cannot be reached

The root itself (INTERNAL, exit 1) is any other failure. Messages are written for the person who must fix the
problem, and never carry a raw record, a per-person value or an agency's unmasked vector; neither do ``details``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType


class FederationError(Exception):
    """Root of every fedbroker error. ``status`` is the name of the grpc.StatusCode it maps to, ``exit_code``
    the exit status of the ``fedbroker`` command. ``details`` are short named facts about the failure (strings,
    never data values) that travel with the class across the wire."""

    status: str = "INTERNAL"
    exit_code: int = 1

    def __init__(self, message: str, *, details: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: Mapping[str, str] = MappingProxyType(dict(details or {}))


class InvalidQuery(FederationError):
    status = "INVALID_ARGUMENT"
    exit_code = 4


class UnknownDistrict(InvalidQuery):
    status = "INVALID_ARGUMENT"


class VectorMismatch(InvalidQuery):
    status = "INVALID_ARGUMENT"


class ConfigError(FederationError):
    status = "FAILED_PRECONDITION"
    exit_code = 3


class RegistryMismatch(FederationError):
    status = "FAILED_PRECONDITION"
    exit_code = 3


class RoundError(FederationError):
    status = "FAILED_PRECONDITION"
    exit_code = 7


class RoundAborted(RoundError):
    status = "ABORTED"


class RoundReplayed(RoundError):
    status = "ALREADY_EXISTS"


class UnknownRound(RoundError):
    status = "NOT_FOUND"


class IntegrityFault(FederationError):
    """The federation itself went wrong, not the caller: a released sum fails its own check (the masks did not
    cancel), a rebuilt secret does not match what its owner advertised. Nothing is released; the operators of the
    nodes in the round must look at their logs."""

    status = "DATA_LOSS"
    exit_code = 8


class AuthenticationFailed(FederationError):
    status = "UNAUTHENTICATED"
    exit_code = 5


class CodeRejected(AuthenticationFailed):
    status = "UNAUTHENTICATED"


class PermissionDenied(FederationError):
    status = "PERMISSION_DENIED"
    exit_code = 5


class PolicyRefused(PermissionDenied):
    status = "PERMISSION_DENIED"


class ResourceExhausted(FederationError):
    status = "RESOURCE_EXHAUSTED"
    exit_code = 9


class RateLimited(ResourceExhausted):
    status = "RESOURCE_EXHAUSTED"


class BudgetExhausted(ResourceExhausted):
    status = "RESOURCE_EXHAUSTED"


class IngestBusy(ResourceExhausted):
    status = "RESOURCE_EXHAUSTED"


class NodeUnavailable(FederationError):
    status = "UNAVAILABLE"
    exit_code = 6


def _tree(root: type[FederationError]) -> dict[str, type[FederationError]]:
    classes = {root.__name__: root}
    for sub in root.__subclasses__():
        classes.update(_tree(sub))
    return classes


#: Every class of the tree by name: what a client rebuilds from the class name a node sent.
ERROR_CLASSES: Mapping[str, type[FederationError]] = MappingProxyType(_tree(FederationError))

#: Exit status of the ``fedbroker`` command, by what went wrong (README.md and ``fedbroker --help`` list it).
EXIT_CODES: Mapping[int, str] = MappingProxyType(
    {
        0: "success",
        1: "any other failure (an internal error; see the node's log)",
        2: "usage: a bad command line",
        3: "config: a roster, config or registry problem (ConfigError, RegistryMismatch)",
        4: "invalid query: fix the query (InvalidQuery, UnknownDistrict, VectorMismatch)",
        5: "refused: authentication, permission or an agency's policy (AuthenticationFailed, PermissionDenied, "
        "PolicyRefused)",
        6: "unavailable: a node could not be reached (NodeUnavailable)",
        7: "aborted: a round failed or too few agencies took part (RoundError, RoundAborted, RoundReplayed, "
        "UnknownRound)",
        8: "integrity fault: the federation's own fault, nothing released (IntegrityFault)",
        9: "busy: a node's cap on live rounds or queries is reached; retry later (ResourceExhausted)",
        130: "interrupted (Ctrl-C)",
    }
)
