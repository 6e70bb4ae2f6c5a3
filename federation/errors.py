"""The one error tree of fedbroker.

Every failure a node reports is a :class:`FederationError`. Subclasses say what went wrong and carry the
gRPC status they map to; the mapping to ``grpc.StatusCode`` happens at one boundary
(:mod:`federation.rpc`), so plain code never imports grpc to raise an error.

::

    FederationError
    ├── InvalidQuery            INVALID_ARGUMENT   malformed query, unknown kind, inverted or too long window
    │   ├── UnknownDistrict     INVALID_ARGUMENT   a district code not in the domain's registry
    │   └── VectorMismatch      INVALID_ARGUMENT   wrong vector length, chunk checksum mismatch
    ├── ConfigError             (start-up only)    a config or roster file names a missing key or bad value
    ├── RegistryMismatch        FAILED_PRECONDITION  peer uses another district registry (content hash differs)
    ├── RoundError              FAILED_PRECONDITION  a secure-aggregation message out of order or inconsistent
    │   ├── RoundAborted        ABORTED            fewer than t participants at a stage
    │   ├── RoundReplayed       ALREADY_EXISTS     a stale or replayed round id, a second Unmask
    │   └── UnknownRound        NOT_FOUND          no such round (expired or never opened)
    ├── AuthenticationFailed    UNAUTHENTICATED    a bad signature, an unknown peer
    ├── PermissionDenied        PERMISSION_DENIED  outside a coordinator's jurisdiction or role
    │   └── PolicyRefused       PERMISSION_DENIED  an adapter's own policy refuses the query
    ├── ResourceExhausted       RESOURCE_EXHAUSTED a node's cap (live rounds, in-flight queries) is reached
    └── NodeUnavailable         UNAVAILABLE        a node cannot be reached

Messages are written for the person who must fix the problem, and never carry a raw record, a per-person
value or an agency's unmasked vector.
"""

from __future__ import annotations


class FederationError(Exception):
    """Root of every fedbroker error. ``status`` is the name of the grpc.StatusCode it maps to."""

    status: str = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidQuery(FederationError):
    status = "INVALID_ARGUMENT"


class UnknownDistrict(InvalidQuery):
    status = "INVALID_ARGUMENT"


class VectorMismatch(InvalidQuery):
    status = "INVALID_ARGUMENT"


class ConfigError(FederationError):
    status = "FAILED_PRECONDITION"


class RegistryMismatch(FederationError):
    status = "FAILED_PRECONDITION"


class RoundError(FederationError):
    status = "FAILED_PRECONDITION"


class RoundAborted(RoundError):
    status = "ABORTED"


class RoundReplayed(RoundError):
    status = "ALREADY_EXISTS"


class UnknownRound(RoundError):
    status = "NOT_FOUND"


class AuthenticationFailed(FederationError):
    status = "UNAUTHENTICATED"


class PermissionDenied(FederationError):
    status = "PERMISSION_DENIED"


class PolicyRefused(PermissionDenied):
    status = "PERMISSION_DENIED"


class ResourceExhausted(FederationError):
    status = "RESOURCE_EXHAUSTED"


class NodeUnavailable(FederationError):
    status = "UNAVAILABLE"
