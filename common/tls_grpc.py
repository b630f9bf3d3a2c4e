"""The one factory of gRPC ports and channels: every server port and every channel of OrbitMQ is
made here, from a `TlsConfig` (common/tls.py), so TLS applies everywhere or nowhere.

Owns: server credentials (optionally requiring client certificates), channel credentials
(CA + this process's certificate for mutual TLS), `add_port` for servers, and `channel` /
`aio_channel` for blocking and asyncio clients. `tls=None` means the process default
(`tls.default()`: installed, or from $ORBITMQ_TLS_*), so a tool pointed at a secure cluster
through its cluster.env needs no flag.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc

from orbitmq.common import tls as tlsmod
from orbitmq.common.tls import TlsConfig


def server_credentials(cfg: TlsConfig) -> grpc.ServerCredentials:
    cert, key, ca = cfg.read()
    if cert is None or key is None:
        raise tlsmod.TlsError("a TLS server needs tls_cert_file and tls_key_file")
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=cfg.client_auth)


def channel_credentials(cfg: TlsConfig) -> grpc.ChannelCredentials:
    cert, key, ca = cfg.read()
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)


def add_port(server: grpc.Server | grpc.aio.Server, listen: str, cfg: TlsConfig) -> int:
    """Listen on `listen` with TLS if `cfg` serves it, else plaintext; returns the port (0: failed)."""
    if cfg.serves_tls:
        return server.add_secure_port(listen, server_credentials(cfg))
    return server.add_insecure_port(listen)


def _options(cfg: TlsConfig, options: Sequence[tuple[str, Any]] | None) -> list[tuple[str, Any]]:
    out = list(options or ())
    if cfg.server_name:
        out.append(("grpc.ssl_target_name_override", cfg.server_name))
    return out


def channel(target: str, tls: TlsConfig | str | bool | None = None,
            options: Sequence[tuple[str, Any]] | None = None) -> grpc.Channel:
    """A blocking channel to `target` (already dial-mapped by the caller), TLS per `tls`."""
    cfg = tlsmod.resolve(tls)
    if cfg.dials_tls:
        return grpc.secure_channel(target, channel_credentials(cfg), options=_options(cfg, options))
    return grpc.insecure_channel(target, options=list(options or ()))


def aio_channel(target: str, tls: TlsConfig | str | bool | None = None,
                options: Sequence[tuple[str, Any]] | None = None,
                interceptors: Sequence[Any] | None = None) -> grpc.aio.Channel:
    """An asyncio channel to `target`, TLS per `tls`."""
    cfg = tlsmod.resolve(tls)
    if cfg.dials_tls:
        return grpc.aio.secure_channel(target, channel_credentials(cfg), options=_options(cfg, options),
                                       interceptors=list(interceptors or ()) or None)
    return grpc.aio.insecure_channel(target, options=list(options or ()), interceptors=list(interceptors or ()) or None)


def handshake_hint(details: str, dials_tls: bool, has_cert: bool = True) -> str:
    """Words to add to an UNAVAILABLE error whose gRPC details look like a TLS mismatch ("" if not)."""
    d = (details or "").lower()
    closed = "socket closed" in d or "connection reset" in d
    if not dials_tls and closed:
        return (" [this client dials plaintext and the server closed the connection: if it serves TLS, "
                "dial with tls= (the CA file) or $ORBITMQ_TLS_CA]")
    if dials_tls and not has_cert and closed:
        return (" [the server closed the TLS connection: if it requires client certificates (tls_client_auth), "
                "dial with a certificate of its CA (tls_cert_file/tls_key_file, $ORBITMQ_TLS_CERT/_KEY)]")
    if dials_tls and "handshake failed" in d:
        if "wrong_version_number" in d or "packet_length_too_long" in d:
            return " [TLS handshake failed: the server does not speak TLS (plaintext server?)]"
        if "certificate" in d or "verify" in d or "bad_signature" in d:
            return (" [TLS handshake failed: the server's certificate is not signed by the CA this client trusts, "
                    "or does not name the host dialed]")
        return " [TLS handshake failed: a server requiring client certificates needs tls_cert_file/tls_key_file]"
    return ""
