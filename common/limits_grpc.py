"""The in-flight request limit of a gRPC server, the shell over common/limits.py `InflightLimits`.

Owns: counting each unary call from its handler's start to its end, per connection (the peer
address of the HTTP/2 connection) and in all, and answering a call over a limit at once with
RESOURCE_EXHAUSTED + `orbitmq-error` TOO_MANY_REQUESTS (clients retry it with backoff). Health
checks are never limited. Streams are not counted (they are long-lived sessions, bounded by
their own servers). One event loop owns the counters (grpc.aio), so no lock.
"""

from __future__ import annotations

import grpc

from orbitmq.common.error_codes import ErrorCode
from orbitmq.common.grpc_errors import abort
from orbitmq.common.limits import InflightLimits

EXEMPT_PREFIXES = ("/grpc.health.v1.Health/",)


class InflightLimiter(grpc.aio.ServerInterceptor):
    """Put in a server's interceptors: `InflightLimiter(per_connection, total)` (0 = unlimited)."""

    def __init__(self, per_connection: int, total: int) -> None:
        self.limits = InflightLimits(per_connection, total)
        self.refused = 0

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if handler is None or handler.unary_unary is None or details.method.startswith(EXEMPT_PREFIXES):
            return handler
        inner, limits = handler.unary_unary, self.limits

        async def limited(request, context):
            peer = context.peer()
            refusal = limits.admit(peer)
            if refusal is not None:
                self.refused += 1
                await abort(context, ErrorCode.TOO_MANY_REQUESTS, refusal.message)
            try:
                return await inner(request, context)
            finally:
                limits.release(peer)

        return grpc.unary_unary_rpc_method_handler(limited, request_deserializer=handler.request_deserializer,
                                                   response_serializer=handler.response_serializer)
