"""gRPC plumbing for node signing (`node_auth`): a client interceptor that signs every call of an
aio channel, and the server-side check a handler runs on the request it received."""

from __future__ import annotations

import time
from typing import Any

import grpc

from orbitmq.common import node_auth


def _now_ms() -> int:
    return int(time.time() * 1000)


def payload_of(request: Any) -> bytes:
    """The bytes a signature covers: the request's deterministic serialization (b"" for streams)."""
    return request.SerializeToString(deterministic=True) if request is not None else b""


def _with_header(details: grpc.aio.ClientCallDetails, value: str) -> grpc.aio.ClientCallDetails:
    md = list(details.metadata or ()) + [(node_auth.HEADER, value)]
    return grpc.aio.ClientCallDetails(details.method, details.timeout, grpc.aio.Metadata(*md),
                                      details.credentials, details.wait_for_ready)


def _method(details: grpc.aio.ClientCallDetails) -> str:
    m = details.method
    return m.decode() if isinstance(m, bytes) else str(m)


class _UnarySigner(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, secret: bytes) -> None:
        self.secret = secret

    async def intercept_unary_unary(self, continuation, details, request):
        value = node_auth.sign(self.secret, _method(details), payload_of(request), _now_ms())
        return await continuation(_with_header(details, value), request)


class _StreamSigner(grpc.aio.StreamStreamClientInterceptor):
    """Streams are signed once, at their start, over the method alone."""

    def __init__(self, secret: bytes) -> None:
        self.secret = secret

    async def intercept_stream_stream(self, continuation, details, request_iterator):
        value = node_auth.sign(self.secret, _method(details), b"", _now_ms())
        return await continuation(_with_header(details, value), request_iterator)


def signing_interceptors(secret: bytes | None) -> list:
    """Interceptors for `grpc.aio.insecure_channel(..., interceptors=...)`; none without a secret."""
    return [] if not secret else [_UnarySigner(secret), _StreamSigner(secret)]


def check(secret: bytes | None, context: grpc.aio.ServicerContext, method: str, request: Any = None) -> None:
    """Raise NodeAuthError unless the call carries a valid signature (no-op without a secret)."""
    if not secret:
        return
    header = dict(context.invocation_metadata() or ()).get(node_auth.HEADER)
    node_auth.verify(secret, method, payload_of(request), header, _now_ms())
