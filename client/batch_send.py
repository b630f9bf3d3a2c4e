"""A send request carrying one batch record, with the record kept as the producer built it.

`broker_pb2.SendRequest(batch=data)` copies the record into the message, serializing copies it
again and framing once more; for a batch of 256 KiB those copies (and the fresh pages they touch)
cost as much as the broker's whole handling of it. `BatchSend` holds the other fields as a small
SendRequest and the record apart: the framed protocol writes [frame header, fields, key of the
`batch` field, record] with one `sendmsg` (common/proto_tail.py: the same message on the wire), and
gRPC gets a whole SendRequest from `to_proto`.
"""

from __future__ import annotations

from typing import Any

from orbitmq.common.proto_tail import tail_key
from orbitmq.protos import broker_pb2

BATCH_FIELD = 5    # SendRequest.batch (protos/broker.proto)


class BatchSend:
    """A SendRequest (topic, queue_id; `messages` stays empty) whose `batch` is the concatenation
    of `parts` (a batch record as the producer built it: its header and tables, then its data)."""

    __slots__ = ("head", "parts", "size")

    def __init__(self, topic: str, *parts: bytes) -> None:
        self.head = broker_pb2.SendRequest(topic=topic)
        self.parts = parts
        self.size = sum(map(len, parts))

    @property
    def topic(self) -> str:
        return self.head.topic

    @property
    def queue_id(self) -> int:
        return self.head.queue_id

    @queue_id.setter
    def queue_id(self, q: int) -> None:
        self.head.queue_id = q

    @property
    def messages(self) -> Any:
        return self.head.messages

    @property
    def batch(self) -> bytes:
        """The record, joined (a copy)."""
        return b"".join(self.parts)

    def to_proto(self) -> broker_pb2.SendRequest:
        """The whole SendRequest (one copy of the record), for gRPC."""
        r = broker_pb2.SendRequest()
        r.CopyFrom(self.head)
        r.batch = self.batch
        return r

    def payload_parts(self) -> tuple[bytes, ...]:
        """The serialized SendRequest as parts whose concatenation is it: the other fields with the
        key of `batch`, then the record's parts (not copied)."""
        return (self.head.SerializeToString() + tail_key(BATCH_FIELD, self.size), *self.parts)
