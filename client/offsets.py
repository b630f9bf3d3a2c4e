"""Consume progress of one queue: a pure core (no threads, no clock).

Owns the rule for which offset may be committed: the lowest offset that was handed to the
listener but not yet acknowledged, or, when nothing is in flight, the next offset to pull. So a
committed offset never passes a message that was not consumed (at-least-once). Callers lock.

In-flight offsets are kept as runs of consecutive offsets ([lo, hi) pairs, in pull order): a pull
of a batch record is one run, and acknowledging a consecutive range at the front of the oldest run
(what a consumer taking messages in order does) is O(1) however many messages it covers. Offsets
acknowledged out of order wait in a set until everything before them is acknowledged too.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence


class OffsetTracker:
    """In-flight offsets of one queue, in pull order."""

    def __init__(self, next_offset: int) -> None:
        self._runs: deque[list[int]] = deque()   # [lo, hi): offsets lo..hi-1 are in flight
        self._acked: set[int] = set()            # in flight, acknowledged, not at the front yet
        self._count = 0                          # offsets in the runs
        self.next_offset = next_offset   # the offset the next pull starts at

    def add(self, offsets: Sequence[int], next_offset: int) -> None:
        """Record offsets just pulled (increasing, all above the previous ones) and the next offset."""
        n = len(offsets)
        if n:
            runs = self._runs
            first = offsets[0]
            if runs and first < runs[-1][1]:
                raise ValueError(f"offsets must increase: {first} after {runs[-1][1] - 1}")
            if offsets[-1] - first == n - 1:          # consecutive (they increase): one run
                if runs and runs[-1][1] == first:
                    runs[-1][1] = first + n
                else:
                    runs.append([first, first + n])
            else:
                for o in offsets:
                    if runs and runs[-1][1] == o:
                        runs[-1][1] = o + 1
                    else:
                        runs.append([o, o + 1])
            self._count += n
        self.next_offset = max(self.next_offset, next_offset)

    def _pending(self, offset: int) -> bool:
        for lo, hi in self._runs:
            if offset < lo:
                return False
            if offset < hi:
                return offset not in self._acked
        return False

    def ack(self, offset: int) -> None:
        """Mark one offset consumed; unknown or repeated acks are ignored."""
        runs = self._runs
        if runs and runs[0][0] == offset:
            self._pop_front(1)
        elif self._pending(offset):
            self._acked.add(offset)

    def ack_many(self, offsets: Sequence[int]) -> None:
        """ack() each offset (any order). A `range` (step 1) at the front of the oldest run, what a
        consumer taking messages in order acknowledges, leaves at once (while no offset waits
        acknowledged out of order: one inside the range must leave the set too)."""
        runs = self._runs
        if type(offsets) is range and offsets.step == 1 and runs and len(offsets) and not self._acked:
            lo, hi = runs[0]
            if offsets.start == lo and offsets.stop <= hi:
                self._pop_front(len(offsets))
                return
        for o in offsets:
            self.ack(o)

    def _pop_front(self, n: int) -> None:
        """The first `n` offsets of the oldest run are consumed; then any acknowledged ones after them."""
        runs, acked = self._runs, self._acked
        front = runs[0]
        front[0] += n
        self._count -= n
        while True:
            if front[0] >= front[1]:
                runs.popleft()
                if not runs:
                    return
                front = runs[0]
            if not acked or front[0] not in acked:
                return
            acked.discard(front[0])
            front[0] += 1
            self._count -= 1

    def committable(self) -> int:
        """The offset below which every pulled message was consumed."""
        return self._runs[0][0] if self._runs else self.next_offset

    def in_flight(self) -> int:
        """How many pulled messages are not yet acknowledged."""
        return self._count - len(self._acked)

    def reset(self, next_offset: int) -> None:
        """Forget everything in flight (e.g. the broker said OFFSET_MOVED) and restart there."""
        self._runs.clear()
        self._acked.clear()
        self._count = 0
        self.next_offset = next_offset
