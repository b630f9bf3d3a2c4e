"""Consume progress of one queue: a pure core (no threads, no clock).

Owns the rule for which offset may be committed: the lowest offset that was handed to the
listener but not yet acknowledged, or, when nothing is in flight, the next offset to pull. So a
committed offset never passes a message that was not consumed (at-least-once). Callers lock.
"""

from __future__ import annotations

from collections import deque


class OffsetTracker:
    """In-flight offsets of one queue, in pull order."""

    def __init__(self, next_offset: int) -> None:
        self._pending: deque[int] = deque()
        self._acked: set[int] = set()
        self.next_offset = next_offset   # the offset the next pull starts at

    def add(self, offsets: list[int], next_offset: int) -> None:
        """Record offsets just pulled (increasing, all >= the previous ones) and the next offset."""
        if offsets:
            if self._pending and offsets[0] <= self._pending[-1]:
                raise ValueError(f"offsets must increase: {offsets[0]} after {self._pending[-1]}")
            self._pending.extend(offsets)
        self.next_offset = max(self.next_offset, next_offset)

    def ack(self, offset: int) -> None:
        """Mark one offset consumed; unknown or repeated acks are ignored."""
        if self._pending and self._pending[0] <= offset <= self._pending[-1]:
            self._acked.add(offset)
            self._compact()

    def ack_many(self, offsets: list[int]) -> None:
        """ack() each offset; offsets acknowledged in pull order (the usual case) leave at once."""
        p, a = self._pending, self._acked
        for o in offsets:
            if not a and p and p[0] == o:
                p.popleft()
            else:
                self.ack(o)

    def _compact(self) -> None:
        p, a = self._pending, self._acked
        while p and p[0] in a:
            a.discard(p.popleft())

    def committable(self) -> int:
        """The offset below which every pulled message was consumed."""
        return self._pending[0] if self._pending else self.next_offset

    def in_flight(self) -> int:
        """How many pulled messages are not yet acknowledged."""
        return len(self._pending) - len(self._acked)

    def reset(self, next_offset: int) -> None:
        """Forget everything in flight (e.g. the broker said OFFSET_MOVED) and restart there."""
        self._pending.clear()
        self._acked.clear()
        self.next_offset = next_offset
