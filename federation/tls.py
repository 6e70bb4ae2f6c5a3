"""Mutual TLS for every federation connection, and the peer's identity from its verified certificate.

The only module of :mod:`federation` that imports grpc for identities. Both ends present a certificate from
the federation CA and trust only that CA. A client names the node it expects (``channel_options(peer_id)``),
so connecting to ``127.0.0.1:port`` still checks that the server's SAN is that roster id. A server learns who
called from the certificate the TLS handshake verified (:func:`peer_identity`), never from metadata; given the
roster, it also requires that certificate to be the very one the roster holds for that id.

A failed handshake (no client certificate, another CA, an expired certificate, a wrong server name) never
reaches Python: gRPC's transport log on the node's stderr is its only trace.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import grpc
import grpc.aio
from cryptography import x509

from federation.errors import AuthenticationFailed
from federation.identity import Identity, Roster, certificate_id, is_node_id

MAX_MESSAGE_BYTES = 8 * 1024 * 1024
"""Largest gRPC message either side accepts; vectors stream in 1-4 MiB chunks, well below it."""

# Client keepalive: ping an idle connection with calls in flight every 30 s, give up after 10 s of silence,
# so a stalled peer is noticed within a stage deadline. Servers must accept pings that often.
_KEEPALIVE_TIME_MS = 30_000
_KEEPALIVE_TIMEOUT_MS = 10_000


def server_credentials(identity: Identity) -> grpc.ServerCredentials:
    """Server side of mutual TLS: present ``identity``'s certificate, require a client certificate from the
    federation CA (the handshake fails otherwise)."""
    return grpc.ssl_server_credentials(
        [(identity.key_pem, identity.cert_pem)],
        root_certificates=identity.ca_pem,
        require_client_auth=True,
    )


def channel_credentials(identity: Identity) -> grpc.ChannelCredentials:
    """Client side of mutual TLS: present ``identity``'s certificate, trust only the federation CA."""
    return grpc.ssl_channel_credentials(
        root_certificates=identity.ca_pem,
        private_key=identity.key_pem,
        certificate_chain=identity.cert_pem,
    )


def channel_options(peer_id: str) -> list[tuple[str, Any]]:
    """Channel options for calling the node ``peer_id``: the TLS handshake checks the server certificate's
    SAN against ``peer_id`` whatever address is dialled; 8 MiB message limits; keepalive."""
    if not is_node_id(peer_id):
        raise ValueError(f"{peer_id!r} is not a valid node id")
    return [
        ("grpc.ssl_target_name_override", peer_id),
        ("grpc.default_authority", peer_id),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.keepalive_time_ms", _KEEPALIVE_TIME_MS),
        ("grpc.keepalive_timeout_ms", _KEEPALIVE_TIMEOUT_MS),
        ("grpc.keepalive_permit_without_calls", 0),
        ("grpc.http2.max_pings_without_data", 0),
    ]


def server_options() -> list[tuple[str, Any]]:
    """Server options matching :func:`channel_options`: 8 MiB message limits and a ping policy that accepts
    the clients' keepalive instead of closing the connection with ``too_many_pings``.

    ``so_reuseport`` is off: gRPC turns SO_REUSEPORT on by default, which lets a second process of the same
    user bind a live node's port and take a share of its new connections. With it off, binding a port in
    use fails at start instead."""
    return [
        ("grpc.so_reuseport", 0),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", _KEEPALIVE_TIME_MS // 2),
        ("grpc.http2.min_ping_interval_without_data_ms", _KEEPALIVE_TIME_MS // 2),
        ("grpc.http2.max_ping_strikes", 0),
        ("grpc.keepalive_time_ms", 2 * _KEEPALIVE_TIME_MS),
        ("grpc.keepalive_timeout_ms", 2 * _KEEPALIVE_TIMEOUT_MS),
    ]


def peer_identity(context: grpc.aio.ServicerContext[Any, Any], roster: Roster | None = None) -> str:
    """The node id of the caller, from the client certificate the TLS handshake verified.

    Raises AuthenticationFailed when the call did not come over mutual TLS or the certificate does not name
    exactly one node id. Metadata is never consulted: anyone can write it. Any holder of a federation
    certificate gets this far; the caller still checks that the id may use the method (roster role). With
    ``roster``, the id must be in it and the certificate must be the roster's own for that id, so a certificate
    the CA issued but the roster does not list (an old or a stray one) is refused.
    """
    return identity_from_auth_context(context.auth_context(), roster)


def identity_from_auth_context(auth_context: Mapping[str, Iterable[bytes]], roster: Roster | None = None) -> str:
    """The node id in a gRPC auth context (the part of :func:`peer_identity` that needs no live call)."""
    if list(auth_context.get("transport_security_type", [])) != [b"ssl"]:
        raise AuthenticationFailed("the call did not arrive over TLS; every federation connection is mutual TLS")
    pem_certs = list(auth_context.get("x509_pem_cert", []))
    if pem_certs:
        if len(pem_certs) != 1:
            raise AuthenticationFailed("the TLS peer presented an ambiguous certificate")
        node_id = certificate_id(pem_certs[0])
        if roster is not None:
            _require_roster_certificate(roster, node_id, pem_certs[0])
        return node_id
    if roster is not None:
        raise AuthenticationFailed(
            "gRPC did not expose the caller's certificate, so it cannot be compared with the roster; "
            "run a grpcio that fills x509_pem_cert"
        )
    # Without the PEM (older cores), the SAN entries the handshake extracted; our certificates have one.
    san = list(auth_context.get("x509_subject_alternative_name", []))
    if len(san) != 1:
        raise AuthenticationFailed(
            "the caller presented no client certificate naming exactly one node id "
            "(every call needs a certificate from the federation CA)"
        )
    node_id = san[0].decode("utf-8", errors="replace")
    if not is_node_id(node_id):
        raise AuthenticationFailed(f"the client certificate names {node_id!r}, which is not a node id")
    return node_id


def _require_roster_certificate(roster: Roster, node_id: str, pem: bytes) -> None:
    expected = x509.load_pem_x509_certificate(roster.certificate(node_id))  # AuthenticationFailed if unknown
    if x509.load_pem_x509_certificate(pem) != expected:
        raise AuthenticationFailed(
            f"{node_id} presented a certificate from the federation CA that is not the one in the roster "
            "(an old or a stray one); use the certificate the roster lists, or update the roster's file for it"
        )
    roster.require_valid(node_id)  # on every call: a certificate revoked by the CA's CRL is refused at once
