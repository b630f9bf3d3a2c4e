"""Lanes of pending forwards: which sends go to a broker together, in what order (pure, no I/O).

Owns the batching rule of the cluster-mode proxy. Every forward joins a lane (a key such as
broker address + topic + queue). A lane has at most `max_in_flight` broker calls outstanding;
a send that finds a free slot goes out at once, alone (no linger, so a lone synchronous sender
waits for nothing), and sends that arrive while the slots are busy wait in arrival order and
leave together as the next batch when a call returns (group commit). A batch is the longest
prefix of the waiting sends within `max_count` items and `max_bytes` bytes (always at least one),
so order inside a lane is the arrival order, and with `max_in_flight` 1 (FIFO lanes) a batch
never overtakes an earlier one.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class _Lane:
    limit: int
    pending: deque = field(default_factory=deque)  # (item, size) in arrival order
    in_flight: int = 0


class Lanes:
    """Pending items per lane and the calls in flight; the caller does the calls."""

    def __init__(self, max_count: int = 64, max_bytes: int = 1 << 20) -> None:
        if max_count < 1 or max_bytes < 1:
            raise ValueError("max_count and max_bytes must be >= 1")
        self.max_count = max_count
        self.max_bytes = max_bytes
        self._lanes: dict[Hashable, _Lane] = {}

    def add(self, key: Hashable, item: Any, size: int, max_in_flight: int = 1) -> bool:
        """Queue `item` on lane `key`; True when a call slot is free, so the caller starts a call
        for the lane now (`take`)."""
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane(max(1, max_in_flight))
        lane.pending.append((item, size))
        return lane.in_flight < lane.limit

    def take(self, key: Hashable) -> list[Any]:
        """The next batch of lane `key` (taking a call slot), or [] when it has nothing waiting or no
        free slot."""
        lane = self._lanes.get(key)
        if lane is None or not lane.pending or lane.in_flight >= lane.limit:
            return []
        out: list[Any] = []
        total = 0
        pending = lane.pending
        while pending and len(out) < self.max_count:
            item, size = pending[0]
            if out and total + size > self.max_bytes:
                break
            pending.popleft()
            out.append(item)
            total += size
        lane.in_flight += 1
        return out

    def finish(self, key: Hashable) -> bool:
        """A call of lane `key` returned; True when items wait, so the caller starts the next call."""
        lane = self._lanes[key]
        lane.in_flight -= 1
        if lane.pending:
            return lane.in_flight < lane.limit
        if lane.in_flight == 0:
            del self._lanes[key]
        return False

    def waiting(self, key: Hashable) -> int:
        lane = self._lanes.get(key)
        return len(lane.pending) if lane else 0

    def __len__(self) -> int:
        return len(self._lanes)
