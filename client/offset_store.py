"""Where a consumer keeps its progress: on the brokers (clustering) or in a local file
(broadcasting, one file per consumer instance, replaced atomically with fsync).

Owns reading the start offset of a queue and writing committed offsets. It never decides which
offset is safe to commit (`client/offsets.py` does).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

from orbitmq.client import errors
from orbitmq.client.routes import MessageQueue
from orbitmq.client.transport import Transport
from orbitmq.common.durable import replace_file
from orbitmq.protos import broker_pb2


class RemoteOffsetStore:
    """Offsets of a group kept by the master of each broker set."""

    def __init__(self, transport: Transport, group: str) -> None:
        self.transport = transport
        self.group = group

    def _master(self, mq: MessageQueue) -> str:
        addr = self.transport.route(mq.topic).masters.get(mq.broker_set)
        if not addr:
            self.transport.invalidate(mq.topic)
            raise errors.NoRouteError(f"broker set {mq.broker_set!r} has no master")
        return addr

    def read(self, mq: MessageQueue) -> int | None:
        addr = self.transport.route(mq.topic).read_address(mq.broker_set) or self._master(mq)
        resp = self.transport.call_broker(addr, "QueryOffset", broker_pb2.QueryOffsetRequest(
            group=self.group, topic=mq.topic, queue_id=mq.queue_id))
        return None if resp.offset < 0 else int(resp.offset)

    def commit(self, mq: MessageQueue, offset: int) -> None:
        self.transport.call_broker(self._master(mq), "CommitOffset", broker_pb2.CommitOffsetRequest(
            group=self.group, topic=mq.topic, queue_id=mq.queue_id, offset=offset))

    def flush(self) -> None:
        pass


class LocalOffsetStore:
    """Offsets in a JSON file {queue key: next offset}; `commit` updates memory, `flush` writes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._offsets: dict[str, int] = {}
        self._dirty = False
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text())
            except (OSError, ValueError) as e:
                raise errors.BadRequestError(f"offset file {self.path} is unreadable: {e}") from None
            self._offsets = {str(k): int(v) for k, v in data.items()}

    def read(self, mq: MessageQueue) -> int | None:
        with self._lock:
            return self._offsets.get(mq.key())

    def commit(self, mq: MessageQueue, offset: int) -> None:
        with self._lock:
            if self._offsets.get(mq.key()) != offset:
                self._offsets[mq.key()] = offset
                self._dirty = True

    def flush(self) -> None:
        with self._lock:
            if not self._dirty:
                return
            data = json.dumps(self._offsets, sort_keys=True)
            self._dirty = False
        replace_file(self.path, data)
