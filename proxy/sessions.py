"""Connected RocketMQ 5 clients, as the proxy knows them from Telemetry and Heartbeat.

Owns: per client id, its type, group, topics, last contact and the outgoing queue of its
Telemetry stream (so the server can push commands such as transaction checks). No gRPC here.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field


@dataclass
class Session:
    client_id: str
    client_type: int = 0
    group: str = ""
    topics: set[str] = field(default_factory=set)
    last_seen: float = field(default_factory=time.monotonic)
    outbox: asyncio.Queue | None = None  # TelemetryCommand objects to push down the stream


class Sessions:
    def __init__(self) -> None:
        self.by_id: dict[str, Session] = {}

    def touch(self, client_id: str) -> Session:
        s = self.by_id.get(client_id)
        if s is None:
            s = self.by_id[client_id] = Session(client_id)
        s.last_seen = time.monotonic()
        return s

    def drop(self, client_id: str) -> None:
        self.by_id.pop(client_id, None)

    def producers_of(self, topic: str) -> list[Session]:
        """Producers with an open Telemetry stream that publish `topic` (most recently seen first)."""
        out = [s for s in self.by_id.values() if s.outbox is not None and s.client_type == 1 and topic in s.topics]
        return sorted(out, key=lambda s: -s.last_seen)

    def expire(self, max_idle_s: float) -> int:
        now = time.monotonic()
        old = [k for k, s in self.by_id.items() if s.outbox is None and now - s.last_seen > max_idle_s]
        for k in old:
            del self.by_id[k]
        return len(old)
