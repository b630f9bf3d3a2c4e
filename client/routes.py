"""Topic routes as the client sees them, and queue selection: a pure core (no I/O, no clock).

Owns: turning a name server `TopicRoute` into sorted writable/readable `MessageQueue` lists and
broker-set master addresses, round-robin selection that avoids broker sets which just failed, and
selectors for ordered/sharded sends. It never talks to a server; `client/route_cache.py` does.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

PERM_READ = 4
PERM_WRITE = 2


@dataclass(frozen=True, order=True, slots=True)
class MessageQueue:
    """One queue of a topic on one broker set."""

    topic: str
    broker_set: str
    queue_id: int

    def key(self) -> str:
        return f"{self.topic}@{self.broker_set}@{self.queue_id}"

    @classmethod
    def parse(cls, key: str) -> MessageQueue:
        topic, bset, qid = key.rsplit("@", 2)
        return cls(topic, bset, int(qid))


@dataclass
class RouteInfo:
    """The queues of one topic: writable ones (on broker sets with a master) and readable ones."""

    topic: str
    write_queues: list[MessageQueue] = field(default_factory=list)
    read_queues: list[MessageQueue] = field(default_factory=list)
    masters: dict[str, str] = field(default_factory=dict)            # broker set -> master address
    replicas: dict[str, dict[int, str]] = field(default_factory=dict)  # broker set -> id -> address
    auto_created: bool = False
    remoting: dict[str, str] = field(default_factory=dict)  # replica gRPC address -> framed protocol address

    @classmethod
    def from_proto(cls, route: Any) -> RouteInfo:
        """Build from a `namesrv_pb2.TopicRoute` (or anything with the same fields)."""
        info = cls(topic=route.topic, auto_created=bool(route.auto_created))
        for bs in route.broker_sets:
            info.replicas[bs.broker_set] = dict(bs.replicas)
            info.remoting.update(getattr(bs, "remoting_addresses", None) or {})
            if bs.master_address:
                info.masters[bs.broker_set] = bs.master_address
        for q in route.queues:
            if q.broker_set in info.masters and q.perm & PERM_WRITE:
                info.write_queues.extend(MessageQueue(route.topic, q.broker_set, i) for i in range(q.write_queues))
            if q.perm & PERM_READ and (q.broker_set in info.masters or info.replicas.get(q.broker_set)):
                info.read_queues.extend(MessageQueue(route.topic, q.broker_set, i) for i in range(q.read_queues))
        info.write_queues.sort()
        info.read_queues.sort()
        return info

    def broker_sets(self) -> list[str]:
        return sorted(set(self.masters) | set(self.replicas))

    def read_address(self, broker_set: str) -> str | None:
        """Where to pull from: the master, else the lowest-id replica."""
        addr = self.masters.get(broker_set)
        if addr:
            return addr
        reps = self.replicas.get(broker_set) or {}
        return reps[min(reps)] if reps else None


def select_round_robin(queues: list[MessageQueue], counter: int,
                       avoid: Iterable[str] = ()) -> MessageQueue | None:
    """The `counter`-th queue, skipping broker sets in `avoid` unless every queue is on one."""
    if not queues:
        return None
    if avoid:
        avoid = avoid if isinstance(avoid, set | frozenset) else set(avoid)
        ok = [q for q in queues if q.broker_set not in avoid]
        if ok:
            queues = ok
    return queues[counter % len(queues)]


Selector = Callable[[list[MessageQueue], Any, Any], MessageQueue]


def select_by_hash(queues: list[MessageQueue], message: Any, arg: Any) -> MessageQueue:
    """Selector: the same `arg` (e.g. an order id, a sharding key) always picks the same queue
    while the queue list is unchanged (a stable CRC32, not Python's salted hash)."""
    if not queues:
        raise ValueError("no queues to select from")
    data = arg if isinstance(arg, bytes) else str(arg).encode()
    return queues[zlib.crc32(data) % len(queues)]
