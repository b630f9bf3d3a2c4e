"""The simulator's clock, event queue and in-memory network (deterministic, single-threaded).

Owns: one event queue ordered by (time, sequence number) and a fake clock that jumps to each
event; the network between named nodes: up/down, symmetric and one-way partitions, per-message
drop, delay and duplication for request messages, and in-order byte streams (TCP-like: bytes
wait out a partition and are delivered in order, a reset or a crashed end closes the stream).
All randomness comes from one `random.Random` seeded by the run.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class Sim:
    """The clock and the event queue."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.now = 0.0
        self._q: list[tuple[float, int, Callable[..., Any], tuple]] = []
        self._seq = 0
        self.events = 0

    def at(self, delay: float, fn: Callable[..., Any], *args: Any) -> None:
        self._seq += 1
        heapq.heappush(self._q, (self.now + max(0.0, delay), self._seq, fn, args))

    def run_until(self, t: float, after_each: Callable[[], None]) -> None:
        q = self._q
        while q and q[0][0] <= t:
            when, _, fn, args = heapq.heappop(q)
            self.now = when
            fn(*args)
            self.events += 1
            after_each()
        self.now = t


@dataclass
class NetParams:
    drop: float = 0.0          # request messages lost
    dup: float = 0.0           # request messages delivered twice
    delay_min: float = 0.0005
    delay_mean: float = 0.002


class Net:
    """Who can reach whom, and message / stream delivery."""

    def __init__(self, sim: Sim, params: NetParams) -> None:
        self.sim = sim
        self.p = params
        self.up: dict[str, bool] = {}
        self.cut: set[tuple[str, str]] = set()     # (src, dst): src cannot reach dst
        self.streams: list[Stream] = []
        self.paused: dict[str, float] = {}           # node -> until when its process is stopped (SIGSTOP)
        self.messages = 0
        self.dropped = 0
        self.duplicated = 0

    def reachable(self, a: str, b: str) -> bool:
        return self.up.get(a, False) and self.up.get(b, False) and (a, b) not in self.cut

    def paused_for(self, node: str) -> float:
        """How long `node` stays stopped (0: running). Its events wait, in order, until then."""
        until = self.paused.get(node)
        if until is None:
            return 0.0
        if until <= self.sim.now:
            del self.paused[node]
            return 0.0
        return until - self.sim.now

    def responsive(self, a: str, b: str) -> bool:
        """`a` reaches `b` and `b` is running (Raft's view of contact)."""
        return self.reachable(a, b) and not self.paused_for(b)

    def delay(self) -> float:
        return self.p.delay_min + self.sim.rng.expovariate(1.0 / self.p.delay_mean)

    def send(self, src: str, dst: str, fn: Callable[..., Any], *args: Any, lossy: bool = True,
             dup: bool = False) -> None:
        """Deliver `fn(*args)` at `dst` after a delay, if it is reachable then (and not dropped)."""
        self.messages += 1
        rng = self.sim.rng
        if lossy and self.p.drop and rng.random() < self.p.drop:
            self.dropped += 1
            return
        copies = 2 if dup and self.p.dup and rng.random() < self.p.dup else 1
        self.duplicated += copies - 1
        for _ in range(copies):
            self.sim.at(self.delay(), self._deliver, src, dst, fn, args)

    def _deliver(self, src: str, dst: str, fn: Callable[..., Any], args: tuple) -> None:
        if self.reachable(src, dst):
            wait = self.paused_for(dst)
            if wait:
                self.sim.at(wait, self._deliver_now, dst, fn, args)   # queued in its socket buffer
            else:
                fn(*args)

    def _deliver_now(self, dst: str, fn: Callable[..., Any], args: tuple) -> None:
        if self.up.get(dst, False):
            wait = self.paused_for(dst)
            if wait:
                self.sim.at(wait, self._deliver_now, dst, fn, args)
            else:
                fn(*args)

    def connect(self, a: str, b: str) -> Stream:
        s = Stream(self, a, b)
        self.streams.append(s)
        return s

    def node_down(self, node: str) -> None:
        """A crash: its sockets are reset (the peers hear of it if they can be reached)."""
        self.up[node] = False
        for s in list(self.streams):
            if node in (s.ends[0], s.ends[1]) and not s.closed:
                s.reset(from_node=node)

    def gc_streams(self) -> None:
        self.streams = [s for s in self.streams if not s.closed]


@dataclass
class Stream:
    """A TCP-like byte stream between node `ends[0]` (the dialer) and `ends[1]`."""

    net: Net
    a: str
    b: str
    closed: bool = False
    handlers: dict[str, Callable[..., Any]] = field(default_factory=dict)   # node -> on_bytes(stream, data)
    closers: dict[str, Callable[..., Any]] = field(default_factory=dict)    # node -> on_closed(stream)
    _last: dict[str, float] = field(default_factory=dict)                   # per direction: last delivery time
    corrupt_next: bool = False

    @property
    def ends(self) -> tuple[str, str]:
        return (self.a, self.b)

    def other(self, node: str) -> str:
        return self.b if node == self.a else self.a

    def write(self, src: str, data: bytes) -> None:
        if self.closed:
            return
        if self.corrupt_next and data:
            self.corrupt_next = False
            i = self.net.sim.rng.randrange(len(data))
            data = data[:i] + bytes([data[i] ^ (1 + self.net.sim.rng.randrange(255))]) + data[i + 1:]
        dst = self.other(src)
        t = max(self.net.sim.now + self.net.delay(), self._last.get(dst, 0.0))
        self._last[dst] = t
        self.net.sim.at(t - self.net.sim.now, self._arrive, src, dst, data)

    def _arrive(self, src: str, dst: str, data: bytes) -> None:
        if self.closed:
            return
        if not self.net.reachable(src, dst):
            # retransmitted until the partition heals (or the stream is closed by a watchdog)
            t = max(self.net.sim.now + 0.2, self._last.get(dst, 0.0))
            self._last[dst] = t
            self.net.sim.at(t - self.net.sim.now, self._arrive, src, dst, data)
            return
        wait = self.net.paused_for(dst)
        if wait:
            t = max(self.net.sim.now + wait, self._last.get(dst, 0.0))
            self._last[dst] = t
            self.net.sim.at(t - self.net.sim.now, self._arrive, src, dst, data)
            return
        h = self.handlers.get(dst)
        if h is not None:
            h(self, data)

    def close(self, by: str) -> None:
        """`by` closes its end; the other end hears of it if it can be reached (FIN)."""
        self.reset(from_node=by)

    def reset(self, from_node: str) -> None:
        if self.closed:
            return
        self.closed = True
        other = self.other(from_node)
        cb = self.closers.get(other)
        if cb is not None:
            def tell() -> None:
                if self.net.up.get(other, False):
                    wait = self.net.paused_for(other)
                    if wait:
                        self.net.sim.at(wait, tell)
                    else:
                        cb(self)
            if (from_node, other) not in self.net.cut:   # a crashed node's kernel still sends the RST
                self.net.sim.at(self.net.delay(), tell)
