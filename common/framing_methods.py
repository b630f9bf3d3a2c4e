"""The framed protocol's method codes: which Broker RPC each code is, with its protobuf types.

Owns: the one numbering of methods on the framed port (never reused, never renumbered: a code is
the wire's name for a method), and the HELLO exchange's payload (JSON, so a later version can add
keys, e.g. credentials for a per-connection signature). The request and reply of a code are the
same protobuf messages as the gRPC `orbitmq.v1.Broker` method of the same name (checked by
tests/remoting/test_methods.py against the service descriptor). Pure: no I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from orbitmq.protos import broker_pb2

HELLO = 0
PROTOCOL = "orbitmq-framed/1"


@dataclass(frozen=True, slots=True)
class Method:
    code: int
    name: str             # the gRPC method name in `orbitmq.v1.Broker`
    request: Any          # protobuf class
    response: Any         # protobuf class


_TABLE: tuple[tuple[int, str, str, str], ...] = (
    (1, "SendMessage", "SendRequest", "SendResponse"),
    (2, "PullMessage", "PullRequest", "PullResponse"),
    (3, "ConsumerHeartbeat", "ConsumerHeartbeatRequest", "ConsumerHeartbeatResponse"),
    (4, "UnregisterConsumer", "UnregisterConsumerRequest", "UnregisterConsumerResponse"),
    (5, "GetConsumerList", "GetConsumerListRequest", "GetConsumerListResponse"),
    (6, "CommitOffset", "CommitOffsetRequest", "CommitOffsetResponse"),
    (7, "QueryOffset", "QueryOffsetRequest", "QueryOffsetResponse"),
    (8, "GetOffsetRange", "GetOffsetRangeRequest", "GetOffsetRangeResponse"),
    (9, "QueryMessageByKey", "QueryByKeyRequest", "QueryMessagesResponse"),
    (10, "QueryMessageById", "QueryByIdRequest", "QueryMessagesResponse"),
    (11, "GetBrokerStatus", "GetBrokerStatusRequest", "BrokerStatus"),
)

BY_CODE: dict[int, Method] = {
    code: Method(code, name, getattr(broker_pb2, req), getattr(broker_pb2, resp)) for code, name, req, resp in _TABLE
}
BY_NAME: dict[str, Method] = {m.name: m for m in BY_CODE.values()}


def hello_payload(**fields: Any) -> bytes:
    """A HELLO request or reply: {"protocol": PROTOCOL, ...fields} as JSON."""
    return json.dumps({"protocol": PROTOCOL, **fields}, separators=(",", ":")).encode()


def parse_hello(payload: bytes) -> dict[str, Any]:
    """The fields of a HELLO; ValueError if it is not one of this protocol."""
    try:
        d = json.loads(payload.decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"HELLO is not JSON: {e}") from None
    if not isinstance(d, dict) or d.get("protocol") != PROTOCOL:
        raise ValueError(f"HELLO names protocol {d.get('protocol') if isinstance(d, dict) else d!r}, "
                         f"not {PROTOCOL}")
    return d
