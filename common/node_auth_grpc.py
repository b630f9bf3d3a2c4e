"""gRPC plumbing for node signing (`node_auth`): a client interceptor that signs every call of an
aio channel, and the server-side check a handler runs on the request it received."""

from __future__ import annotations

import collections
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


class _SyncDetails(collections.namedtuple("_SyncDetails", ("method", "timeout", "metadata", "credentials",
                                                           "wait_for_ready", "compression")),
                   grpc.ClientCallDetails):
    pass


class _SyncUnarySigner(grpc.UnaryUnaryClientInterceptor):
    def __init__(self, secret: bytes) -> None:
        self.secret = secret

    def intercept_unary_unary(self, continuation, details, request):
        value = node_auth.sign(self.secret, _method(details), payload_of(request), _now_ms())
        md = list(details.metadata or ()) + [(node_auth.HEADER, value)]
        return continuation(_SyncDetails(details.method, details.timeout, md, details.credentials,
                                         getattr(details, "wait_for_ready", None),
                                         getattr(details, "compression", None)), request)


def signed_channel(channel: grpc.Channel, secret: bytes | None) -> grpc.Channel:
    """A blocking channel whose unary calls are signed with `secret` (unchanged without one)."""
    return grpc.intercept_channel(channel, _SyncUnarySigner(secret)) if secret else channel


def signing_interceptors(secret: bytes | None) -> list:
    """Interceptors for `grpc.aio.insecure_channel(..., interceptors=...)`; none without a secret."""
    return [] if not secret else [_UnarySigner(secret), _StreamSigner(secret)]


ERROR_KEY = "orbitmq-error"


class NodeAuthInterceptor(grpc.aio.ServerInterceptor):
    """Server side: calls to the `protected` methods (full names, "/pkg.Service/Method") must be
    signed with `secret`; others pass. A refusal is UNAUTHENTICATED with `orbitmq-error` =
    NO_PERMISSION and the reason in words; nothing of the request is acted on. Unary calls are
    checked over their decoded request, streams once at their start."""

    def __init__(self, secret: bytes | None, protected: set[str], log: Any = None) -> None:
        self.secret = secret
        self.protected = set(protected)
        self.log = log

    async def _refuse(self, context: grpc.aio.ServicerContext, method: str, err: Exception) -> None:
        if self.log is not None:
            self.log.warning("refused unauthenticated %s from %s: %s", method, context.peer(), str(err)[:200])
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(err), trailing_metadata=((ERROR_KEY, "NO_PERMISSION"),))

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        method = details.method
        if handler is None or not self.secret or method not in self.protected:
            return handler
        secret = self.secret
        header = dict(details.invocation_metadata or ()).get(node_auth.HEADER)
        if handler.unary_unary is not None:
            inner = handler.unary_unary

            async def unary(request, context):
                try:
                    node_auth.verify(secret, method, payload_of(request), header, _now_ms())
                except node_auth.NodeAuthError as e:
                    await self._refuse(context, method, e)
                return await inner(request, context)

            return grpc.unary_unary_rpc_method_handler(unary, request_deserializer=handler.request_deserializer,
                                                       response_serializer=handler.response_serializer)
        if handler.stream_stream is not None:
            inner_s = handler.stream_stream

            async def stream(request_iterator, context):
                try:
                    node_auth.verify(secret, method, b"", header, _now_ms())
                except node_auth.NodeAuthError as e:
                    await self._refuse(context, method, e)
                async for resp in inner_s(request_iterator, context):
                    yield resp

            return grpc.stream_stream_rpc_method_handler(stream, request_deserializer=handler.request_deserializer,
                                                         response_serializer=handler.response_serializer)
        return handler
