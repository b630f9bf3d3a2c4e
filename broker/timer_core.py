"""Timer index rules (pure): which scheduled (DELAY) messages are due, and what has fired.

Scheduled messages are stored in the system topic `rmq_sys_wheel_timer` (queue 0) in arrival
order; each carries its delivery time. The index is a heap of (deliver_ms, queue offset) of the
messages not fired yet. Firing (storing the message in its real topic) is logged as an event;
the fired state is a watermark (every queue offset below it fired) plus the fired offsets above
it, so a restart rebuilds the heap from the topic starting at the watermark. Any delay works;
there are no fixed levels. No clock: `now` is passed in.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field


@dataclass
class Fired:
    watermark: int = 0  # every queue offset below fired
    above: set[int] = field(default_factory=set)  # fired offsets >= watermark

    def is_fired(self, q: int) -> bool:
        return q < self.watermark or q in self.above

    def to_json(self) -> dict:
        return {"w": self.watermark, "a": sorted(self.above)}

    @staticmethod
    def from_json(d: dict) -> Fired:
        return Fired(d["w"], set(d["a"]))


def apply(state: Fired, event: dict) -> Fired:
    """Fold a `fire` event ({"k": "fire", "q": [offsets]}) or a `skip` to a new watermark (expiry)."""
    if event["k"] == "fire":
        for q in event["q"]:
            if q >= state.watermark:
                state.above.add(q)
    elif event["k"] == "skip":
        state.watermark = max(state.watermark, event["to"])
        state.above = {q for q in state.above if q >= state.watermark}
    else:
        raise ValueError(f"unknown timer event {event['k']!r}")
    while state.watermark in state.above:
        state.above.discard(state.watermark)
        state.watermark += 1
    return state


class Wheel:
    """The in-memory index: scheduled, unfired (deliver_ms, queue offset, physical offset)."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, int]] = []
        self.indexed_to = 0  # queue offsets below this were looked at

    def add(self, deliver_ms: int, q: int, phys: int) -> None:
        heapq.heappush(self._heap, (deliver_ms, q, phys))

    def due(self, now: int, limit: int = 256) -> list[tuple[int, int, int]]:
        out = []
        while self._heap and self._heap[0][0] <= now and len(out) < limit:
            out.append(heapq.heappop(self._heap))
        return out

    def next_at(self) -> int | None:
        return self._heap[0][0] if self._heap else None

    def __len__(self) -> int:
        return len(self._heap)
