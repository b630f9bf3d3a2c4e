"""gRPC client plumbing for user request signing (`request_auth`): interceptors that add the
`x-mq-date-time` + `authorization` metadata to every call of a channel (blocking or aio).

Each call is signed when it starts, with the current time, so a long-lived channel keeps working.
"""

from __future__ import annotations

import collections
import time
from typing import Any

import grpc

from orbitmq.common import credentials, request_auth


def _metadata(creds: credentials.Credentials, existing: Any) -> list[tuple[str, str]]:
    md = [(k, v) for k, v in (existing or ()) if k not in (request_auth.AUTHORIZATION, request_auth.DATE_TIME)]
    md.extend(request_auth.signing_metadata(creds.access_key, creds.secret, time.time()))
    return md


class _Details(collections.namedtuple("_Details", ("method", "timeout", "metadata", "credentials",
                                                   "wait_for_ready", "compression")), grpc.ClientCallDetails):
    pass


class _SyncSigner(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                  grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    def __init__(self, creds: credentials.Credentials) -> None:
        self.creds = creds

    def _details(self, d: grpc.ClientCallDetails) -> _Details:
        return _Details(d.method, d.timeout, _metadata(self.creds, d.metadata), d.credentials,
                        getattr(d, "wait_for_ready", None), getattr(d, "compression", None))

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)

    def intercept_stream_stream(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)


def signed_channel(channel: grpc.Channel, creds: credentials.Credentials | tuple[str, str] | None) -> grpc.Channel:
    """A blocking channel whose every call is signed as `creds` (unchanged without credentials)."""
    c = credentials.of(creds)
    return grpc.intercept_channel(channel, _SyncSigner(c)) if c is not None else channel


def _aio_details(creds: credentials.Credentials, d: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
    return grpc.aio.ClientCallDetails(d.method, d.timeout, grpc.aio.Metadata(*_metadata(creds, d.metadata)),
                                      d.credentials, d.wait_for_ready)


class _AioUnary(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, creds: credentials.Credentials) -> None:
        self.creds = creds

    async def intercept_unary_unary(self, continuation, details, request):
        return await continuation(_aio_details(self.creds, details), request)


class _AioUnaryStream(grpc.aio.UnaryStreamClientInterceptor):
    def __init__(self, creds: credentials.Credentials) -> None:
        self.creds = creds

    async def intercept_unary_stream(self, continuation, details, request):
        return await continuation(_aio_details(self.creds, details), request)


class _AioStreamStream(grpc.aio.StreamStreamClientInterceptor):
    def __init__(self, creds: credentials.Credentials) -> None:
        self.creds = creds

    async def intercept_stream_stream(self, continuation, details, request_iterator):
        return await continuation(_aio_details(self.creds, details), request_iterator)


def aio_signing_interceptors(creds: credentials.Credentials | tuple[str, str] | None) -> list:
    """Interceptors for `grpc.aio.*_channel(..., interceptors=...)`; none without credentials."""
    c = credentials.of(creds)
    return [] if c is None else [_AioUnary(c), _AioUnaryStream(c), _AioStreamStream(c)]
