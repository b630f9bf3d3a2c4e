"""The wire error vocabulary: `ErrorCode`, the names a failed RPC carries in its `orbitmq-error`
trailing metadata (protos/common.proto `ErrorCode`).

Owns: the one Python list of those names, checked against the proto when this module is imported
(a name added on one side only fails at import, not at the first error). A `StrEnum`: members
compare equal to their names. Never: a code spelled as a free string elsewhere, or a decision
taken on an error's words.
"""

from __future__ import annotations

import enum

from orbitmq.protos import common_pb2


class ErrorCode(enum.StrEnum):
    BAD_REQUEST = "BAD_REQUEST"
    BAD_TOPIC_NAME = "BAD_TOPIC_NAME"
    BAD_TAG = "BAD_TAG"
    BAD_KEY = "BAD_KEY"
    BODY_EMPTY = "BODY_EMPTY"
    BODY_TOO_LARGE = "BODY_TOO_LARGE"
    TOPIC_NOT_FOUND = "TOPIC_NOT_FOUND"
    GROUP_NOT_FOUND = "GROUP_NOT_FOUND"
    NO_PERMISSION = "NO_PERMISSION"
    NOT_MASTER = "NOT_MASTER"
    REPLICATION_TIMEOUT = "REPLICATION_TIMEOUT"
    FENCED = "FENCED"
    IN_SYNC_REPLICAS_NOT_ENOUGH = "IN_SYNC_REPLICAS_NOT_ENOUGH"
    FLUSH_TIMEOUT = "FLUSH_TIMEOUT"
    OFFSET_MOVED = "OFFSET_MOVED"
    MESSAGE_NOT_FOUND = "MESSAGE_NOT_FOUND"
    BROKER_BUSY = "BROKER_BUSY"
    NOT_LEADER = "NOT_LEADER"
    STALE_EPOCH = "STALE_EPOCH"
    CORRUPT_DATA = "CORRUPT_DATA"
    INTERNAL = "INTERNAL"
    TOO_MANY_REQUESTS = "TOO_MANY_REQUESTS"
    DISK_FULL = "DISK_FULL"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    FORBIDDEN = "FORBIDDEN"


def _check_against_proto() -> None:
    proto = set(common_pb2.ErrorCode.keys()) - {"ERROR_UNSPECIFIED"}
    ours = {c.value for c in ErrorCode}
    if proto != ours:
        raise ImportError(f"ErrorCode differs from protos/common.proto: only in the proto {sorted(proto - ours)}, "
                          f"only here {sorted(ours - proto)}")


_check_against_proto()
