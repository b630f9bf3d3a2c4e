"""Client exceptions, mapped from the `orbitmq-error` trailing metadata name of a failed RPC.

Owns: one exception class per stable `ErrorCode` name, the classes of transport failures that
carry no name (unavailable, deadline), and which errors are retriable or mean a stale route.
It never parses the human words of a status: they are only kept as the exception message.
"""

from __future__ import annotations

import grpc

from orbitmq.common.grpc_errors import ERROR_KEY, LEADER_KEY, MASTER_KEY  # noqa: F401 - re-exported


class OrbitError(Exception):
    """Base of every client error: `code` is the ErrorCode name, `details` the server's words."""

    code: str = "ERROR_UNSPECIFIED"
    retriable: bool = False      # another attempt (possibly elsewhere) may succeed
    stale_route: bool = False    # the cached route is probably wrong: refresh it

    def __init__(self, details: str = "", *, code: str | None = None, status: grpc.StatusCode | None = None,
                 address: str = "", master_address: str = "") -> None:
        super().__init__(details or self.__class__.__doc__ or self.code)
        if code is not None:
            self.code = code
        self.details = details
        self.status = status
        self.address = address
        self.master_address = master_address

    def __str__(self) -> str:
        where = f" (at {self.address})" if self.address else ""
        return f"{self.code}: {self.details}{where}"


class BadRequestError(OrbitError):
    """The request was malformed or a field is invalid."""
    code = "BAD_REQUEST"


class BadTopicNameError(BadRequestError):
    """The topic name is not allowed."""
    code = "BAD_TOPIC_NAME"


class BadTagError(BadRequestError):
    """The tag is not allowed."""
    code = "BAD_TAG"


class BadKeyError(BadRequestError):
    """A key is not allowed."""
    code = "BAD_KEY"


class BodyEmptyError(BadRequestError):
    """The message body is empty."""
    code = "BODY_EMPTY"


class BodyTooLargeError(BadRequestError):
    """The message body is larger than the broker accepts."""
    code = "BODY_TOO_LARGE"


class TopicNotFoundError(OrbitError):
    """The topic does not exist."""
    code = "TOPIC_NOT_FOUND"
    stale_route = True


class GroupNotFoundError(OrbitError):
    """The subscription group does not exist."""
    code = "GROUP_NOT_FOUND"


class NoPermissionError(OrbitError):
    """The broker or topic does not allow this (write to read-only, read from write-only)."""
    code = "NO_PERMISSION"
    retriable = True   # another broker set may be writable
    stale_route = True


class NotMasterError(OrbitError):
    """The broker is not the master of its set."""
    code = "NOT_MASTER"
    retriable = True
    stale_route = True


class ReplicationTimeoutError(OrbitError):
    """Stored on the master but not confirmed by the in-sync replicas in time."""
    code = "REPLICATION_TIMEOUT"
    retriable = True


class FencedError(OrbitError):
    """The master lost its lease and does not acknowledge writes."""
    code = "FENCED"
    retriable = True
    stale_route = True


class InSyncReplicasNotEnoughError(OrbitError):
    """Too few in-sync replicas to accept the write."""
    code = "IN_SYNC_REPLICAS_NOT_ENOUGH"
    retriable = True


class FlushTimeoutError(OrbitError):
    """Stored but not flushed to disk in time."""
    code = "FLUSH_TIMEOUT"
    retriable = True


class OffsetMovedError(OrbitError):
    """The offset is outside the queue's range."""
    code = "OFFSET_MOVED"


class MessageNotFoundError(OrbitError):
    """No such message."""
    code = "MESSAGE_NOT_FOUND"


class BrokerBusyError(OrbitError):
    """The broker is overloaded; try again or elsewhere."""
    code = "BROKER_BUSY"
    retriable = True


