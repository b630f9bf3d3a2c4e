"""What users hand to a producer (`Message`) and get back (`SendReceipt`); consumers receive the
wire `common_pb2.Message` itself (topic, body, tags, keys, properties, msg_id, queue_id,
queue_offset, born/store timestamps, broker_set, reconsume_times).
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import overload

from orbitmq.client.routes import MessageQueue
from orbitmq.protos import common_pb2

ReceivedMessage = common_pb2.Message


@dataclass(slots=True)
class Message:
    """A message to send. `msg_id` is assigned by the producer (kept across retries) if empty."""

    topic: str
    body: bytes
    tags: str = ""
    keys: list[str] = field(default_factory=list)
    properties: dict[str, str] = field(default_factory=dict)
    msg_id: str = ""

    def check(self) -> None:
        """Type checks only; the broker validates names and sizes and answers with a typed error."""
        if not isinstance(self.topic, str):
            raise TypeError(f"topic must be str, got {type(self.topic).__name__}")
        if not isinstance(self.body, bytes | bytearray | memoryview):
            raise TypeError(f"body must be bytes, got {type(self.body).__name__}")
        if not isinstance(self.tags, str):
            raise TypeError(f"tags must be str, got {type(self.tags).__name__}")
        if isinstance(self.keys, str):
            self.keys = [self.keys]

    def to_proto(self, born_ms: int, born_host: str) -> common_pb2.Message:
        pm = common_pb2.Message(topic=self.topic, body=bytes(self.body), tags=self.tags, msg_id=self.msg_id,
                                born_timestamp=born_ms, born_host=born_host)
        if self.keys:
            pm.keys.extend(self.keys)
        if self.properties:
            pm.properties.update(self.properties)
        return pm


@dataclass(frozen=True, slots=True)
class SendReceipt:
    """Where a message was stored."""

    msg_id: str
    queue: MessageQueue
    queue_offset: int
    physical_offset: int = -1
    epoch: int = -1          # master epoch of the broker that acknowledged it (sync sends; -1: unknown)
    broker_addr: str = ""    # address that acknowledged it (sync sends)

    @property
    def broker_set(self) -> str:
        return self.queue.broker_set

    @property
    def queue_id(self) -> int:
        return self.queue.queue_id


class BatchReceipts(Sequence[SendReceipt]):
    """The receipts of one batch record, in send order: one queue, consecutive queue offsets from
    `base_offset`, one physical offset. Each `SendReceipt` is made when it is read, so a batch of
    thousands costs nothing per message until the caller looks."""

    __slots__ = ("_ids", "addr", "base_offset", "epoch", "physical_offset", "queue")

    def __init__(self, ids: list[str], queue: MessageQueue, base_offset: int, physical_offset: int,
                 epoch: int, addr: str) -> None:
        self._ids = ids
        self.queue = queue
        self.base_offset = base_offset
        self.physical_offset = physical_offset
        self.epoch = epoch
        self.addr = addr

    def __len__(self) -> int:
        return len(self._ids)

    @overload
    def __getitem__(self, i: int) -> SendReceipt: ...
    @overload
    def __getitem__(self, i: slice) -> list[SendReceipt]: ...

    def __getitem__(self, i: int | slice) -> SendReceipt | list[SendReceipt]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self._ids)))]
        n = len(self._ids)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("receipt index out of range")
        return SendReceipt(self._ids[i], self.queue, self.base_offset + i, self.physical_offset, self.epoch,
                           self.addr)

    def __iter__(self) -> Iterator[SendReceipt]:
        q, base, phys, epoch, addr = self.queue, self.base_offset, self.physical_offset, self.epoch, self.addr
        for i, mid in enumerate(self._ids):
            yield SendReceipt(mid, q, base + i, phys, epoch, addr)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str | bytes):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # a sequence compared by value, like a list

    def __repr__(self) -> str:
        return (f"BatchReceipts({len(self._ids)} messages, queue={self.queue}, offsets {self.base_offset}.."
                f"{self.base_offset + len(self._ids) - 1}, physical_offset={self.physical_offset})")


class MsgIdGenerator:
    """Unique ids: 16 hex digits of randomness per generator (process start) + a counter."""

    def __init__(self) -> None:
        self.prefix = (uuid.uuid4().hex[:12] + f"{os.getpid() & 0xFFFF:04X}").upper()
        self._seq = 0
        self._lock = threading.Lock()

    def next(self) -> str:
        with self._lock:
            n = self._seq
            self._seq = n + 1
        return f"{self.prefix}{n:012X}"

    def reserve(self, n: int) -> int:
        """The first of `n` consecutive counters (ids prefix + 12 hex digits): a batch record
        stores them as one compact range."""
        with self._lock:
            first = self._seq
            self._seq = first + n
        return first

    def reserve_range(self, n: int) -> tuple[str, int]:
        """`(prefix, first)` of `n` consecutive ids (see `reserve`)."""
        return self.prefix, self.reserve(n)
