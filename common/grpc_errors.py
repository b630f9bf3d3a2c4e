"""The gRPC error plumbing every OrbitMQ server and client uses.

Owns: the metadata keys (`orbitmq-error` with an `ErrorCode` name, `orbitmq-master` and
`orbitmq-leader` with where to retry), the gRPC status each code travels under, `abort(...)` for
servicers, and `code_of` / `metadata_of` for callers reading a failed call. Callers branch on the
code, never on the details text (which is for people).
"""

from __future__ import annotations

import grpc

from orbitmq.common.error_codes import ErrorCode

ERROR_KEY = "orbitmq-error"
MASTER_KEY = "orbitmq-master"
LEADER_KEY = "orbitmq-leader"

_S = grpc.StatusCode
STATUS_OF: dict[ErrorCode, grpc.StatusCode] = {
    ErrorCode.BAD_REQUEST: _S.INVALID_ARGUMENT, ErrorCode.BAD_TOPIC_NAME: _S.INVALID_ARGUMENT,
    ErrorCode.BAD_TAG: _S.INVALID_ARGUMENT, ErrorCode.BAD_KEY: _S.INVALID_ARGUMENT,
    ErrorCode.BODY_EMPTY: _S.INVALID_ARGUMENT, ErrorCode.BODY_TOO_LARGE: _S.INVALID_ARGUMENT,
    ErrorCode.TOPIC_NOT_FOUND: _S.NOT_FOUND, ErrorCode.GROUP_NOT_FOUND: _S.NOT_FOUND,
    ErrorCode.MESSAGE_NOT_FOUND: _S.NOT_FOUND, ErrorCode.NO_PERMISSION: _S.PERMISSION_DENIED,
    ErrorCode.NOT_MASTER: _S.FAILED_PRECONDITION, ErrorCode.FENCED: _S.FAILED_PRECONDITION,
    ErrorCode.STALE_EPOCH: _S.FAILED_PRECONDITION, ErrorCode.REPLICATION_TIMEOUT: _S.DEADLINE_EXCEEDED,
    ErrorCode.FLUSH_TIMEOUT: _S.DEADLINE_EXCEEDED, ErrorCode.IN_SYNC_REPLICAS_NOT_ENOUGH: _S.UNAVAILABLE,
    ErrorCode.BROKER_BUSY: _S.RESOURCE_EXHAUSTED, ErrorCode.NOT_LEADER: _S.UNAVAILABLE,
    ErrorCode.OFFSET_MOVED: _S.OUT_OF_RANGE, ErrorCode.CORRUPT_DATA: _S.DATA_LOSS, ErrorCode.INTERNAL: _S.INTERNAL,
    ErrorCode.TOO_MANY_REQUESTS: _S.RESOURCE_EXHAUSTED, ErrorCode.DISK_FULL: _S.RESOURCE_EXHAUSTED,
    ErrorCode.UNAUTHENTICATED: _S.UNAUTHENTICATED, ErrorCode.FORBIDDEN: _S.PERMISSION_DENIED,
}
assert set(STATUS_OF) == set(ErrorCode), "every ErrorCode needs a gRPC status"


MAX_DETAILS = 2000   # characters of an error's details on the wire (clients cap metadata at 16 KiB)


def clip(details: str, limit: int = MAX_DETAILS) -> str:
    """`details` cut to `limit` characters: an error that quotes what a client sent (a 70,000-character
    name) must still fit the status trailer, or the client gets RESOURCE_EXHAUSTED and no error name."""
    if len(details) <= limit:
        return details
    return f"{details[:limit]}... ({len(details) - limit} more characters)"


async def abort(context: grpc.aio.ServicerContext, code: ErrorCode | str, details: str, *,
                status: grpc.StatusCode | None = None, master: str = "", leader: str | None = None) -> None:
    """End the call with `code`'s status (or `status`), `details` in words, and the metadata."""
    code = ErrorCode(code)
    md: tuple[tuple[str, str], ...] = ((ERROR_KEY, code.value),)
    if master:
        md += ((MASTER_KEY, master),)
    if leader is not None:
        md += ((LEADER_KEY, leader),)
    await context.abort(status or STATUS_OF[code], clip(details), trailing_metadata=md)


def metadata_of(e: grpc.RpcError) -> dict[str, str]:
    """The trailing (then initial) metadata of a failed call, as str -> str."""
    md: dict[str, str] = {}
    for getter in ("trailing_metadata", "initial_metadata"):
        try:
            for k, v in getattr(e, getter)() or ():
                md.setdefault(k, v if isinstance(v, str) else v.decode())
        except Exception:  # noqa: BLE001 - metadata is optional
            pass
    return md


def code_of(e: grpc.RpcError) -> ErrorCode | None:
    """The `orbitmq-error` code of a failed call (None: absent or a name this version does not know)."""
    name = metadata_of(e).get(ERROR_KEY, "")
    try:
        return ErrorCode(name)
    except ValueError:
        return None


class _Malformed:
    """Stands in for request bytes that did not decode; the guard answers BAD_REQUEST."""

    __slots__ = ("error",)

    def __init__(self, error: str) -> None:
        self.error = error


class MalformedRequestGuard(grpc.aio.ServerInterceptor):
    """Put first in a server's interceptors: a request whose bytes do not decode (a unary request,
    or any message of a client stream) is answered BAD_REQUEST (with `orbitmq-error`) instead of
    grpc's bare UNKNOWN and an ERROR log line per call; what the client sent is cut to 200
    characters in the answer."""

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if handler is None or handler.request_deserializer is None:
            return handler
        parse, method = handler.request_deserializer, details.method

        def safe(data: bytes):
            try:
                return parse(data)
            except Exception as e:  # noqa: BLE001 - any decode failure is the client's malformed request
                return _Malformed(str(e)[:200])

        async def refuse(request: _Malformed, context) -> None:
            await abort(context, ErrorCode.BAD_REQUEST, f"malformed request to {method}: {request.error}")

        if handler.unary_unary is not None:
            inner = handler.unary_unary

            async def guarded(request, context):
                if type(request) is _Malformed:
                    await refuse(request, context)
                return await inner(request, context)

            return grpc.unary_unary_rpc_method_handler(guarded, request_deserializer=safe,
                                                       response_serializer=handler.response_serializer)
        if handler.stream_stream is not None:
            inner_stream = handler.stream_stream

            async def guarded_stream(request_iterator, context):
                bad: list[_Malformed] = []

                async def checked():   # may be read by another task: end the stream, refuse from ours
                    async for request in request_iterator:
                        if type(request) is _Malformed:
                            bad.append(request)
                            return
                        yield request

                async for response in inner_stream(checked(), context):
                    yield response
                if bad:
                    await refuse(bad[0], context)

            return grpc.stream_stream_rpc_method_handler(guarded_stream, request_deserializer=safe,
                                                         response_serializer=handler.response_serializer)
        if handler.unary_stream is not None:
            inner_us = handler.unary_stream

            async def guarded_us(request, context):
                if type(request) is _Malformed:
                    await refuse(request, context)
                async for response in inner_us(request, context):
                    yield response

            return grpc.unary_stream_rpc_method_handler(guarded_us, request_deserializer=safe,
                                                        response_serializer=handler.response_serializer)
        return handler