class TooManyRequestsError(BrokerBusyError):
    """Too many requests in flight at the server (on this connection or in all); retry with backoff."""
    code = "TOO_MANY_REQUESTS"
    retriable = True


class DiskFullError(OrbitError):
    """The broker's disk is past its ratio: it refuses writes (nothing was stored); reads go on."""
    code = "DISK_FULL"
    retriable = True   # another broker set may have room


class NotLeaderError(OrbitError):
    """This controller is not the Raft leader."""
    code = "NOT_LEADER"
    retriable = True


class StaleEpochError(OrbitError):
    """The epoch is older than the current one."""
    code = "STALE_EPOCH"
    retriable = True
    stale_route = True


class CorruptDataError(OrbitError):
    """Stored data failed its checksum."""
    code = "CORRUPT_DATA"


class InternalError(OrbitError):
    """The server failed unexpectedly."""
    code = "INTERNAL"


class UnavailableError(OrbitError):
    """The server could not be reached (connection refused, reset, shutting down)."""
    code = "UNAVAILABLE"
    retriable = True
    stale_route = True


class RequestTimeoutError(OrbitError):
    """No answer within the timeout (the request may or may not have taken effect)."""
    code = "TIMEOUT"
    retriable = True


class NoRouteError(OrbitError):
    """No route or no writable/readable queue for the topic, or no name server answered."""
    code = "NO_ROUTE"
    retriable = True
    stale_route = True


class UnauthenticatedError(OrbitError):
    """The request's signature was refused: missing, unknown access key, wrong secret or stale date."""
    code = "UNAUTHENTICATED"


class ForbiddenError(OrbitError):
    """The signed user may not do this (its ACL policy denies it, or allows nothing that matches)."""
    code = "FORBIDDEN"


class ClientClosedError(OrbitError):
    """The client was shut down."""
    code = "CLIENT_CLOSED"


BY_CODE: dict[str, type[OrbitError]] = {
    c.code: c for c in (
        BadRequestError, BadTopicNameError, BadTagError, BadKeyError, BodyEmptyError, BodyTooLargeError,
        TopicNotFoundError, GroupNotFoundError, NoPermissionError, NotMasterError, ReplicationTimeoutError,
        FencedError, InSyncReplicasNotEnoughError, FlushTimeoutError, OffsetMovedError, MessageNotFoundError,
        BrokerBusyError, TooManyRequestsError, DiskFullError, NotLeaderError, StaleEpochError, CorruptDataError,
        InternalError, UnauthenticatedError, ForbiddenError)
}

_BY_STATUS: dict[grpc.StatusCode, type[OrbitError]] = {
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: RequestTimeoutError,
    grpc.StatusCode.CANCELLED: UnavailableError,
    grpc.StatusCode.INVALID_ARGUMENT: BadRequestError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: BrokerBusyError,
}


def map_error(status: grpc.StatusCode | None, metadata: tuple | list | None, details: str | None,
              address: str = "") -> OrbitError:
    """The exception for a failed call: by the `orbitmq-error` name if present, else by status."""
    md = {k: v for k, v in (metadata or ())}
    name = md.get(ERROR_KEY)
    cls = BY_CODE.get(name) if name else None
    if cls is None:
        cls = _BY_STATUS.get(status, InternalError) if status is not None else InternalError
    master = md.get(MASTER_KEY, "") or md.get(LEADER_KEY, "")
    err = cls(details or "", status=status, address=address, master_address=master)
    if name and name not in BY_CODE:
        err.code = name   # a name this client does not know yet: keep it, class by status
    return err


def from_rpc_error(e: grpc.RpcError, address: str = "") -> OrbitError:
    """Convert a grpc.RpcError (from a unary call or a future) to an OrbitError."""
    status = e.code() if hasattr(e, "code") else None
    md = e.trailing_metadata() if hasattr(e, "trailing_metadata") else None
    details = e.details() if hasattr(e, "details") else str(e)
    return map_error(status, md, details, address)
