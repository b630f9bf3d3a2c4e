"""Grouping of asynchronous sends into batches per queue: a pure core (time is passed in).

Owns when a batch is ready: it holds `max_messages` messages, or adding the next message would pass
`max_bytes`, or its first message has waited `linger_s`. It never sends anything; the producer's
sender thread asks it for ready batches and sends them.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Batch:
    key: Hashable
    created: float
    items: list[Any] = field(default_factory=list)
    size: int = 0


class BatchAccumulator:
    """Open batches by key (e.g. a MessageQueue)."""

    def __init__(self, max_messages: int = 256, max_bytes: int = 1 << 20, linger_s: float = 0.005) -> None:
        if max_messages < 1 or max_bytes < 1 or linger_s < 0:
            raise ValueError("need max_messages >= 1, max_bytes >= 1, linger_s >= 0")
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.linger_s = linger_s
        self._open: dict[Hashable, Batch] = {}

    def add(self, key: Hashable, item: Any, size: int, now: float) -> list[Batch]:
        """Add one item; returns the batches that became ready (full) because of it."""
        ready: list[Batch] = []
        b = self._open.get(key)
        if b is not None and b.items and b.size + size > self.max_bytes:
            ready.append(self._open.pop(key))
            b = None
        if b is None:
            b = self._open[key] = Batch(key, now)
        b.items.append(item)
        b.size += size
        if len(b.items) >= self.max_messages or b.size >= self.max_bytes:
            ready.append(self._open.pop(key))
        return ready

    def due(self, now: float) -> list[Batch]:
        """Batches whose linger time has passed (removed from the accumulator)."""
        keys = [k for k, b in self._open.items() if now - b.created >= self.linger_s]
        return [self._open.pop(k) for k in keys]

    def next_deadline(self) -> float | None:
        """When the oldest open batch becomes due, or None if nothing is open."""
        if not self._open:
            return None
        return min(b.created for b in self._open.values()) + self.linger_s

    def drain(self) -> list[Batch]:
        """Every open batch, ready or not (on flush/close)."""
        out = list(self._open.values())
        self._open.clear()
        return out

    def is_open(self, key: Hashable) -> bool:
        return key in self._open

    def pending(self) -> int:
        return sum(len(b.items) for b in self._open.values())
